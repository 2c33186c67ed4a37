#!/usr/bin/env python3
"""End-to-end scoring, side by side: each `mixburn` scoring command as a user runs it (a whole
process: start-up, reading the .npy, writing the result) beside the Python a user would write
for the same job, on the same files, paired run by run by `farm-bench` (wall time and peak
RSS, medians).

    cargo build --workspace --all-features
    python3 benches/e2e_scoring.py --d 512,2048 --out benches/results/e2e_scoring.jsonl

Per width D (float32, 10 Gaussian classes, numpy seed 0; N = --rows-512 / --rows-2048 rows to
score):
- `mixburn ood score` (Mahalanobis, tied covariance of the 10 classes, fitted by
  `mixburn ood fit`) against NumPy's `min_c ||(x - mu_c) F||^2 / 2` with `F F^T = pinv(cov)`
  and the class means precomputed (saved beside), `x @ F` once (the matmul form);
- `mixburn score` (K = 8, full, fitted by `mixburn fit` on --fit-rows rows) against
  scikit-learn's `GaussianMixture.score_samples` (same K and covariance, its own fit,
  pickled);
- `mixburn anomaly score` (the same mixture as an anomaly detector, `mixburn anomaly fit`)
  against pyod's `GMM.decision_function` (same K, covariance and contamination, pickled).

Models are fitted once, untimed, in --dir (kept between runs). One JSON line per pair is
printed (and appended to --out): the medians of both sides, `ratio` = reference wall /
mixburn wall (above 1: mixburn faster) and the peaks. Run it on a quiet machine.
"""

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get(
    "CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache/mixburn/target")
)

NP_OOD = """import sys, numpy as np
f = np.load(sys.argv[1]); m = np.load(sys.argv[2]); x = np.load(sys.argv[3])
y = x @ f; mf = m @ f
d2 = (y * y).sum(1)[:, None] - 2 * y @ mf.T + (mf * mf).sum(1)[None, :]
np.save(sys.argv[4], (d2.min(1) / 2).astype(np.float64))
"""
SK_SCORE = """import sys, pickle, numpy as np
gm = pickle.load(open(sys.argv[1], "rb")); x = np.load(sys.argv[2])
np.save(sys.argv[3], gm.score_samples(x))
"""
PYOD_SCORE = """import sys, pickle, numpy as np
det = pickle.load(open(sys.argv[1], "rb")); x = np.load(sys.argv[2])
np.save(sys.argv[3], det.decision_function(x))
"""


