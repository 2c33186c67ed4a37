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
GIL is released while the core computes.
"""

from . import _native
from ._detectors import GMMDetector, MahalanobisDetector
from ._mixture import BayesianGaussianMixture, GaussianMixture

__version__ = _native.__version__
backends = _native.backends

__all__ = [
    "BayesianGaussianMixture",
    "GMMDetector",
    "GaussianMixture",
    "MahalanobisDetector",
    "backends",
]
