#!/usr/bin/env python3
"""The VaDE full schedule's result (issue 32) from the committed run logs.

    python3 benches/vade_curves.py [--logs benches/results/vade_full_schedule]
        [--picture docs/vade-full-schedule.png] [--jsonl benches/results/vade_full_schedule.jsonl]

Reads each seed's `log.jsonl` (`vade-s<SEED>/`, copied there by `benches/vade_full_schedule.sh
collect`) and:
- draws ACC and NMI over the joint epochs, one line per seed, with VaDE's published
  Fashion-MNIST figure (0.578 / 0.630, as N2D re-reports it) and DEC's (0.618 / 0.651) as
  horizontal lines, and the GMM initialisation as epoch 0;
- writes one JSON line per seed that finished its schedule (`seed`, `pretrain_epochs`,
  `epochs`, `acc`, `nmi`, `ari`, `backend`, `hours`: the sum of the logged epoch times);
- prints the per-seed table of the last evaluation each seed reached, and the mean ± sample
  sd of the seeds at the last joint epoch all of them reached.
"""
import argparse
import json
import math
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VADE = (0.578, 0.630)
DEC = (0.618, 0.651)


def read(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    init = next((r["metrics"] for r in rows if r.get("phase") == "gmm_init"), None)
    joint = {r["epoch"]: r for r in rows if r.get("phase") == "joint"}
    pretrain = max((r["epoch"] for r in rows if r.get("phase") == "pretrain"), default=0)
    evals = {e: r["metrics"] for e, r in joint.items() if "metrics" in r}
    if init is not None:
        evals[0] = init
    hours = sum(r.get("seconds", 0.0) for r in rows) / 3600.0
    return {"init": init, "joint": joint, "evals": evals, "pretrain": pretrain, "hours": hours}


def mean_sd(values):
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return m, sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", default=str(REPO / "benches/results/vade_full_schedule"))
    ap.add_argument("--picture", default=str(REPO / "docs/vade-full-schedule.png"))
    ap.add_argument("--jsonl", default=str(REPO / "benches/results/vade_full_schedule.jsonl"))
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--backend", default="flex")
    a = ap.parse_args()

    seeds = {}
    for d in sorted(Path(a.logs).glob("vade-s*")):
        if (d / "log.jsonl").exists():
            seeds[int(d.name.removeprefix("vade-s"))] = read(d / "log.jsonl")
    if not seeds:
        raise SystemExit(f"no vade-s*/log.jsonl under {a.logs}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, key, name, i in [(axes[0], "acc", "ACC", 0), (axes[1], "nmi", "NMI", 1)]:
        for seed, s in seeds.items():
            xs = sorted(s["evals"])
            ax.plot(xs, [s["evals"][e][key] for e in xs], marker=".", label=f"seed {seed}")
        ax.axhline(VADE[i], color="grey", linestyle="--", linewidth=1, label="VaDE (published)")
        ax.axhline(DEC[i], color="grey", linestyle=":", linewidth=1, label="DEC")
        ax.set_xlabel("joint epoch (0: GMM initialisation)")
        ax.set_ylabel(name)
        ax.set_xlim(0, a.epochs)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("VaDE on Fashion-MNIST (70 000 images), 50 + 300 epochs, flex on the CPU")
    fig.tight_layout()
    fig.savefig(a.picture, dpi=110)
    print(f"wrote {a.picture}")

    finished = []
    for seed, s in seeds.items():
        m = s["evals"].get(a.epochs)
        if m is not None:
            finished.append({"seed": seed, "pretrain_epochs": s["pretrain"], "epochs": a.epochs,
                             "acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"],
                             "backend": a.backend, "hours": round(s["hours"], 2)})
    if finished:
        with open(a.jsonl, "w") as f:
            for r in finished:
                f.write(json.dumps(r) + "\n")
        print(f"wrote {a.jsonl} ({len(finished)} finished seeds)")

    print("\n| seed | GMM init ACC / NMI / ARI | last evaluation | ACC / NMI / ARI | hours |")
    print("|---|---|---|---|---|")
    evaluated = {seed: s for seed, s in seeds.items() if s["evals"]}
    for seed, s in seeds.items():
        if not s["evals"]:
            print(f"| {seed} | – | pre-training | – | {s['hours']:.1f} |")
            continue
        last = max(e for e in s["evals"])
        i, m = s["init"] or {}, s["evals"][last]
        init = " / ".join(f"{i[k]:.3f}" for k in ("acc", "nmi", "ari")) if i else "–"
        print(f"| {seed} | {init} | joint epoch {last} | "
              + " / ".join(f"{m[k]:.3f}" for k in ("acc", "nmi", "ari"))
              + f" | {s['hours']:.1f} |")
    if not evaluated:
        return
    common = min(max(e for e in s["evals"]) for s in evaluated.values())
    parts = []
    for k in ("acc", "nmi", "ari"):
        m, sd = mean_sd([s["evals"][common][k] for s in evaluated.values()])
        parts.append(f"{k.upper()} {m:.3f}" + ("" if math.isnan(sd) else f" ± {sd:.3f}"))
    print(f"\nat joint epoch {common} (seeds {', '.join(map(str, evaluated))}): " + ", ".join(parts))


if __name__ == "__main__":
    main()
