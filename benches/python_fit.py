"""The Python package against the command line on the same fit (issue 31's target: the
Python class's fit time within 5 % of the CLI's; import under 0.5 s).

    python3 benches/python_fit.py data PATH.npy [--n 10000 --d 512 --seed 0]
    python3 benches/python_fit.py fit PATH.npy --k 8 --iters 10     # what farm-bench times
    python3 benches/python_fit.py fit-timed PATH.npy --k 8 --iters 10  # the fit alone, in-process
    python3 benches/python_fit.py import                             # prints the import time

Paired by farm-bench (docs/benchmarks.md, "Python package") with the same work from the
command line behind the same interpreter start and imports:
`sh -c 'python3 -c "import numpy, sklearn.base, mixburn" && exec mixburn fit --input PATH.npy
--components 8 --max-iter 10 --tol 0 --seed 209652396 --output ...'` (209652396 is the seed
`random_state=0` gives). Both load the same .npy, fit the same EM iterations in f32 on flex,
score the rows once and write the model file.
"""

import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["data", "fit", "fit-timed", "import"])
    ap.add_argument("path", nargs="?")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--covariance", default="full")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.what == "import":
        t = time.perf_counter()
        import mixburn  # noqa: F401

        print(f"import mixburn: {time.perf_counter() - t:.3f} s")
        return
    import numpy as np

    if a.what == "data":
        rng = np.random.default_rng(a.seed)
        centres = rng.normal(0, 4, size=(a.k, a.d))
        X = centres[rng.integers(0, a.k, a.n)] + rng.normal(size=(a.n, a.d))
        np.save(a.path, X.astype(np.float32))
        return
    import mixburn

    X = np.load(a.path)
    gm = mixburn.GaussianMixture(n_components=a.k, covariance_type=a.covariance,
                                 max_iter=a.iters, tol=0.0, random_state=a.seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = 5 if a.what == "fit-timed" else 1
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            gm.fit(X)
            times.append(time.perf_counter() - t)
    if a.what == "fit":
        # What `mixburn fit` does after EM: the log-likelihood of the rows, the model file.
        gm.score(X)
        gm.save("/tmp/python_fit.safetensors")
    if a.what == "fit-timed":
        times.sort()
        print(f"GaussianMixture.fit: median {times[len(times) // 2]:.3f} s of {times}")
    print(gm.n_iter_, gm.lower_bound_, file=sys.stderr)


if __name__ == "__main__":
    main()
