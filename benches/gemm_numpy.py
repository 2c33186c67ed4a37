#!/usr/bin/env python3
"""GFLOP/s of Burn's matrix product (the `gemm-bench` binary) beside NumPy's BLAS on the same
shapes, in one run (issue 26: the hot products' share of the machine's arithmetic).

Usage (from the repository root, after `cargo build --workspace --all-features`):

    python3 benches/gemm_numpy.py [--backends flex,ndarray] [--dtype f32] [--repeats 10]
        [--rust-bin PATH] [--out results.jsonl]

The shapes are the binary's own (`gemm-bench --shapes list`); NumPy times `a @ b` on
operands of the same shapes and dtype (a batched `[B, m, k] @ [B, k, n]` for B > 1), best
of --repeats after two warm-up calls, with NumPy's BLAS threads as the environment sets
them (all cores by default, as Burn's CPU backends). Prints a table of GFLOP/s per shape and
backend and the ratio to NumPy; with --out, appends one JSON line per (shape, side).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUST_BIN = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target") / "debug" / "gemm-bench"


def main():
    try:
        import numpy as np
    except ImportError as exc:
        sys.exit(f"error: {exc}. This benchmark needs numpy: {sys.executable} -m pip install numpy")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="flex")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rust-bin", default=str(DEFAULT_RUST_BIN))
    ap.add_argument("--out")
    args = ap.parse_args()
    listing = subprocess.run([args.rust_bin, "--shapes", "list"], check=True, capture_output=True, text=True)
    shapes = []
    for line in listing.stdout.splitlines():
        name, dims = line.split(" ", 1)
        left = dims.split("·")[0].strip("[]").split(",")
        right = dims.split("·")[1].strip("[]").split(",")
        batch, m, k = (int(v) for v in left)
        n = int(right[2])
        shapes.append((name, batch, m, k, n))
    dtype = np.float32 if args.dtype == "f32" else np.float64
    rng = np.random.default_rng(0)
    rows = []
    numpy_gflops = {}
    for name, batch, m, k, n in shapes:
        a = rng.uniform(-1, 1, size=(batch, m, k)).astype(dtype)
        b = rng.uniform(-1, 1, size=(batch, k, n)).astype(dtype)
        if batch == 1:
            a, b = a[0], b[0]
        times = []
        for i in range(args.repeats + 2):
            t = time.perf_counter()
            c = a @ b
            elapsed = time.perf_counter() - t
            if i >= 2:
                times.append(elapsed)
        del c
        flops = 2.0 * batch * m * k * n
        best = min(times)
        numpy_gflops[name] = flops / best / 1e9
        rows.append({"side": "numpy", "dtype": args.dtype, "shape": name, "flops": flops,
                     "best_s": best, "median_s": sorted(times)[len(times) // 2],
                     "gflops": numpy_gflops[name]})
    out = subprocess.run(
        [args.rust_bin, "--backends", args.backends, "--dtype", args.dtype, "--repeats", str(args.repeats)],
        check=True, capture_output=True, text=True,
    )
    burn = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    for r in burn:
        r["side"] = r.pop("backend")
        rows.append(r)
    backends = args.backends.split(",")
    print(f"{'shape':<22}{'numpy':>10}" + "".join(f"{b:>10}{'ratio':>8}" for b in backends))
    for name, *_ in shapes:
        line = f"{name:<22}{numpy_gflops[name]:>10.1f}"
        for b in backends:
            g = next((r["gflops"] for r in burn if r["side"] == b and r["shape"] == name), float("nan"))
            line += f"{g:>10.1f}{g / numpy_gflops[name]:>8.2f}"
        print(line)
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
