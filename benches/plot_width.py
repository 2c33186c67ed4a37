#!/usr/bin/env python3
"""The feature-width sweep as a picture and a Markdown table.

Reads the rows that `benches/sklearn_em.py` appends to `<out-dir>/rows.jsonl` (any number
of files: later rows of the same (D, K, covariance, backend) replace earlier ones) and writes

  * a PNG: seconds per EM iteration (top) and peak RSS (bottom) against D, log-log, one
    column per K, scikit-learn and every mixburn backend side by side, one line style per
    covariance type;
  * the README's table (Markdown) on standard output.

Usage:

    python3 benches/plot_width.py /work/bench/width/rows.jsonl [more.jsonl ...] \\
        --png docs/width.png [--label ndarray-openblas=ndarray+OpenBLAS]

Needs matplotlib (`pip install matplotlib`) for the PNG only.
"""

import argparse
import json
from pathlib import Path

STYLES = {"full": "-", "tied": "--", "diag": ":", "spherical": "-."}
COLOURS = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def load(paths):
    """{(d, k, covariance, backend): row}, later files and lines winning."""
    rows = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[(r["d"], r["k"], r["covariance"], r["backend"])] = r
    return rows


def sides(rows):
    """The scikit-learn side once per (d, k, covariance), then each backend's side."""
    sk = {}
    mb = {}
    for (d, k, cov, backend), r in rows.items():
        if r.get("sklearn_seconds_per_iter") is not None:
            sk[(d, k, cov)] = (r["sklearn_seconds_per_iter"], r.get("sklearn_peak_rss_bytes"))
        if r.get("mixburn_seconds_per_iter") is not None:
            mb[(d, k, cov, backend)] = (r["mixburn_seconds_per_iter"], r.get("mixburn_peak_rss_bytes"))
    return sk, mb


def cell(value, spec):
    return "failed" if value is None else format(value, spec)


def table(rows, labels):
    """Markdown: one line per (D, K, covariance, backend)."""
    out = [
        "| D | K | covariance | backend | form | scikit-learn s/iter | mixburn s/iter | speed-up "
        "| scikit-learn peak MiB | mixburn peak MiB | input MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(rows, key=lambda t: (t[0], t[1], list(STYLES).index(t[2]), t[3])):
        r = rows[key]
        mb = r.get("mixburn") or {}
        sk_s, mb_s = r.get("sklearn_seconds_per_iter"), r.get("mixburn_seconds_per_iter")
        speed = f"{sk_s / mb_s:.2f}×" if sk_s and mb_s else "–"
        mib = lambda b: "–" if not b else f"{b / 2**20:.0f}"
        out.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {labels.get(key[3], key[3])} | {mb.get('form', '–')} "
            f"| {cell(sk_s, '.4f')} | {cell(mb_s, '.4f')} | {speed} "
            f"| {mib(r.get('sklearn_peak_rss_bytes'))} | {mib(r.get('mixburn_peak_rss_bytes'))} "
            f"| {mib(mb.get('input_bytes') or r.get('sklearn_input_bytes'))} |"
        )
    return "\n".join(out)


def plot(rows, png, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sk, mb = sides(rows)
    ks = sorted({k for (_, k, _, _) in rows})
    covs = [c for c in STYLES if any(c == key[2] for key in rows)]
    backends = sorted({b for (_, _, _, b) in mb})
    names = ["scikit-learn"] + [f"mixburn {labels.get(b, b)}" for b in backends]
    colour = dict(zip(names, COLOURS))
    fig, axes = plt.subplots(2, len(ks), figsize=(5.2 * len(ks), 7.6), dpi=100, squeeze=False)
    for col, k in enumerate(ks):
        for row, (what, scale, unit) in enumerate(
            [("seconds per iteration", 1.0, "s"), ("peak RSS", 2.0**-20, "MiB")]
        ):
            ax = axes[row][col]
            for cov in covs:
                series = [("scikit-learn", {d: v for (d, kk, c), v in sk.items() if kk == k and c == cov})]
                for b in backends:
                    series.append((
                        f"mixburn {labels.get(b, b)}",
                        {d: v for (d, kk, c, bb), v in mb.items() if kk == k and c == cov and bb == b},
                    ))
                for name, points in series:
                    ds = sorted(d for d, v in points.items() if v[row] is not None)
                    if ds:
                        ax.plot(ds, [points[d][row] * scale for d in ds], STYLES[cov],
                                marker="o", ms=3, color=colour[name], label=f"{name}, {cov}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("D (features)")
            ax.set_ylabel(f"{what} ({unit})")
            ax.set_title(f"K = {k}: {what}")
            ax.grid(True, which="both", alpha=0.3)
    handles, names_ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names_, loc="lower center", ncol=len(covs), fontsize=8, frameon=False)
    n = next(iter(rows.values())).get("mixburn", {}) or {}
    fig.suptitle(f"EM per iteration, N = {n.get('n', '?')}, f32: scikit-learn vs mixburn (log–log)")
    fig.tight_layout(rect=(0, 0.12, 1, 0.97))
    fig.savefig(png)
    print(f"wrote {png}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", nargs="+", help="rows.jsonl files written by sklearn_em.py")
    p.add_argument("--png", help="write the picture here")
    p.add_argument("--label", action="append", default=[],
                   help="BACKEND=NAME: how a backend is named in the table and the picture")
    a = p.parse_args()
    labels = dict(item.split("=", 1) for item in a.label)
    rows = load(a.rows)
    print(table(rows, labels))
    if a.png:
        plot(rows, a.png, labels)


if __name__ == "__main__":
    main()
