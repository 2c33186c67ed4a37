#!/usr/bin/env python3
"""Scoring throughput of the Mahalanobis detector: mixburn (ood-bench, per backend) beside
NumPy running the same matmul-form formula on the same machine, same shapes and dtype.

    python3 benches/ood_numpy.py --d 512 --classes 10,1000 --n 20000 --backends flex,ndarray,wgpu

NumPy: y = (x - o) F; d2 = |y|^2 - 2 y m^T + |m|^2; score = min_c d2 / 2 (chunks of
--chunk rows on both sides, float32), i.e. exactly what the detector computes; F is a D x D precision factor.
Prints a markdown table of rows/s and the ratio mixburn / NumPy.

    python3 benches/ood_numpy.py --mode fit --d 2048 --n 20000 --classes 10 --backends flex

Fit mode: writes seeded class features (float32 .npy) and labels once to --dir, then times the
detector's fit from those files on both sides, each in its own process under /usr/bin/time -v
(peak RSS): NumPy/SciPy reads them, computes the class means, the pooled covariance
(Xc^T Xc / N in float64) and its pseudo-inverse factor by scipy.linalg.pinvh; mixburn's
`ood-bench --mode fit` does what `mixburn ood fit` does (read, class statistics, factor, save).
Both score the first 1000 rows and the largest relative difference is printed.
"""

import argparse
import json
import os
import subprocess
import time

import numpy as np


def numpy_rows_per_second(n, d, c, dtype, chunk, repeats):
    rng = np.random.default_rng(0)
    f = (rng.normal(size=(d, d)) / np.sqrt(d)).astype(dtype)
    o = rng.normal(size=(1, d)).astype(dtype)
    m = rng.normal(size=(c, d)).astype(dtype) @ f
    msq = (m * m).sum(1)[None, :]
    x = rng.normal(size=(n, d)).astype(dtype)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = np.empty(n, dtype=np.float64)
        for s in range(0, n, chunk):
            y = (x[s:s + chunk] - o) @ f
            d2 = (y * y).sum(1, keepdims=True) - 2.0 * (y @ m.T) + msq
            out[s:s + chunk] = 0.5 * np.maximum(d2, 0).min(1)
        best = min(best, time.perf_counter() - t)
    return n / best


def make_fit_data(directory, n, d, c):
    """Seeded class features (float32) and labels, written once."""
    os.makedirs(directory, exist_ok=True)
    fx = os.path.join(directory, f"features_{n}x{d}_{c}.npy")
    fy = os.path.join(directory, f"labels_{n}_{c}.npy")
    if not (os.path.exists(fx) and os.path.exists(fy)):
        rng = np.random.default_rng(0)
        y = np.arange(n) % c
        centres = rng.normal(size=(c, d)).astype(np.float32)
        x = rng.standard_normal(size=(n, d), dtype=np.float32) + 3.0 * centres[y]
        np.save(fx, x)
        np.save(fy, y.astype(np.int64))
    return fx, fy


def numpy_fit(fx, fy, out_scores, score_rows):
    """The reference fit (Lee et al.'s code path in float64, SciPy's pinvh), by phase."""
    import scipy.linalg
    t = time.perf_counter()
    x = np.load(fx)
    y = np.load(fy)
    read = time.perf_counter() - t
    t = time.perf_counter()
    x64 = x.astype(np.float64)
    c = int(y.max()) + 1
    means = np.stack([x64[y == k].mean(0) for k in range(c)])
    means_s = time.perf_counter() - t
    t = time.perf_counter()
    xc = x64 - means[y]
    cov = xc.T @ xc / len(x64)
    scatter_s = time.perf_counter() - t
    t = time.perf_counter()
    prec = scipy.linalg.pinvh(cov)
    pinv_s = time.perf_counter() - t
    z = x64[:score_rows]
    d2 = np.stack([(((z - m) @ prec) * (z - m)).sum(1) for m in means], 1)
    np.save(out_scores, 0.5 * d2.min(1))
    print(json.dumps({"read_seconds": read, "means_seconds": means_s, "scatter_seconds": scatter_s,
                      "pinvh_seconds": pinv_s, "fit_seconds": means_s + scatter_s + pinv_s}))


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (last stdout line as JSON, peak RSS in MiB, wall s)."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {out.stderr.strip()[-400:]}")
    rss = [l for l in out.stderr.splitlines() if "Maximum resident set size" in l]
    rss_mib = int(rss[0].split(":")[1]) / 1024 if rss else float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1]), rss_mib, wall


