#!/usr/bin/env python3
"""Side-by-side EM benchmark: scikit-learn GaussianMixture vs the mixburn `em-bench` binary.

Usage (from the repository root):

    python3 benches/sklearn_em.py [--n 100000] [--d 32] [--k 16] [--iters 5]
        [--covariance full,diag] [--rust-bin PATH] [--backends flex] [--dtype f32]
        [--estimator gmm|bayesian] [--form auto] [--max-memory 1GiB]
        [--out-dir /tmp/mixburn-bench]

--d and --k take comma lists (the issue's width sweep is
`--d 16,64,256,512,1024,2048 --k 4,16 --covariance full,tied,diag --backends flex,ndarray`);
every (D, K) pair runs in turn, each on its own generated data. --form and --max-memory are
passed to em-bench (the E-step form for full/tied, and the memory budget).

With --estimator bayesian the two sides are BayesianGaussianMixture and mixburn's variational
mixture (`em-bench --estimator bayesian`), each from its own k-means initialisation (the same
in both timed runs of a side, so it cancels out of the per-iteration time).

Steps:
  1. generate float32 data (numpy seed 0, K well-separated-ish clusters) -> <out-dir>/x_<n>_<d>.npy
  2. generate deterministic initial parameters per covariance type (means = K data rows
     chosen with seed 1, uniform weights, identity precisions, written as
     "precisions_identity": true rather than K*D*D numbers) -> <out-dir>/init_<d>_<k>_<cov>.json
  3. time scikit-learn per EM iteration: (t(max_iter=iters) - t(max_iter=1)) / (iters - 1),
     each t the best of --repeats runs; every run is a fresh subprocess so that its peak RSS
     (getrusage ru_maxrss) is its own
  4. run `<rust-bin> --input X.npy --covariance C --iters I --backend B --dtype T --init J`
     for each backend, reading the one JSON line it prints
  5. print a table and write it to <out-dir>/report.json
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# $CARGO_TARGET_DIR wins over <repo>/target, as with cargo itself.
DEFAULT_RUST_BIN = Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target") / "debug" / "em-bench"
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# gmm: GaussianMixture vs mixburn's EM from the same initial parameters; bayesian:
# BayesianGaussianMixture vs mixburn's variational mixture, both from their own k-means.
ESTIMATORS = ("gmm", "bayesian")
DTYPES = {"f32": "float32", "f64": "float64"}


def require_libs():
    """Import numpy and scikit-learn, or exit with a clear message."""
    try:
        import numpy
        import sklearn
    except ImportError as exc:
        sys.exit(
            f"error: {exc}.\nThis benchmark needs numpy and scikit-learn: "
            f"{sys.executable} -m pip install numpy scikit-learn"
        )
    return numpy, sklearn


def peak_rss_bytes():
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def int_list(text):
    try:
        items = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers; got {text!r}")
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers; got {text!r}")
    return items


def comma_list(choices=None):
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if choices is not None and s not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(choices or ['names'])}; got {text!r}")
        return items

    return parse


# --------------------------------------------------------------------------- #
# data and initial parameters
# --------------------------------------------------------------------------- #
def make_data(np, n, d, k):
    """N rows, float32, from K Gaussian clusters with random centres and per-axis scales."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(k, d))
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + rng.standard_normal(size=(n, d)) * scales[labels]
    return x.astype(np.float32)


def identity_precisions(np, cov, k, d):
    """Identity precisions in scikit-learn's precisions_init shape for `cov`."""
    return {
        "full": lambda: np.broadcast_to(np.eye(d), (k, d, d)),
        "tied": lambda: np.eye(d),
        "diag": lambda: np.ones((k, d)),
        "spherical": lambda: np.ones(k),
    }[cov]()


def make_inits(np, x, k, covariances):
    """Same means/weights for every covariance type; identity precisions (the shape follows
    the covariance type), flagged rather than written out (K·D² numbers at D = 2048)."""
    n, d = x.shape
    rows = np.random.default_rng(1).choice(n, size=k, replace=False)
    means = x[rows].astype(np.float64)
    weights = np.full(k, 1.0 / k)
    return {
        cov: {
            "weights_init": weights.tolist(),
            "means_init": means.tolist(),
            "precisions_identity": True,
        }
        for cov in covariances
    }


