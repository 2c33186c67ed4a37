#!/usr/bin/env python3
"""Scoring throughput of the Mahalanobis detector: mixburn (ood-bench, per backend) beside
NumPy running the same matmul-form formula on the same machine, same shapes and dtype.

    python3 benches/ood_numpy.py --d 512 --classes 10,1000 --n 20000 --backends flex,ndarray,wgpu

NumPy: y = (x - o) F; d2 = |y|^2 - 2 y m^T + |m|^2; score = min_c d2 / 2 (chunks of
--chunk rows on both sides, float32), i.e. exactly what the detector computes; F is a D x D precision factor.
Prints a markdown table of rows/s and the ratio mixburn / NumPy.
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


def main():
    ap = argparse.ArgumentParser()
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
