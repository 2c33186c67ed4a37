#!/usr/bin/env python3
"""Anomaly detection side by side: the mixture detector (`mixburn anomaly fit/score`, the
binary) beside scikit-learn's IsolationForest, LocalOutlierFactor(novelty=True),
EllipticEnvelope and OneClassSVM (and scikit-learn's GaussianMixture with the same rule), on
the same splits; plus the pictures of docs/anomaly.md and a scoring-throughput benchmark.

    cargo build --workspace --all-features          # mixburn and anomaly-bench
    python3 benches/anomaly_compare.py               # tables (markdown) on stdout
    python3 benches/anomaly_compare.py --plots docs  # also the PNGs
    python3 benches/anomaly_compare.py --bench       # scoring throughput, D = 32 and 512, f32

Protocol (every method sees the same arrays): the normal rows are split at random (seed 0)
into a training part and a test part; a method is fitted on the training part only (normal
rows, no labels); it scores the normal test rows and the anomalies; higher score = more
anomalous (scikit-learn's `-score_samples`, the mixture's `-log p(x)`). Metrics with the
anomalies as the positive class (OpenOOD's convention, as `mixburn ood eval`): AUROC, AUPR
(trapezoid area under the precision-recall curve) and FPR at the first threshold where
TPR >= 0.95. Features are standardised (or PCA-projected) with statistics of the training
part alone.

Data sets (all reproducible here, nothing downloaded):
- breast-cancer (scikit-learn's bundled Wisconsin set, 30 features): benign = normal (70 % to
  train), malignant = anomalies;
- digits (scikit-learn's bundled 8x8 digits, PCA to 20 dims): digits 0-4 = normal (a
  multi-modal normal class), digits 5-9 = anomalies;
- Fashion-MNIST (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist), pixels
  PCA-projected to 32 dims: one class normal (its 6000 training images to train, its 1000
  test images), the other nine classes' test images as anomalies; one row per class.

Timing: wall-clock seconds of the fit and of scoring all test rows; for mixburn this is the
whole command (process start, reading the .npy, writing the result), for scikit-learn the
method call in this process. The mixture detector runs with `--components auto` (BIC over
1..8), full covariances, `--n-init 2`, in f64 as scikit-learn (in f32, K = 4 of 8 full
30x30 covariances from 250 breast-cancer rows is not positive definite).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.covariance import EllipticEnvelope
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score, roc_curve
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_NAMES = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                "sneaker", "bag", "boot"]


# --------------------------------------------------------------------------- data
def split(normal, anomalies, frac, rng):
    idx = rng.permutation(len(normal))
    cut = int(round(frac * len(normal)))
    return normal[idx[:cut]], normal[idx[cut:]], anomalies


def standardise(train, *rest):
    mu, sd = train.mean(0), train.std(0)
    sd[sd == 0] = 1.0
    return [(a - mu) / sd for a in (train, *rest)]


def breast_cancer(rng):
    d = load_breast_cancer()
    x, y = d.data, d.target  # 0 = malignant, 1 = benign
    train, test, anom = split(x[y == 1], x[y == 0], 0.7, rng)
    return standardise(train, test, anom)


def digits(rng):
    d = load_digits()
    x, y = d.data, d.target
    train, test, anom = split(x[y <= 4], x[y >= 5], 0.7, rng)
    pca = PCA(20, random_state=0).fit(train)
    return standardise(*(pca.transform(a) for a in (train, test, anom)))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(cls):
    xs = read_idx(FMNIST / "train-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    ys = read_idx(FMNIST / "train-labels-idx1-ubyte.gz")
    xt = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz").reshape(-1, 784) / 255.0
    yt = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    train, test, anom = xs[ys == cls], xt[yt == cls], xt[yt != cls]
    pca = PCA(32, random_state=0).fit(train)
    return standardise(*(pca.transform(a) for a in (train, test, anom)))


# --------------------------------------------------------------------------- metrics
def metrics(s_normal, s_anom):
    y = np.r_[np.zeros(len(s_normal)), np.ones(len(s_anom))]
    s = np.r_[s_normal, s_anom]
    fpr, tpr, _ = roc_curve(y, s)
    prec, rec, _ = precision_recall_curve(y, s)
    return {
        "auroc": roc_auc_score(y, s),
        "aupr": auc(rec, prec),
        "fpr95": fpr[np.searchsorted(tpr, 0.95, side="left")],
    }


# --------------------------------------------------------------------------- methods
def mixburn(*args):
    exe = TARGET / "debug" / "mixburn"
    t = time.perf_counter()
    out = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"mixburn {' '.join(map(str, args))} failed: {out.stderr}")
    return json.loads(out.stdout), elapsed


def save_npy(path, a, dtype=np.float64):
    np.save(path, np.ascontiguousarray(a, dtype=dtype))


def run_mixburn(train, test, anom, tmp, extra=()):
    tmp = Path(tmp)
    for name, a in (("train", train), ("test", test), ("anom", anom)):
        save_npy(tmp / f"{name}.npy", a)
    fit, t_fit = mixburn("anomaly", "fit", "--input", tmp / "train.npy", "--components", "auto",
                         "--candidates", "1..8", "--n-init", "2", "--seed", "0", "--dtype",
                         "f64", "--output", tmp / "det.json", *extra)
    _, t1 = mixburn("anomaly", "score", "--detector", tmp / "det.json", "--input",
                    tmp / "test.npy", "--output", tmp / "s_test.npy")
    _, t2 = mixburn("anomaly", "score", "--detector", tmp / "det.json", "--input",
                    tmp / "anom.npy", "--output", tmp / "s_anom.npy")
    s_test, s_anom = np.load(tmp / "s_test.npy"), np.load(tmp / "s_anom.npy")
    # The scores feed `mixburn ood eval` as they are; its figures must be ours.
    ev, _ = mixburn("ood", "eval", "--id-scores", tmp / "s_test.npy", "--ood-scores",
                    tmp / "s_anom.npy")
    m = metrics(s_test, s_anom)
    assert abs(ev["auroc"] - m["auroc"]) < 1e-9, (ev, m)
    assert abs(ev["fpr_at_95_tpr"] - m["fpr95"]) < 1e-9, (ev, m)
    m.update(fit_s=t_fit, score_s=t1 + t2, k=fit["n_components"], threshold=fit["threshold"],
             s_test=s_test, s_anom=s_anom)
    return m


def sklearn_gmm():
    class BicGmm:
        def fit(self, x):
            fits = [GaussianMixture(k, n_init=2, random_state=0).fit(x) for k in range(1, 9)]
            self.m = min(fits, key=lambda g: g.bic(x))
            return self

        def score_samples(self, x):
            return self.m.score_samples(x)

    return BicGmm()


BASELINES = {
    "IsolationForest": lambda: IsolationForest(random_state=0),
    "LocalOutlierFactor (novelty)": lambda: LocalOutlierFactor(novelty=True),
    "EllipticEnvelope": lambda: EllipticEnvelope(random_state=0),
    "OneClassSVM": lambda: OneClassSVM(),
    "scikit-learn GaussianMixture (K by BIC)": sklearn_gmm,
}


def run_sklearn(make, train, test, anom):
    est = make()
    t = time.perf_counter()
    est.fit(train)
    t_fit = time.perf_counter() - t
    t = time.perf_counter()
    s_test, s_anom = -est.score_samples(test), -est.score_samples(anom)
    t_score = time.perf_counter() - t
    m = metrics(s_test, s_anom)
    m.update(fit_s=t_fit, score_s=t_score)
    return m


def compare(sets, methods):
    rows = []
    for name, (train, test, anom) in sets:
        print(f"## {name}: train {train.shape}, test {len(test)} normal + {len(anom)} anomalies",
              file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            r = run_mixburn(train, test, anom, tmp)
        rows.append((name, f"mixburn mixture (K = {r['k']})", r))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        for label, make in BASELINES.items():
            if label in methods or "all" in methods:
                rows.append((name, label, run_sklearn(make, train, test, anom)))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def table(rows):
    out = ["| data | method | AUROC % | AUPR % | FPR95 % | fit s | score s |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for data, method, m in rows:
        out.append(f"| {data} | {method} | {100 * m['auroc']:.1f} | {100 * m['aupr']:.1f} | "
                   f"{100 * m['fpr95']:.1f} | {m['fit_s']:.2f} | {m['score_s']:.3f} |")
    return "\n".join(out)


# --------------------------------------------------------------------------- pictures
def plots(out_dir, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    faithful = np.loadtxt(ROOT / "data" / "faithful.csv", delimiter=",", skiprows=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_npy(tmp / "x.npy", faithful)
        fit, _ = mixburn("anomaly", "fit", "--input", tmp / "x.npy", "--components", "auto",
                         "--candidates", "1..6", "--contamination", "0.05", "--dtype", "f64",
                         "--n-init", "2", "--output", tmp / "det.json")
        mixburn("anomaly", "score", "--detector", tmp / "det.json", "--input", tmp / "x.npy",
                "--output", tmp / "s.npy", "--flags", tmp / "f.npy")
        gx, gy = np.meshgrid(np.linspace(1.0, 6.0, 200), np.linspace(35, 105, 200))
        save_npy(tmp / "g.npy", np.c_[gx.ravel(), gy.ravel()])
        mixburn("anomaly", "score", "--detector", tmp / "det.json", "--input", tmp / "g.npy",
                "--output", tmp / "gs.npy")
        flags = np.load(tmp / "f.npy").astype(bool)
        grid = np.load(tmp / "gs.npy").reshape(gx.shape)
    t = fit["threshold"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=100)
    levels = np.linspace(grid.min(), t + 6, 12)
    cs = ax.contour(gx, gy, grid, levels=levels, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fmt="%.1f", fontsize=6)
    ax.contour(gx, gy, grid, levels=[t], colors="red", linewidths=2)
    ax.scatter(*faithful[~flags].T, s=8, c="k", label="normal")
    ax.scatter(*faithful[flags].T, s=40, c="red", marker="x",
               label=f"flagged ({flags.sum()}, score > {t:.2f})")
    ax.set_xlabel("eruption (min)")
    ax.set_ylabel("waiting (min)")
    ax.set_title(f"Old Faithful: -log p(x) contours, K = {fit['n_components']} (BIC), "
                 "contamination 0.05", fontsize=9)
    ax.plot([], [], c="red", lw=2, label="threshold contour")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "anomaly-faithful.png")
    plt.close(fig)

    mix = [(d, m) for d, meth, m in rows if meth.startswith("mixburn")][:2]
    fig, axes = plt.subplots(1, len(mix), figsize=(4.2 * len(mix), 3.2), dpi=100)
    for ax, (data, m) in zip(np.atleast_1d(axes), mix):
        hi = np.percentile(np.r_[m["s_test"], m["s_anom"]], 97)
        lo = min(m["s_test"].min(), m["s_anom"].min())
        bins = np.linspace(lo, hi, 50)
        ax.hist(np.clip(m["s_test"], lo, hi), bins=bins, alpha=0.6, density=True,
                label="normal (test)")
        ax.hist(np.clip(m["s_anom"], lo, hi), bins=bins, alpha=0.6, density=True,
                label="anomalies")
        ax.axvline(m["threshold"], c="red", lw=1.5, label="threshold (c = 0.1)")
        ax.set_title(f"{data}: AUROC {100 * m['auroc']:.1f} %", fontsize=9)
        ax.set_xlabel("-log p(x) (last bin: 97th percentile and above)", fontsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / "anomaly-hist.png")
    plt.close(fig)


# --------------------------------------------------------------------------- benchmark
def detector_json(gm, threshold, contamination):
    """A mixburn detector file holding scikit-learn's fitted mixture (the same model)."""
    model = {
        "covariance_type": gm.covariance_type, "n_components": int(gm.n_components),
        "n_features": int(gm.means_.shape[1]), "reg_covar": gm.reg_covar, "precision": "f32",
        "weights": gm.weights_.astype(float).ravel().tolist(),
        "means": gm.means_.astype(float).ravel().tolist(),
        "covariances": gm.covariances_.astype(float).ravel().tolist(),
        "precisions_cholesky": gm.precisions_cholesky_.astype(float).ravel().tolist(),
        "converged": bool(gm.converged_), "n_iter": int(gm.n_iter_),
        "lower_bound": float(gm.lower_bound_), "lower_bounds": [],
    }
    return {"format": "mixburn-anomaly", "version": 1, "threshold": float(threshold),
            "threshold_rule": {"rule": "contamination", "contamination": contamination},
            "mixture": {"format": "mixburn-gmm", "version": 1, "model": model}}