def init_precisions(np, init, cov, k, d):
    """`precisions_init` of an init file: given, or identity where flagged."""
    if init.get("precisions_identity"):
        return identity_precisions(np, cov, k, d).copy()
    return np.asarray(init["precisions_init"])


# --------------------------------------------------------------------------- #
# scikit-learn measurement (one subprocess per fit)
# --------------------------------------------------------------------------- #
def worker_main(argv):
    """Hidden mode: one timed fit; prints one JSON line {seconds, peak_rss_bytes, ...}."""
    p = argparse.ArgumentParser(prog="sklearn_em.py --_worker")
    p.add_argument("--input", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--covariance", required=True)
    p.add_argument("--max-iter", type=int, required=True)
    p.add_argument("--dtype", choices=DTYPES, required=True)
    p.add_argument("--estimator", choices=ESTIMATORS, default="gmm")
    p.add_argument("--reg-covar", type=float, default=1e-6)
    a = p.parse_args(argv)

    np, _ = require_libs()
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    x = np.load(a.input).astype(DTYPES[a.dtype], copy=False)
    init = json.loads(Path(a.init).read_text())
    if a.estimator == "bayesian":
        # No initial parameters to give: k-means initialisation (random_state=0) in every run,
        # so it cancels out of t(max_iter=iters) - t(max_iter=1).
        gm = BayesianGaussianMixture(
            n_components=len(init["weights_init"]),
            covariance_type=a.covariance,
            tol=0.0,
            reg_covar=a.reg_covar,
            max_iter=a.max_iter,
            n_init=1,
            random_state=0,
        )
    else:
        gm = GaussianMixture(
            n_components=len(init["weights_init"]),
            covariance_type=a.covariance,
            tol=0.0,
            reg_covar=a.reg_covar,
            max_iter=a.max_iter,
            n_init=1,
            weights_init=np.asarray(init["weights_init"]),
            means_init=np.asarray(init["means_init"]),
            precisions_init=init_precisions(
                np, init, a.covariance, len(init["weights_init"]), x.shape[1]
            ).astype(x.dtype),
            random_state=0,
        )
    rss_before = peak_rss_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        gm.fit(x)
        seconds = time.perf_counter() - t0
    assert gm.n_iter_ == a.max_iter, (gm.n_iter_, a.max_iter)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_bytes": peak_rss_bytes(),
                "peak_rss_before_fit_bytes": rss_before,
                "input_bytes": int(x.nbytes),
                "lower_bound": float(gm.lower_bound_),
            }
        )
    )