def fit_mode(a):
    fx, fy = make_fit_data(a.dir, a.n, a.d, int(a.classes.split(",")[0]))
    ns = os.path.join(a.dir, "numpy_scores.npy")
    npr, np_rss, np_wall = timed(["python3", os.path.abspath(__file__), "--numpy-fit", fx, fy, ns])
    ref = np.load(ns)
    size = os.path.getsize(fx)
    print(f"input: {a.n} x {a.d} float32 ({size / 2**20:.0f} MiB), {a.classes} classes\n")
    print("| side | read s | statistics s | factor s | save s | fit s (stats + factor) | "
          "process wall s | peak RSS MiB | fit ratio | max rel. score diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| NumPy/SciPy float64 | {npr['read_seconds']:.2f} | "
          f"{npr['means_seconds'] + npr['scatter_seconds']:.2f} | {npr['pinvh_seconds']:.2f} | - | "
          f"{npr['fit_seconds']:.2f} | {np_wall:.2f} | {np_rss:.0f} | 1.00x | - |", flush=True)
    for b in a.backends.split(","):
        rs = os.path.join(a.dir, f"rust_scores_{b}.npy")
        det = os.path.join(a.dir, f"detector_{b}.safetensors")
        r, rss, wall = timed([a.rust_bin, "--mode", "fit", "--features", fx, "--labels", fy,
                              "--output", det, "--scores", rs, "--backend", b, "--dtype", a.dtype,
                              "--chunk-size", str(a.chunk)] + (["--old-path"] if a.old_path else []))
        got = np.load(rs)
        diff = float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))
        print(f"| mixburn {b} {a.dtype} | {r['read_seconds']:.2f} | {r['statistics_seconds']:.2f} | "
              f"{r['factor_seconds']:.2f} | {r['save_seconds']:.2f} | {r['fit_seconds']:.2f} | "
              f"{wall:.2f} | {rss:.0f} | {npr['fit_seconds'] / r['fit_seconds']:.2f}x | "
              f"{diff:.1e} |", flush=True)
        print(f"\ndetector file: {r['file_bytes'] / 2**20:.1f} MiB", flush=True)
        if a.old_path:
            print(f"before this change ({b}): SVD factor {r['svd_factor_seconds']:.2f} s, "
                  f"JSON detector file {r['json_bytes'] / 2**20:.1f} MiB written in "
                  f"{r['json_save_seconds']:.2f} s", flush=True)


def main():
    if len(os.sys.argv) > 1 and os.sys.argv[1] == "--numpy-fit":
        numpy_fit(*os.sys.argv[2:5], score_rows=1000)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="score", choices=["score", "fit"])
    ap.add_argument("--dir", default="/tmp/mixburn-ood-fit")
    ap.add_argument("--old-path", action="store_true",
                    help="fit mode: also time the SVD factor and the JSON file (before this change)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", default="10,1000")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--backends", default="flex,ndarray,wgpu")
    ap.add_argument("--dtype", default="f32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=1024)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--rust-bin", default=os.path.join(target, "debug", "ood-bench"))
    a = ap.parse_args()
    if a.mode == "fit":
        fit_mode(a)
        return
    dtype = np.float32 if a.dtype == "f32" else np.float64
    print(f"| D | classes | backend | mixburn rows/s | NumPy rows/s | ratio |")
    print("|---|---|---|---|---|---|")
    for c in [int(v) for v in a.classes.split(",")]:
        npr = numpy_rows_per_second(a.n, a.d, c, dtype, a.chunk, a.repeats)
        for b in a.backends.split(","):
            out = subprocess.run(
                [a.rust_bin, "--d", str(a.d), "--classes", str(c), "--n", str(a.n), "--backend", b,
                 "--dtype", a.dtype, "--repeats", str(a.repeats), "--chunk-size", str(a.chunk)],
                capture_output=True, text=True)
            if out.returncode != 0:
                print(f"| {a.d} | {c} | {b} | failed: {out.stderr.strip()[:80]} | {npr:,.0f} | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {a.d} | {c} | {b} | {r['rows_per_second']:,.0f} | {npr:,.0f} | "
                  f"{r['rows_per_second'] / npr:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