def bench(dims, k32, repeats, backends):
    rows = []
    for d in dims:
        # K = 8 at D = 32; K = 4 at D = 512 (1500 rows per component for a 512x512
        # covariance, and a fit of a few minutes on two cores).
        n_fit, n_score, k = (20000, 100000, k32) if d <= 64 else (6000, 20000, max(1, k32 // 2))
        rng = np.random.default_rng(d)
        centres = rng.normal(scale=3.0, size=(k, d))
        def draw(n):
            return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(np.float32)
        x_fit, x = draw(n_fit), draw(n_score)
        gm = GaussianMixture(k, covariance_type="full", max_iter=5, random_state=0).fit(x_fit)
        thr = np.percentile(-gm.score_samples(x_fit), 90)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            ref = -gm.score_samples(x)
            best = min(best, time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "det.json").write_text(json.dumps(detector_json(gm, thr, 0.1)))
            np.save(tmp / "x.npy", x)
            _, cli_s = mixburn("anomaly", "score", "--detector", tmp / "det.json", "--input",
                               tmp / "x.npy", "--output", tmp / "s.npy", "--dtype", "f32")
            ours = np.load(tmp / "s.npy")
            agree = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
            for b in backends:
                cmd = ["/usr/bin/time", "-v", str(TARGET / "debug" / "anomaly-bench"),
                       "--detector", str(tmp / "det.json"), "--input", str(tmp / "x.npy"),
                       "--backend", b, "--dtype", "f32", "--repeats", str(repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"anomaly-bench {b} failed: {out.stderr[-400:]}", file=sys.stderr)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rss = [l for l in out.stderr.splitlines() if "Maximum resident" in l]
                rss_mib = int(rss[0].split()[-1]) / 1024 if rss else float("nan")
                rows.append((d, k, n_score, b, n_score / best, r["rows_per_s"], cli_s, rss_mib,
                             x.nbytes / 2**20, agree))
    print("| D | K | rows | backend | scikit-learn rows/s | mixburn rows/s | ratio | "
          "`anomaly score` CLI s | mixburn peak RSS MiB | input MiB | max rel. diff |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for d, k, n, b, sk, mb, cli, rss, inp, agree in rows:
        print(f"| {d} | {k} | {n} | {b} | {sk:,.0f} | {mb:,.0f} | {mb / sk:.2f}x | {cli:.2f} | "
              f"{rss:.0f} | {inp:.0f} | {agree:.1e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="breast-cancer,digits,fashion")
    ap.add_argument("--fashion-classes", default="0,1,7")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--plots", help="directory for the PNGs")
    ap.add_argument("--bench", action="store_true", help="scoring throughput instead")
    ap.add_argument("--dims", default="32,512")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="flex")
    a = ap.parse_args()
    if a.bench:
        bench([int(v) for v in a.dims.split(",")], a.k, a.repeats, a.backends.split(","))
        return
    rng = np.random.default_rng(0)
    sets = []
    wanted = a.sets.split(",")
    if "breast-cancer" in wanted:
        sets.append(("breast-cancer", breast_cancer(rng)))
    if "digits" in wanted:
        sets.append(("digits 0-4 vs 5-9", digits(rng)))
    if "fashion" in wanted:
        for c in [int(v) for v in a.fashion_classes.split(",")]:
            sets.append((f"Fashion-MNIST {FMNIST_NAMES[c]}", fashion(c)))
    rows = compare(sets, a.methods.split(","))
    print(table(rows))
    if a.plots:
        plots(a.plots, rows)


if __name__ == "__main__":
    main()
