"""mixburn: Gaussian mixtures on Burn, from Python.

Drop-in estimators over mixburn's Rust core:

- :class:`GaussianMixture`, :class:`BayesianGaussianMixture`: scikit-learn's
  ``sklearn.mixture`` API (parameters, defaults, attributes, methods), plus
  ``sample_weight``, ``backend`` / ``dtype`` / ``max_memory``, fitting from a ``.npy`` or
  ``.safetensors`` path (streamed), and ``save`` / ``load`` in the command line's files.
- :class:`GMMDetector`: pyod's ``GMM`` detector API (``decision_scores_``, ``threshold_``,
  ``labels_``, ``decision_function``, ``predict``).
- :class:`MahalanobisDetector`: deep Mahalanobis OOD scores on network features (and the
  relative and Mahalanobis++ variants).

Arrays come in as NumPy arrays (float32 kept as float32) or any ``__dlpack__`` tensor; the
GIL is released while the core computes. Importing the extension sets the command line's
allocator policy for the process (freed chunk buffers kept; ``MIXBURN_KEEP_FREED_BUFFERS=0``
before the import declines it).
"""

from . import _native

__version__ = _native.__version__
backends = _native.backends

# The estimators subclass scikit-learn's BaseEstimator, whose import (with SciPy's) takes most
# of a second: they are loaded on first use, so that `import mixburn` costs the extension
# module alone.
_LAZY = {
    "GaussianMixture": "._mixture",
    "BayesianGaussianMixture": "._mixture",
    "GMMDetector": "._detectors",
    "MahalanobisDetector": "._detectors",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mixburn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))

__all__ = [
    "BayesianGaussianMixture",
    "GMMDetector",
    "GaussianMixture",
    "MahalanobisDetector",
    "backends",
]
