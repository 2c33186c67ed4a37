#!/usr/bin/env python3
"""Writes a large float32 .npy of rows from a Gaussian mixture, chunk by chunk (never held
whole), for the out-of-core benchmark (`stream-bench`, README "Data larger than memory").

    python3 benches/make_stream_data.py --gib 1 --d 256 --k 16 --out /tmp/stream_1g.npy

Rows: K clusters with means 4·N(0, I) and per-axis scales 0.5 + U(0, 1), row i from cluster
i mod K, plus an offset of 100 on every axis (data far from the origin). Seeded, so the same
file comes back for the same arguments. The file is not kept in the repository.
"""
import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, required=True, help="size of the values in GiB")
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    n = int(a.gib * 2**30) // (4 * a.d)
    rng = np.random.default_rng(a.seed)
    means = (4.0 * rng.standard_normal((a.k, a.d)) + 100.0).astype(np.float32)
    scales = (0.5 + rng.random((a.k, a.d))).astype(np.float32)
    out = np.lib.format.open_memmap(a.out, mode="w+", dtype="<f4", shape=(n, a.d))
    chunk = 1 << 16
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        c = np.arange(s, e) % a.k
        z = rng.standard_normal((e - s, a.d), dtype=np.float32)
        out[s:e] = means[c] + scales[c] * z
    out.flush()
    del out
    print(f"{a.out}: {n} rows x {a.d} float32 ({n * a.d * 4 / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
