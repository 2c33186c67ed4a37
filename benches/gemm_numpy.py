#!/usr/bin/env python3
"""GFLOP/s of Burn's matrix product (the `gemm-bench` binary) beside NumPy's BLAS on the same
shapes, in one run (issue 26: the hot products' share of the machine's arithmetic).

Usage (from the repository root, after `cargo build --workspace --all-features`):

    python3 benches/gemm_numpy.py [--backends flex,ndarray] [--dtype f32] [--repeats 10]
        [--rust-bin PATH] [--out results.jsonl] [--product]

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
    ap.add_argument("--product", action="store_true",
                    help="also time mixburn's split product (gemm-bench --product: the dense layer's "
                         "products on flex), reported as <backend>-product")
    args = ap.parse_args()
    listing = subprocess.run([args.rust_bin, "--shapes", "list"], check=True, capture_output=True, text=True)
    shapes = []
    for line in listing.stdout.splitlines():
        # `name [b, m, k]·[b, k, n] Transposed count` (count: times per VaDE step)
        name, *dims, transposed, count = line.split(" ")
        dims = " ".join(dims)
        left = dims.split("·")[0].strip("[]").split(",")
        right = dims.split("·")[1].strip("[]").split(",")
        batch, m, k = (int(v) for v in left)
        n = int(right[2])
        shapes.append((name, batch, m, k, n, transposed, int(count)))
    dtype = np.float32 if args.dtype == "f32" else np.float64
    rng = np.random.default_rng(0)
    rows = []
    numpy_gflops = {}
    best_s = {}
    for name, batch, m, k, n, transposed, _ in shapes:
        # A transposed operand is a transposed view, as autodiff's backward hands it over.
        if transposed == "Lhs":
            a = rng.uniform(-1, 1, size=(batch, k, m)).astype(dtype).transpose(0, 2, 1)
        else:
            a = rng.uniform(-1, 1, size=(batch, m, k)).astype(dtype)
        if transposed == "Rhs":
            b = rng.uniform(-1, 1, size=(batch, n, k)).astype(dtype).transpose(0, 2, 1)
        else:
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
        best_s[name] = best
        rows.append({"side": "numpy", "dtype": args.dtype, "shape": name, "flops": flops,
                     "best_s": best, "median_s": sorted(times)[len(times) // 2],
                     "gflops": numpy_gflops[name]})
    out = subprocess.run(
        [args.rust_bin, "--backends", args.backends, "--dtype", args.dtype, "--repeats", str(args.repeats)],
        check=True, capture_output=True, text=True,
    )
    burn = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    backends = args.backends.split(",")
    if args.product:
        out = subprocess.run(
            [args.rust_bin, "--backends", args.backends, "--dtype", args.dtype, "--repeats", str(args.repeats),
             "--product"],
            check=True, capture_output=True, text=True,
        )
        burn += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        backends += [f"{b}-product" for b in backends]
    for r in burn:
        r["side"] = r.pop("backend")
        rows.append(r)
    print(f"{'shape':<22}{'numpy':>10}" + "".join(f"{b:>10}{'ratio':>8}" for b in backends))
    for name, *_ in shapes:
        line = f"{name:<22}{numpy_gflops[name]:>10.1f}"
        for b in backends:
            g = next((r["gflops"] for r in burn if r["side"] == b and r["shape"] == name), float("nan"))
            line += f"{g:>10.1f}{g / numpy_gflops[name]:>8.2f}"
        print(line)
    # The products of one VaDE training step (forward and backward of the whole network,
    # each shape as often as the step runs it): the sum of the best times per side.
    counts = {name: count for name, *_, count in shapes if count}
    if counts:
        line = f"{'vade step products ms':<22}{1e3 * sum(best_s[s] * c for s, c in counts.items()):>10.2f}"
        for b in backends:
            t = sum(next(r["best_s"] for r in burn if r["side"] == b and r["shape"] == s) * c for s, c in counts.items())
            line += f"{1e3 * t:>10.2f}{sum(best_s[s] * c for s, c in counts.items()) / t:>8.2f}"
        print(line)
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
