"""Detectors: ``GMMDetector`` (pyod's ``GMM`` API: anomaly scores ``−log p(x)`` and a
threshold at the contamination quantile of the training scores) and
``MahalanobisDetector`` (deep Mahalanobis OOD scores on network features: Lee et al. 2018,
the relative variant of Ren et al. 2021, Mahalanobis++ of Müller & Hein 2025). Both read and
write the files of ``mixburn anomaly`` and ``mixburn ood``."""

import numpy as np
from scipy.special import erf
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _inputs, _native
from ._mixture import COVARIANCE_TYPES, floats as _floats, mixture_attributes


class GMMDetector(OutlierMixin, BaseEstimator):
    """Anomaly detection by mixture likelihood with pyod's detector API (``pyod.models.gmm.
    GMM``): ``fit`` sets ``decision_scores_`` (``−log p`` of the training rows),
    ``threshold_`` (their ``1 − contamination`` percentile) and ``labels_`` (1 = outlier);
    ``decision_function`` scores new rows; ``predict`` flags them.

    Beyond pyod: ``n_components`` may be a list of candidates, of which the one with the
    lowest BIC is kept (``n_components_``); ``backend`` / ``dtype`` / ``max_memory`` as for
    :class:`GaussianMixture`; ``save`` / ``load`` in ``mixburn anomaly``'s detector files.
    """

    def __init__(
        self,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        contamination=0.1,
        backend="flex",
        dtype=None,
        max_memory="1GiB",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.contamination = contamination
        self.backend = backend
        self.dtype = dtype
        self.max_memory = max_memory

    def fit(self, X, y=None):
        """Fits the mixture to ``X`` (the normal rows, perhaps with some contamination)
        and sets the threshold."""
        from ._mixture import GaussianMixture

        if not (0.0 < float(self.contamination) <= 0.5):
            raise ValueError(
                f"contamination must be in (0, 0.5], got: {self.contamination}"
            )
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"Invalid value for 'covariance_type': {self.covariance_type!r}")
        X = _inputs.rows(self, X, reset=True, ensure_min_samples=2)
        # A sequence of K: the one with the lowest BIC (the command line's --components 1..8).
        candidates = None
        k = self.n_components
        if not isinstance(k, (int, np.integer)):
            candidates = [int(c) for c in k]
            if not candidates or min(candidates) < 1:
                raise ValueError(f"n_components must be >= 1 or a list of such, got {k!r}")
            k = candidates[0]
        gm = GaussianMixture(
            n_components=k,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=self.random_state,
            max_memory=self.max_memory,
        )
        gm._check_parameters()
        self._detector = _native.fit_anomaly(
            gm._settings(),
            _inputs.compute(self),
            X,
            float(self.contamination),
            weights_init=_inputs.flat_or_none(self.weights_init),
            means_init=_inputs.flat_or_none(self.means_init),
            precisions_init=_inputs.flat_or_none(self.precisions_init),
            candidates=candidates,
        )
        self._set_attributes()
        self.decision_scores_ = self._scores(X)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int).ravel()
        return self

    def update(self, X):
        """Adds normal rows ``X`` to a fitted single-Gaussian detector (``n_components=1``)
        without its first rows: the mixture equals a fit on all rows (its count of rows is
        kept), and the threshold is set again by ``contamination`` on the new rows' scores
        (``decision_scores_`` and ``labels_`` are then theirs). A mixture of several
        components has no exact update and is refused (continue it with online EM,
        ``GaussianMixture.partial_fit``)."""
        check_is_fitted(self)
        X = _inputs.rows(self, X, reset=False, ensure_min_samples=1)
        self._detector = self._detector.update(X, _inputs.compute(self))
        self._set_attributes()
        self.decision_scores_ = self._scores(X)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int).ravel()
        return self

    def _set_attributes(self):
        d = self._detector
        self.threshold_ = float(d.threshold)
        p = d.mixture().params()
        for name, value in mixture_attributes(p).items():
            setattr(self, name, value)
        self.n_components_ = int(p["n_components"])

    def _scores(self, X):
        return _floats(self._detector.score(X, _inputs.compute(self)))

    def decision_function(self, X):
        """Anomaly scores ``−log p(x)`` (higher = more anomalous), shape ``(n_samples,)``."""
        check_is_fitted(self)
        return self._scores(_inputs.rows(self, X, reset=False))

    def predict(self, X, return_confidence=False):
        """1 for an outlier (score above ``threshold_``), 0 for an inlier (pyod's
        convention, not scikit-learn's ±1)."""
        scores = self.decision_function(X)
        labels = (scores > self.threshold_).astype(int).ravel()
        if return_confidence:
            return labels, self.predict_confidence(X)
        return labels

    def fit_predict(self, X, y=None):
        """``fit(X).labels_``."""
        return self.fit(X).labels_

    def predict_proba(self, X, method="linear", return_confidence=False):
        """Outlier probabilities ``(n_samples, 2)`` from the scores, pyod's ``linear``
        (min-max over the training scores) or ``unify`` (Kriegel et al. 2011) way."""
        check_is_fitted(self)
        train = self.decision_scores_
        test = self.decision_function(X)
        probs = np.zeros([test.shape[0], 2])
        if method == "linear":
            lo, hi = train.min(), train.max()
            span = hi - lo if hi > lo else 1.0
            probs[:, 1] = ((test - lo) / span).clip(0, 1)
        elif method == "unify":
            mu, sigma = np.mean(train), np.std(train)
            probs[:, 1] = erf((test - mu) / (sigma * np.sqrt(2))).clip(0, 1)
        else:
            raise ValueError(f"{method} is not a valid probability conversion method")
        probs[:, 0] = 1 - probs[:, 1]
        if return_confidence:
            return probs, self.predict_confidence(X)
        return probs

    def predict_confidence(self, X):
        """pyod's confidence in each prediction (Perini et al. 2020), in [0, 1]."""
        from scipy.stats import binom

        check_is_fitted(self)
        n = len(self.decision_scores_)
        test = self.decision_function(X)
        count = np.count_nonzero(self.decision_scores_[None, :] <= test[:, None], axis=1)
        p = (1 + count) / (2 + n)
        contamination = float(self.contamination)
        confidence = 1 - binom.cdf(n - int(n * contamination), n, p)
        prediction = (test > self.threshold_).astype(int)
        return np.where(prediction == 0, 1 - confidence, confidence)

    def save(self, path):
        """Writes ``mixburn anomaly``'s detector file."""
        check_is_fitted(self)
        self._detector.save(str(path))

    @classmethod
    def load(cls, path, **params):
        """A detector from a ``mixburn anomaly fit`` file (or ``save``'s); the training
        scores are not in the file, so ``decision_scores_`` and ``labels_`` are absent."""
        det = _native.AnomalyDetector.load(str(path))
        p = det.mixture().params()
        est = cls(
            n_components=int(p["n_components"]),
            covariance_type=p["covariance_type"],
            contamination=det.contamination if det.contamination is not None else 0.1,
            **params,
        )
        est._detector = det
        est.n_features_in_ = int(p["n_features"])
        est._set_attributes()
        return est

    def __getstate__(self):
        state = super().__getstate__()
        if "_detector" in state:
            state = dict(state, _detector=state["_detector"].to_json())
        return state

    def __setstate__(self, state):
        if isinstance(state.get("_detector"), str):
            state = dict(state, _detector=_native.AnomalyDetector.from_json(state["_detector"]))
        super().__setstate__(state)


