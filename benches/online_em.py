"""Online (stepwise) EM against the batch fit (issue 30): how close one online pass over a
stream comes to the batch fit's held-out log-likelihood, and its throughput, side by side in
one run, with scikit-learn's batch fit of the same rows beside them.

    python3 benches/online_em.py --bin $CARGO_TARGET_DIR/debug/mixburn --n 200000 --d 32 --k 8

Each command runs as the user would type it (`mixburn fit`, `mixburn fit --online`); the
held-out rows are scored by `mixburn score`. Peak RSS of each command comes from
`/usr/bin/time -f %M`. One JSON line per run goes to benches/results/online_em.jsonl.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def blobs(rng, n, d, k, spread):
    centres = rng.normal(scale=spread, size=(k, d)) + 100.0
    labels = rng.integers(0, k, size=n)
    scales = 0.5 + rng.random((k, 1))
    x = centres[labels] + rng.normal(size=(n, d)) * scales[labels]
    return x.astype(np.float32)


def timed(cmd):
    """Runs `cmd` under /usr/bin/time; returns (seconds, peak RSS in MiB, parsed JSON)."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    peak_kib = int(out.stderr.strip().splitlines()[-1])
    return wall, peak_kib / 1024, json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread", type=float, default=4.0,
                    help="scale of the cluster centres (small: overlapping clusters, more EM iterations)")
    ap.add_argument("--sklearn", action="store_true", help="also time scikit-learn's fit")
    ap.add_argument("--out", default="benches/results/online_em.jsonl")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x = blobs(rng, a.n + 20000, a.d, a.k, a.spread)
    train, held = x[: a.n], x[a.n :]
    tmp = tempfile.mkdtemp()
    paths = {name: os.path.join(tmp, f"{name}.npy") for name in ("train", "held")}
    np.save(paths["train"], train)
    np.save(paths["held"], held)
    common = ["--input", paths["train"], "--components", str(a.k), "--seed", str(a.seed)]
    rows = {}
    for name, extra in [
        ("batch", []),
        ("online", ["--online", "--chunk-size", str(a.chunk)]),
    ]:
        model = os.path.join(tmp, f"{name}.safetensors")
        wall, peak, v = timed([a.bin, "fit", *common, *extra, "--output", model])
        _, _, s = timed([a.bin, "score", "--model", model, "--input", paths["held"]])
        rows[name] = {
            "seconds": round(wall, 3),
            "rows_per_second": round(a.n / wall),
            "peak_rss_mib": round(peak, 1),
            "held_out_mean_log_likelihood": s["mean_log_likelihood"],
            "n_iter_or_steps": v.get("n_iter", v.get("steps")),
        }
    if a.sklearn:
        from sklearn.mixture import GaussianMixture

        t = time.perf_counter()
        gm = GaussianMixture(a.k, random_state=a.seed).fit(train)
        wall = time.perf_counter() - t
        rows["sklearn_batch"] = {
            "seconds": round(wall, 3),
            "rows_per_second": round(a.n / wall),
            "held_out_mean_log_likelihood": float(gm.score(held)),
            "n_iter_or_steps": int(gm.n_iter_),
        }
    line = {
        "n": a.n,
        "d": a.d,
        "k": a.k,
        "chunk": a.chunk,
        "spread": a.spread,
        "dtype": "f32",
        "results": rows,
        "online_minus_batch_held_out_ll": rows["online"]["held_out_mean_log_likelihood"]
        - rows["batch"]["held_out_mean_log_likelihood"],
        "online_speedup_over_batch": rows["batch"]["seconds"] / rows["online"]["seconds"],
    }
    print(json.dumps(line))
    with open(a.out, "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