def run_json_line(cmd, env=None):
    """Run cmd; return (last JSON object printed on stdout, None) or (None, error text)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return None, f"exit {proc.returncode}: " + " | ".join(tail)
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line), None
            except json.JSONDecodeError as exc:
                return None, f"bad JSON line {line!r}: {exc}"
    return None, "no JSON line on stdout"


def time_sklearn(x_path, init_path, cov, iters, dtype, repeats, estimator, reg_covar):
    def best_of(max_iter):
        runs = []
        for _ in range(repeats):
            cmd = [
                sys.executable, str(Path(__file__).resolve()), "--_worker",
                "--input", str(x_path), "--init", str(init_path), "--covariance", cov,
                "--max-iter", str(max_iter), "--dtype", dtype, "--estimator", estimator,
                "--reg-covar", repr(reg_covar),
            ]
            res, err = run_json_line(cmd)
            if err:
                raise RuntimeError(f"scikit-learn worker failed ({cov}, max_iter={max_iter}): {err}")
            runs.append(res)
        return min(runs, key=lambda r: r["seconds"]), max(r["peak_rss_bytes"] for r in runs)

    full, peak_rss = best_of(iters)
    setup, _ = best_of(1)
    if full["seconds"] <= setup["seconds"]:
        print(f"warning: [{cov}] t(max_iter={iters}) <= t(max_iter=1); timing noise dominates, "
              "raise --iters or --n", file=sys.stderr)
    return {
        "seconds_per_iter": max(full["seconds"] - setup["seconds"], 0.0) / (iters - 1),
        "seconds_fit_iters": full["seconds"],
        "seconds_fit_1": setup["seconds"],
        "peak_rss_bytes": peak_rss,
        "peak_rss_before_fit_bytes": full["peak_rss_before_fit_bytes"],
        "input_bytes": full["input_bytes"],
        "lower_bound": full["lower_bound"],
    }


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #
def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def rss_cell(rss, input_bytes):
    if rss is None or not input_bytes:
        return "n/a"
    return f"{rss / 2**20:.0f} MiB ({rss / input_bytes:.1f}x)"


def print_table(rows):
    header = ("d", "k", "covariance", "backend", "dtype", "sklearn s/iter", "mixburn s/iter", "speed-up",
              "sklearn peak RSS (x input)", "mixburn peak RSS (x input)")
    cells = [
        (
            r["d"], r["k"], r["covariance"], r["backend"], r["dtype"],
            fmt(r["sklearn_seconds_per_iter"], ".4f"),
            fmt(r["mixburn_seconds_per_iter"], ".4f"),
            fmt(r["speedup"], ".2f") + ("x" if r["speedup"] is not None else ""),
            rss_cell(r["sklearn_peak_rss_bytes"], r["sklearn_input_bytes"]),
            rss_cell(r["mixburn_peak_rss_bytes"], r["mixburn_input_bytes"]),
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *cells)]
    for line in [header, tuple("-" * w for w in widths), *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="rows (default 100000)")
    p.add_argument("--d", type=int_list, default=[32], help="comma list of dimensions (default 32)")
    p.add_argument("--k", type=int_list, default=[16], help="comma list of components (default 16)")
    p.add_argument("--form", choices=("auto", "quadratic", "whitened"), default=None,
                   help="em-bench --form (default: em-bench's, auto)")
    p.add_argument("--max-memory", default=None, help="em-bench --max-memory (e.g. 2GiB)")
    p.add_argument("--iters", type=int, default=5, help="EM iterations, >= 2 (default 5)")
    p.add_argument("--covariance", type=comma_list(COVARIANCE_TYPES), default=["full", "diag"],
                   help="comma list of full,tied,diag,spherical (default full,diag)")
    p.add_argument("--rust-bin", type=Path, default=None,
                   help=f"em-bench binary (default {DEFAULT_RUST_BIN} if it exists)")
    p.add_argument("--backends", type=comma_list(), default=["flex"], help="comma list (default flex)")
    p.add_argument("--dtype", choices=DTYPES, default="f32", help="mixburn dtype (default f32)")
    p.add_argument("--sklearn-dtype", choices=DTYPES, default="f32",
                   help="dtype scikit-learn fits in (default f32, as the issue measures it)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    p.add_argument("--rust-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment of the mixburn runs only (e.g. OPENBLAS_CORETYPE=Haswell for "
                        "an older system OpenBLAS, while NumPy runs without it)")
    p.add_argument("--reg-covar", type=float, default=1e-6,
                   help="reg_covar of both sides (default 1e-6, scikit-learn's; at D >= 1024 with "
                        "N/K < D a component's covariance is singular without more)")
    p.add_argument("--estimator", choices=ESTIMATORS, default="gmm",
                   help="gmm (GaussianMixture, default) or bayesian (BayesianGaussianMixture)")
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/mixburn-bench"))
    a = p.parse_args(argv)
    if a.iters < 2:
        p.error("--iters must be >= 2 (setup time is subtracted using a max_iter=1 fit)")
    if min(a.n, min(a.d), min(a.k), a.repeats) < 1 or max(a.k) > a.n:
        p.error("--n, --d, --k, --repeats must be positive and --k <= --n")
    return a


def sweep_point(np, sklearn, a, d, k, rust_bin, notes):
    """Both sides at one (D, K): data, initial parameters, then every covariance type."""
    x = make_data(np, a.n, d, k)
    x_path = a.out_dir / f"x_{a.n}_{d}_{k}.npy"
    np.save(x_path, x)
    init_paths = {}
    for cov, init in make_inits(np, x, k, a.covariance).items():
        init_paths[cov] = a.out_dir / f"init_{d}_{k}_{cov}.json"
        init_paths[cov].write_text(json.dumps(init))
    print(f"data: {x_path} ({a.n} x {d} float32, {x.nbytes / 2**20:.1f} MiB), k={k}, iters={a.iters}, "
          f"estimator={a.estimator}")

    rows = []
    for cov in a.covariance:
        print(f"[d={d} k={k} {cov}] scikit-learn {sklearn.__version__} ({a.sklearn_dtype}) ...", flush=True)
        try:
            sk = time_sklearn(x_path, init_paths[cov], cov, a.iters, a.sklearn_dtype, a.repeats,
                              a.estimator, a.reg_covar)
        except RuntimeError as exc:
            # A fit scikit-learn refuses (e.g. an ill-defined covariance in float32) is a
            # result of the sweep, not the end of it: mixburn still runs on the same input.
            notes.append(f"d={d}/k={k}/{cov}/scikit-learn: {exc}")
            sk = {"seconds_per_iter": None, "peak_rss_bytes": None, "input_bytes": None,
                  "error": str(exc)[-400:]}
        runs = []
        if rust_bin is not None:
            for backend in a.backends:
                print(f"[d={d} k={k} {cov}] mixburn {backend} ({a.dtype}) ...", flush=True)
                cmd = [str(rust_bin), "--input", str(x_path), "--covariance", cov, "--iters", str(a.iters),
                       "--backend", backend, "--dtype", a.dtype, "--init", str(init_paths[cov]),
                       "--estimator", a.estimator, "--reg-covar", repr(a.reg_covar)]
                if a.form:
                    cmd += ["--form", a.form]
                if a.max_memory:
                    cmd += ["--max-memory", a.max_memory]
                env = dict(os.environ, **dict(item.split("=", 1) for item in a.rust_env))
                res, err = run_json_line(cmd, env=env)
                if err:
                    notes.append(f"d={d}/k={k}/{cov}/{backend}: {err}")
                runs.append((backend, res or {}))
        else:
            runs.append(("-", {}))
        for backend, res in runs:
            mb = res.get("seconds_per_iter")
            rows.append({
                "d": d,
                "k": k,
                "covariance": cov,
                "backend": backend,
                "dtype": a.dtype,
                "sklearn_dtype": a.sklearn_dtype,
                "sklearn_seconds_per_iter": sk["seconds_per_iter"],
                "mixburn_seconds_per_iter": mb,
                "speedup": sk["seconds_per_iter"] / mb if mb and sk["seconds_per_iter"] else None,
                "sklearn_peak_rss_bytes": sk["peak_rss_bytes"],
                "sklearn_input_bytes": sk["input_bytes"],
                "mixburn_peak_rss_bytes": res.get("peak_rss_bytes"),
                "mixburn_input_bytes": res.get("input_bytes"),
                "sklearn": sk,
                "mixburn": res or None,
            })
    return rows



def main(argv):
    a = parse_args(argv)
    np, sklearn = require_libs()
    notes = []

    rust_bin = a.rust_bin
    if rust_bin is None:
        if DEFAULT_RUST_BIN.exists():
            rust_bin = DEFAULT_RUST_BIN
        else:
            notes.append(f"{DEFAULT_RUST_BIN} not found (cargo build --release -p mixburn-benches); "
                         "mixburn runs skipped")
    elif rust_bin.exists():
        rust_bin = rust_bin.resolve()
    else:
        sys.exit(f"error: --rust-bin {rust_bin} does not exist")

    a.out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    # Each point's rows are appended to rows.jsonl as they come, so a long sweep that is
    # stopped keeps what it measured.
    with open(a.out_dir / "rows.jsonl", "a") as partial:
        for d in a.d:
            for k in a.k:
                point = sweep_point(np, sklearn, a, d, k, rust_bin, notes)
                for row in point:
                    partial.write(json.dumps(row) + "\n")
                partial.flush()
                rows.extend(point)

    print()
    print_table(rows)
    for note in notes:
        print(f"note: {note}")

    try:
        from threadpoolctl import threadpool_info
        threads = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")} for i in threadpool_info()]
    except ImportError:
        threads = None
    report = {
        "config": {"n": a.n, "d": a.d, "k": a.k, "iters": a.iters, "covariance": a.covariance,
                   "backends": a.backends, "dtype": a.dtype, "sklearn_dtype": a.sklearn_dtype,
                   "repeats": a.repeats, "reg_covar": a.reg_covar, "form": a.form, "max_memory": a.max_memory, "rust_bin": str(rust_bin) if rust_bin else None},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "sklearn": sklearn.__version__,
                     "sklearn_threadpools": threads},
        "host": {"cpu_count": os.cpu_count(), "platform": sys.platform},
        "method": "sklearn s/iter = (best t(max_iter=iters) - best t(max_iter=1)) / (iters - 1); "
                  "peak RSS = ru_maxrss of a fresh subprocess per fit; speedup = sklearn / mixburn",
        "rows": rows,
        "notes": notes,
    }
    report_path = a.out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {report_path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        worker_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