class MahalanobisDetector(BaseEstimator):
    """Deep Mahalanobis OOD detection on network features: class means and one tied
    covariance fitted on in-distribution features and their class labels; ``score`` is the
    OOD score (higher = more out-of-distribution): ``min_c ½ d_c²`` (``method=
    "mahalanobis"``), ``min_c (d_c² − d_0²)`` (``"relative"``) or Mahalanobis on
    L2-normalised features (``"mahalanobis++"``). The precision is the pseudo-inverse (SciPy's
    ``pinvh``, as the reference code), plus ``ridge`` on the diagonal when given.

    ``updatable=True`` keeps the fit's statistics so that :meth:`update` adds rows and
    classes exactly; ``save`` / ``load`` use ``mixburn ood``'s detector files.
    """

    def __init__(
        self,
        method="mahalanobis",
        ridge=0.0,
        pinv_rtol=None,
        updatable=False,
        backend="flex",
        dtype=None,
        max_memory="1GiB",
    ):
        self.method = method
        self.ridge = ridge
        self.pinv_rtol = pinv_rtol
        self.updatable = updatable
        self.backend = backend
        self.dtype = dtype
        self.max_memory = max_memory

    @staticmethod
    def _labels(y):
        y = column_or_1d(_inputs.from_dlpack(y))
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError("labels must be integers 0..C-1")
        return np.ascontiguousarray(y, dtype=np.int64)

    def fit(self, X, y, sample_weight=None):
        """Fits on features ``X`` ``(n_samples, n_features)`` and integer labels ``y``
        (``0..C−1``, every class with at least 2 rows)."""
        X = _inputs.rows(self, X, reset=True, ensure_min_samples=2)
        y = self._labels(y)
        w = _inputs.sample_weights(sample_weight, X)
        self._detector = _native.fit_mahalanobis(
            X,
            y,
            _inputs.compute(self),
            method=str(self.method),
            ridge=float(self.ridge),
            pinv_rtol=None if self.pinv_rtol is None else float(self.pinv_rtol),
            sample_weight=w,
            updatable=bool(self.updatable),
        )
        self._set_attributes()
        return self

    def update(self, X, y, sample_weight=None):
        """Adds rows (and classes) to a detector fitted with ``updatable=True``: the
        result equals a fit on all rows."""
        check_is_fitted(self)
        X = _inputs.rows(self, X, reset=False)
        y = self._labels(y)
        w = _inputs.sample_weights(sample_weight, X)
        self._detector = self._detector.update(X, y, _inputs.compute(self), sample_weight=w)
        self._set_attributes()
        return self

    def _set_attributes(self):
        p = self._detector.params()
        c, d, r = int(p["n_classes"]), int(p["n_features"]), int(p["rank"])
        self.n_classes_ = c
        self.class_counts_ = _floats(p["counts"])
        self.means_ = _floats(p["means"]).reshape(c, d)
        self.location_ = _floats(p["origin"])
        self.precision_factor_ = _floats(p["factor"]).reshape(d, r)
        self.rank_ = r
        self.n_features_in_ = d

    def score(self, X):
        """OOD scores, higher = more out-of-distribution, shape ``(n_samples,)``."""
        check_is_fitted(self)
        X = _inputs.rows(self, X, reset=False)
        buf, dtype = self._detector.score(X, _inputs.compute(self))
        return _floats(buf, dtype)

    decision_function = score

    def confidence(self, X):
        """The Mahalanobis confidence ``−score`` (higher = more in-distribution), the
        reference code's sign."""
        return -self.score(X)

    def sq_distances(self, X):
        """Squared Mahalanobis distances to every class, ``(n_samples, n_classes)``."""
        check_is_fitted(self)
        X = _inputs.rows(self, X, reset=False)
        return _floats(self._detector.sq_distances(X, _inputs.compute(self))).reshape(
            X.shape[0], self.n_classes_
        )

    def predict_class(self, X):
        """The closest class of each row."""
        return np.argmin(self.sq_distances(X), axis=1)

    def save(self, path):
        """Writes ``mixburn ood``'s detector file."""
        check_is_fitted(self)
        self._detector.save(str(path))

    @classmethod
    def load(cls, path, **params):
        """A detector from a ``mixburn ood fit`` file (or ``save``'s), checked as strictly
        as a fit's result."""
        det = _native.MahalanobisDetector.load(str(path))
        p = det.params()
        est = cls(method=p["method"], ridge=p["ridge"], updatable=p["updatable"], **params)
        est._detector = det
        est._set_attributes()
        return est

    def __getstate__(self):
        import os
        import tempfile

        state = super().__getstate__()
        if "_detector" in state:
            fd, path = tempfile.mkstemp(suffix=".safetensors")
            os.close(fd)
            try:
                state["_detector"].save(path)
                with open(path, "rb") as f:
                    state = dict(state, _detector=f.read())
            finally:
                os.unlink(path)
        return state

    def __setstate__(self, state):
        import os
        import tempfile

        if isinstance(state.get("_detector"), bytes):
            fd, path = tempfile.mkstemp(suffix=".safetensors")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(state["_detector"])
                state = dict(state, _detector=_native.MahalanobisDetector.load(path))
            finally:
                os.unlink(path)
        super().__setstate__(state)
