"""score_samples from Python: mixburn.GaussianMixture against scikit-learn's on the same
parameters and rows, in one process, side by side (median of repeated calls).

    python3 benches/python_score.py --n 100000 --d 512 --k 8 --dtype float32
"""

import argparse
import json
import time

import numpy as np
from sklearn.mixture import GaussianMixture as SkGM

import mixburn


def median_time(f, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(a.k, a.d))
    X = (centres[rng.integers(0, a.k, a.n)] + rng.normal(size=(a.n, a.d))).astype(a.dtype)
    ours = mixburn.GaussianMixture(n_components=a.k, max_iter=3, random_state=0)
    ours.fit(X[:20000])
    ref = SkGM(n_components=a.k)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]:
        setattr(ref, name, getattr(ours, name).copy())
    ref.converged_, ref.n_iter_, ref.lower_bound_ = True, 1, 0.0
    ref.n_features_in_ = a.d
    a_s = ours.score_samples(X)
    b_s = ref.score_samples(X)
    err = float(np.max(np.abs(a_s - b_s) / np.maximum(1.0, np.abs(b_s))))
    t_ours = median_time(lambda: ours.score_samples(X), a.repeats)
    t_ref = median_time(lambda: ref.score_samples(X), a.repeats)
    print(json.dumps({"n": a.n, "d": a.d, "k": a.k, "dtype": a.dtype,
                      "mixburn_s": round(t_ours, 4), "sklearn_s": round(t_ref, 4),
                      "speedup": round(t_ref / t_ours, 3), "max_rel_diff": err}))


if __name__ == "__main__":
    main()