def data(path, n, d, classes=10, seed=0):
    """Seeded class features `[n, d]` float32 and labels (written once)."""
    x_path, y_path = path + ".npy", path + "_labels.npy"
    if not os.path.exists(x_path):
        rng = np.random.default_rng(seed)
        centres = rng.normal(scale=2.0, size=(classes, d))
        labels = rng.integers(0, classes, size=n)
        x = (centres[labels] + rng.normal(size=(n, d))).astype(np.float32)
        np.save(x_path, x)
        np.save(y_path, labels.astype(np.int64))
    return x_path, y_path


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def pair(a, b, runs, timeout):
    """farm-bench medians of A (mixburn) and B (the reference), paired."""
    out = subprocess.run(
        ["farm-bench", "-n", str(runs), "--timeout", str(timeout), "--vs", b, "--"] + a,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    med = {}
    for key in ["A wall s", "B wall s", "A peak MiB", "B peak MiB", "A/B wall"]:
        m = re.search(re.escape(key) + r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out)
        med[key] = float(m.group(2))
    if "exit 0 (" not in out.split("\n")[4] or "exit 0 (" not in out.split("\n")[5]:
        sys.exit("a command failed:\n" + out)
    return med


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", default="512,2048")
    p.add_argument("--rows-512", type=int, default=100_000)
    p.add_argument("--rows-2048", type=int, default=25_000)
    p.add_argument("--fit-rows", type=int, default=20_000)
    p.add_argument("--components", type=int, default=8)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--only", default="ood,score,anomaly")
    p.add_argument("--dir", default=os.path.expanduser("~/.cache/mixburn/e2e"))
    p.add_argument("--out")
    p.add_argument("--binary", default=os.path.join(TARGET, "debug", "mixburn"))
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    scripts = {}
    for name, text in [("np_ood", NP_OOD), ("sk_score", SK_SCORE), ("pyod_score", PYOD_SCORE)]:
        scripts[name] = os.path.join(a.dir, name + ".py")
        with open(scripts[name], "w") as f:
            f.write(text)
    mb, k = a.binary, a.components
    rev = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    for d in [int(v) for v in a.d.split(",")]:
        n = a.rows_512 if d <= 512 else a.rows_2048
        x, y = data(os.path.join(a.dir, f"x{d}_n{n}"), n, d)
        fit_x = os.path.join(a.dir, f"x{d}_fit{a.fit_rows}.npy")
        if not os.path.exists(fit_x):
            np.save(fit_x, np.load(x, mmap_mode="r")[: a.fit_rows])
        o = lambda name: os.path.join(a.dir, f"{name}_d{d}")
        jobs = []
        if "ood" in a.only:
            det = o("det") + ".safetensors"
            if not os.path.exists(det):
                run([mb, "ood", "fit", "--features", x, "--labels", y, "--output", det])
                xs, ys = np.load(x).astype(np.float64), np.load(y)
                means = np.stack([xs[ys == c].mean(0) for c in range(ys.max() + 1)])
                xc = xs - means[ys]
                w, v = np.linalg.eigh(xc.T @ xc / len(xs))
                np.save(o("F") + ".npy", (v / np.sqrt(w)).astype(np.float32))
                np.save(o("means") + ".npy", means.astype(np.float32))
            jobs.append(
                (
                    "ood score",
                    "NumPy min_c ||(x - mu_c) F||^2 / 2",
                    [mb, "ood", "score", "--detector", det, "--features", x, "--output",
                     o("mb_ood") + ".npy"],
                    f"python3 {scripts['np_ood']} {o('F')}.npy {o('means')}.npy {x} "
                    f"{o('np_ood')}.npy",
                )
            )
        fit_args = ["--components", str(k), "--covariance", "full", "--max-iter", "2",
                    "--reg-covar", "1e-2"]
        if "score" in a.only:
            model, skm = o("gm") + ".safetensors", o("sk_gm") + ".pkl"
            if not os.path.exists(model):
                run([mb, "fit", "--input", fit_x, "--output", model] + fit_args)
                from sklearn.mixture import GaussianMixture

                warnings.simplefilter("ignore")
                gm = GaussianMixture(k, covariance_type="full", max_iter=2, reg_covar=1e-2,
                                     random_state=0).fit(np.load(fit_x))
                pickle.dump(gm, open(skm, "wb"))
            jobs.append(
                (
                    "score",
                    "scikit-learn GaussianMixture.score_samples",
                    [mb, "score", "--model", model, "--input", x, "--output",
                     o("mb_ll") + ".npy"],
                    f"python3 {scripts['sk_score']} {skm} {x} {o('sk_ll')}.npy",
                )
            )
        if "anomaly" in a.only:
            det, pyd = o("anomaly") + ".safetensors", o("pyod_gmm") + ".pkl"
            if not os.path.exists(det):
                run([mb, "anomaly", "fit", "--input", fit_x, "--output", det] + fit_args)
                from pyod.models.gmm import GMM

                warnings.simplefilter("ignore")
                g = GMM(n_components=k, covariance_type="full", max_iter=2, reg_covar=1e-2,
                        random_state=0).fit(np.load(fit_x))
                pickle.dump(g, open(pyd, "wb"))
            jobs.append(
                (
                    "anomaly score",
                    "pyod GMM.decision_function",
                    [mb, "anomaly", "score", "--detector", det, "--input", x, "--output",
                     o("mb_an") + ".npy"],
                    f"python3 {scripts['pyod_score']} {pyd} {x} {o('pyod_an')}.npy",
                )
            )
        for command, reference, cmd_a, cmd_b in jobs:
            m = pair(cmd_a, cmd_b, a.runs, a.timeout)
            line = {
                "bench": "e2e_scoring",
                "commit": rev,
                "command": f"mixburn {command}",
                "reference": reference,
                "d": d,
                "n": n,
                "dtype": "f32",
                "components": k if command != "ood score" else 10,
                "runs": a.runs,
                "mixburn_s": m["A wall s"],
                "reference_s": m["B wall s"],
                "ratio": round(m["B wall s"] / m["A wall s"], 3),
                "paired_mixburn_over_reference": m["A/B wall"],
                "mixburn_peak_mib": m["A peak MiB"],
                "reference_peak_mib": m["B peak MiB"],
                "input_mib": round(os.path.getsize(x) / 2**20, 1),
            }
            print(json.dumps(line), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
