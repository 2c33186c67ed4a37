"""Arrays in: NumPy arrays (float32 kept as float32, without a copy when the layout allows),
any object with ``__dlpack__`` (a torch tensor), ``.npy`` / ``.safetensors`` paths (fit
only, streamed); settings out to the compiled module."""

import os

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, validate_data

#: The dtypes computed in; any other input is converted to float64 (scikit-learn's rule).
FLOAT_DTYPES = [np.float64, np.float32]


def is_path(X):
    """Whether ``X`` names a data file (a ``str`` or ``os.PathLike``) rather than rows."""
    return isinstance(X, (str, os.PathLike))


def from_dlpack(X):
    """A NumPy view of a tensor that speaks DLPack (a CPU torch tensor, a JAX array); other
    objects pass through unchanged."""
    if isinstance(X, np.ndarray) or not hasattr(X, "__dlpack__"):
        return X
    if hasattr(X, "detach"):  # torch: a tensor that requires grad refuses DLPack export
        X = X.detach()
    if hasattr(X, "device") and str(getattr(X, "device", "cpu")) not in ("cpu", "CPU"):
        X = X.cpu() if hasattr(X, "cpu") else X
    return np.from_dlpack(X)


def rows(estimator, X, *, reset, ensure_min_samples=1):
    """``X`` checked as scikit-learn checks it (2-D, finite, numeric; float32 kept), with
    ``n_features_in_`` set when ``reset`` and compared otherwise."""
    return validate_data(
        estimator,
        from_dlpack(X),
        dtype=FLOAT_DTYPES,
        reset=reset,
        ensure_min_samples=ensure_min_samples,
    )


def sample_weights(sample_weight, X):
    """Non-negative float64 weights of length ``n_samples``, or ``None`` for all equal (a
    vector of ones is the unweighted fit, so it takes the same path)."""
    if sample_weight is None:
        return None
    w = _check_sample_weight(
        from_dlpack(sample_weight), X, dtype=np.float64, ensure_non_negative=True
    )
    if np.all(w == 1.0):
        return None
    return np.ascontiguousarray(w)


def seed(random_state):
    """A 64-bit seed for the core from scikit-learn's ``random_state`` (None, an int or a
    ``RandomState``)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def memory(max_memory):
    """The memory budget as the core parses it (``"1GiB"``, ``"512MiB"``, or bytes)."""
    if isinstance(max_memory, (int, np.integer)) and not isinstance(max_memory, bool):
        return str(int(max_memory))
    return str(max_memory)


def choice(value):
    """scikit-learn's spellings (``random_from_data``, ``dirichlet_process``) as the core's
    (``random-from-data``, ``dirichlet-process``)."""
    return str(value).replace("_", "-")


def flat_or_none(a):
    """A float64 vector of an array's values (row-major), or ``None``."""
    if a is None:
        return None
    return np.ascontiguousarray(np.asarray(from_dlpack(a), dtype=np.float64).ravel())


def dtype_name(dtype):
    """``dtype`` as the core names it (``f32`` / ``f64``), or ``None`` for the data's."""
    if dtype is None:
        return None
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"Invalid value for 'dtype': {dtype!r}; use float32 or float64")
    return {"float32": "f32", "float64": "f64"}[name]


def compute(estimator):
    """Where an estimator computes (its ``backend``, ``dtype``, ``max_memory``), as the
    compiled module's calls take it."""
    return {
        "backend": str(estimator.backend),
        "dtype": dtype_name(estimator.dtype),
        "max_memory": memory(estimator.max_memory),
    }
