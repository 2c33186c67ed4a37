"""scikit-learn's ``GaussianMixture`` and ``BayesianGaussianMixture`` on mixburn's core.

One base class holds the fitted API (scikit-learn's ``BaseMixture``): ``fit`` validates the
input and the parameters once, calls the compiled fit, and copies the fitted parameters into
scikit-learn's trailing-underscore attributes with scikit-learn's shapes; every scoring
method is one chunked pass of the core's scorer. The two estimators differ only in their
constructor parameters, the native fit they call and the attributes they expose.
"""

import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from . import _inputs, _native

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


def covariance_shape(covariance_type, k, d):
    """scikit-learn's shape of ``covariances_`` / ``precisions_cholesky_``."""
    return {
        "full": (k, d, d),
        "tied": (d, d),
        "diag": (k, d),
        "spherical": (k,),
    }[covariance_type]


def floats(buf, dtype="float64"):
    """A writable NumPy view of values the compiled module returned as a ``bytearray``."""
    return np.frombuffer(buf, dtype=dtype)


def model_dtype(p):
    """The NumPy dtype of a model's precision (its ``params()["precision"]``)."""
    return np.float32 if p["precision"] == "f32" else np.float64


def mixture_attributes(p):
    """scikit-learn's fitted attributes of a mixture (names, shapes, and float32 for a float32
    fit, as scikit-learn 1.6+ keeps them) from the compiled model's ``params()``."""
    k, d = int(p["n_components"]), int(p["n_features"])
    covariance_type = p["covariance_type"]
    shape = covariance_shape(covariance_type, k, d)
    dtype = model_dtype(p)

    def array(name, shape):
        return floats(p[name]).astype(dtype, copy=False).reshape(shape)

    chol = array("precisions_cholesky", shape)
    return {
        "weights_": array("weights", (k,)),
        "means_": array("means", (k, d)),
        "covariances_": array("covariances", shape),
        "precisions_cholesky_": chol,
        "precisions_": precisions(covariance_type, chol),
        "converged_": bool(p["converged"]),
        "n_iter_": int(p["n_iter"]),
        "lower_bound_": float(p["lower_bound"]),
    }


def precisions(covariance_type, precisions_cholesky):
    """``precisions_`` from ``precisions_cholesky_`` (scikit-learn's formula per type)."""
    p = precisions_cholesky
    if covariance_type == "full":
        return np.matmul(p, p.transpose(0, 2, 1))
    if covariance_type == "tied":
        return p @ p.T
    return p**2


class _MixtureBase(DensityMixin, BaseEstimator):
    """The fitted API both estimators share (module docs). Subclasses give ``_fit_native``
    and ``_set_specific``."""

    def _check_parameters(self):
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"Invalid value for 'covariance_type': {self.covariance_type!r}; "
                f"use one of {COVARIANCE_TYPES}"
            )
        if self.init_params not in INIT_PARAMS:
            raise ValueError(
                f"Invalid value for 'init_params': {self.init_params!r}; "
                f"use one of {INIT_PARAMS}"
            )
        for name in ("n_components", "max_iter", "n_init"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Invalid value for '{name}': {v!r}; it must be an integer >= 1")
        for name in ("tol", "reg_covar"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v >= 0:
                raise ValueError(f"Invalid value for '{name}': {v!r}; it must be a number >= 0")

    def _settings(self):
        return {
            "n_components": int(self.n_components),
            "covariance_type": self.covariance_type,
            "tol": float(self.tol),
            "reg_covar": float(self.reg_covar),
            "max_iter": int(self.max_iter),
            "n_init": int(self.n_init),
            "init_params": _inputs.choice(self.init_params),
            "seed": _inputs.seed(self.random_state),
        }

    def _workers(self):
        """``workers`` as the compiled fit takes them (``None``: fit on this process)."""
        if self.workers is None:
            return None
        urls = [self.workers] if isinstance(self.workers, str) else list(self.workers)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise ValueError(
                "workers must be a list of `mixburn serve` addresses like 'ws://host:port' or 'iroh://<id>@host:port'"
            )
        token = self.worker_token
        if isinstance(token, os.PathLike):
            # The file `mixburn serve` names as its `token_file`.
            with open(token, encoding="utf-8") as f:
                token = f.read().rstrip("\r\n")
        token = None if token is None else str(token)
        return {"urls": urls, "token": token}

    def fit(self, X, y=None, sample_weight=None):
        """Estimates the parameters (EM, or variational inference) from ``X``: an array
        ``(n_samples, n_features)``, a tensor with ``__dlpack__``, or the path of a ``.npy``
        / ``.safetensors`` file, which is read a chunk at a time (never held whole).
        ``sample_weight`` (optional, non-negative) weighs each row as if repeated."""
        self._check_parameters()
        if _inputs.is_path(X):
            if sample_weight is not None:
                sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
            model = self._fit_native(
                x=None, path=str(X), sample_weight=sample_weight
            )
            self.n_features_in_ = int(model.params()["n_features"])
        else:
            X = _inputs.rows(self, X, reset=True, ensure_min_samples=2)
            if X.shape[0] < self.n_components:
                raise ValueError(
                    "Expected n_samples >= n_components but got "
                    f"n_components = {self.n_components}, n_samples = {X.shape[0]}"
                )
            w = _inputs.sample_weights(sample_weight, X)
            model = self._fit_native(x=X, path=None, sample_weight=w)
        self._model = model
        self._set_attributes(model.params())
        if not self.converged_:
            warnings.warn(
                "Best performing initialization did not converge. "
                "Try different init parameters, or increase max_iter, "
                "tol, or check for degenerate data.",
                ConvergenceWarning,
            )
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fits and returns each row's most probable component."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    def _set_attributes(self, p):
        for name, value in mixture_attributes(p).items():
            setattr(self, name, value)
        self.lower_bounds_ = list(p["lower_bounds"])
        self._set_specific(p, int(p["n_components"]), int(p["n_features"]))

    def _set_specific(self, p, k, d):
        pass

    def _scoring_input(self, X):
        check_is_fitted(self)
        return _inputs.rows(self, X, reset=False)

    def score_samples(self, X):
        """``log p(x)`` of each row, shape ``(n_samples,)``."""
        X = self._scoring_input(X)
        buf, dtype = self._model.score_samples(X, _inputs.compute(self))
        return floats(buf, dtype)

    def score(self, X, y=None):
        """The mean ``log p(x)`` over the rows."""
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def predict(self, X):
        """The most probable component of each row, shape ``(n_samples,)``."""
        X = self._scoring_input(X)
        return floats(self._model.predict(X, _inputs.compute(self)), "int64")

    def predict_proba(self, X):
        """Each component's responsibility for each row, shape ``(n_samples, n_components)``."""
        X = self._scoring_input(X)
        r = floats(self._model.predict_proba(X, _inputs.compute(self)))
        return r.astype(self.means_.dtype, copy=False).reshape(X.shape[0], self.weights_.shape[0])

    def sample(self, n_samples=1):
        """``n_samples`` draws ``(n_samples, n_features)`` and their components."""
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        x, y = self._model.sample(int(n_samples), _inputs.seed(self.random_state), self.backend)
        return floats(x).reshape(int(n_samples), self.means_.shape[1]), floats(y, "int64")

    def _n_parameters(self):
        k, d = self.means_.shape
        cov = {
            "full": k * d * (d + 1) / 2.0,
            "diag": k * d,
            "tied": d * (d + 1) / 2.0,
            "spherical": k,
        }[self.covariance_type]
        return int(cov + k * d + k - 1)

    def _total_log_likelihood(self, X):
        """``(Σ log p(x), n_samples)``: ``X`` checked and scored once."""
        ll = self.score_samples(X)
        return float(np.sum(ll, dtype=np.float64)), ll.shape[0]

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        total, n = self._total_log_likelihood(X)
        return -2 * total + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        total, _ = self._total_log_likelihood(X)
        return -2 * total + 2 * self._n_parameters()

    def save(self, path):
        """Writes the model file the ``mixburn`` command line reads (safetensors)."""
        check_is_fitted(self)
        self._model.save(str(path))

    @classmethod
    def load(cls, path, **params):
        """An estimator fitted as the model file at ``path`` says (written by ``save`` or
        by ``mixburn fit`` / ``fit-bayesian``), checked as strictly as a fit's result."""
        model = _native.Mixture.load(str(path))
        p = model.params()
        if p["format"] != cls._format:
            raise ValueError(
                f"{path}: a {p['format']} model, not a {cls.__name__} ({cls._format})"
            )
        est = cls(
            n_components=int(p["n_components"]),
            covariance_type=p["covariance_type"],
            **params,
        )
        est._model = model
        est.n_features_in_ = int(p["n_features"])
        est._set_attributes(p)
        return est

    def __getstate__(self):
        state = super().__getstate__()
        if "_model" in state:
            state = dict(state, _model=state["_model"].to_json())
        return state

    def __setstate__(self, state):
        if isinstance(state.get("_model"), str):
            state = dict(state, _model=_native.Mixture.from_json(state["_model"]))
        super().__setstate__(state)


class GaussianMixture(_MixtureBase):
    """A Gaussian mixture fitted by EM: scikit-learn's ``GaussianMixture`` (the same
    parameters, defaults, attributes and numerics) on mixburn's core.

    Beyond scikit-learn: ``sample_weight`` in ``fit``; ``backend`` (``"flex"``,
    ``"ndarray"``, ``"wgpu"``, as compiled), ``dtype`` (``"float32"`` / ``"float64"``; by
    default the data's), ``max_memory`` (the budget of every pass's intermediates); ``fit``
    on a ``.npy`` / ``.safetensors`` path, streamed; ``save`` / ``load`` in the command
    line's model files; ``partial_fit`` (online EM, with ``step_exponent`` and
    ``step_offset``).
    """

    _format = "mixburn-gmm"

    def fit(self, X, y=None, sample_weight=None):
        super().fit(X, y, sample_weight=sample_weight)
        self.n_steps_ = 0
        return self

    fit.__doc__ = _MixtureBase.fit.__doc__

    def __init__(
        self,
        n_components=1,
        *,
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
        verbose=0,
        verbose_interval=10,
        backend="flex",
        dtype=None,
        max_memory="1GiB",
        workers=None,
        worker_token=None,
        step_exponent=0.6,
        step_offset=2.0,
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
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.dtype = dtype
        self.max_memory = max_memory
        self.workers = workers
        self.worker_token = worker_token
        self.step_exponent = step_exponent
        self.step_offset = step_offset

    def partial_fit(self, X, y=None):
        """One step of online (stepwise) EM on the rows ``X`` (Cappé & Moulines 2009): the
        model's statistics move towards the rows' by ``η_t = (t + step_offset)^(−step_exponent)``,
        ``step_exponent`` in (0.5, 1]. The first call, on an unfitted estimator, fits ``X`` to
        start the model; ``n_steps_`` counts the steps since. For data that never ends, or
        drifts: call it once per chunk."""
        if not hasattr(self, "_model"):
            return self.fit(X)
        X = _inputs.rows(self, X, reset=False)
        if X.shape[0] < self.weights_.shape[0]:
            raise ValueError(
                f"partial_fit needs at least n_components = {self.weights_.shape[0]} rows, "
                f"got {X.shape[0]}"
            )
        steps = getattr(self, "n_steps_", 0)
        model, _eta, _ll = _native.online_step(
            self._model,
            self._settings(),
            _inputs.compute(self),
            X,
            float(self.step_exponent),
            float(self.step_offset) + steps,
        )
        self._model = model
        self._set_attributes(model.params())
        self.n_steps_ = steps + 1
        return self

    def _fit_native(self, x, path, sample_weight):
        previous = None
        if self.warm_start and hasattr(self, "_model") and hasattr(self, "converged_"):
            previous = self._model
        return _native.fit_gaussian_mixture(
            self._settings(),
            _inputs.compute(self),
            x=x,
            path=path,
            sample_weight=sample_weight,
            weights_init=_inputs.flat_or_none(self.weights_init),
            means_init=_inputs.flat_or_none(self.means_init),
            precisions_init=_inputs.flat_or_none(self.precisions_init),
            previous=previous,
            workers=self._workers(),
        )


class BayesianGaussianMixture(_MixtureBase):
    """A variational Bayesian Gaussian mixture (Dirichlet-process or Dirichlet weight
    prior): scikit-learn's ``BayesianGaussianMixture`` on mixburn's core, with the same
    extensions as :class:`GaussianMixture` (``warm_start`` excepted)."""

    _format = "mixburn-bgm"

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        backend="flex",
        dtype=None,
        max_memory="1GiB",
        workers=None,
        worker_token=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.dtype = dtype
        self.max_memory = max_memory
        self.workers = workers
        self.worker_token = worker_token

    def _fit_native(self, x, path, sample_weight):
        if self.warm_start:
            raise ValueError(
                "warm_start=True is not supported by BayesianGaussianMixture here (the "
                "variational fit always starts from init_params); use GaussianMixture's"
            )
        t = self.weight_concentration_prior_type
        if t not in ("dirichlet_process", "dirichlet_distribution"):
            raise ValueError(
                f"Invalid value for 'weight_concentration_prior_type': {t!r}; use "
                "'dirichlet_process' or 'dirichlet_distribution'"
            )
        as_list = lambda a: None if a is None else [float(v) for v in np.ravel(a)]  # noqa: E731
        priors = {
            "weight_concentration_prior_type": _inputs.choice(t),
            "weight_concentration_prior": _float_or_none(self.weight_concentration_prior),
            "mean_precision_prior": _float_or_none(self.mean_precision_prior),
            "mean_prior": as_list(self.mean_prior),
            "degrees_of_freedom_prior": _float_or_none(self.degrees_of_freedom_prior),
            "covariance_prior": as_list(self.covariance_prior),
        }
        return _native.fit_bayesian_mixture(
            self._settings(),
            _inputs.compute(self),
            priors,
            x=x,
            path=path,
            sample_weight=sample_weight,
            workers=self._workers(),
        )

    def _set_specific(self, p, k, d):
        wc = [floats(a) for a in p["weight_concentration"]]
        self.weight_concentration_ = tuple(wc) if len(wc) == 2 else wc[0]
        self.weight_concentration_prior_ = float(p["weight_concentration_prior"])
        self.mean_precision_ = floats(p["mean_precision"])
        self.mean_precision_prior_ = float(p["mean_precision_prior"])
        self.mean_prior_ = floats(p["mean_prior"])
        self.degrees_of_freedom_ = floats(p["degrees_of_freedom"])
        self.degrees_of_freedom_prior_ = float(p["degrees_of_freedom_prior"])
        cp = floats(p["covariance_prior"])
        self.covariance_prior_ = {
            "full": lambda: cp.reshape(d, d),
            "tied": lambda: cp.reshape(d, d),
            "diag": lambda: cp.reshape(d),
            "spherical": lambda: float(cp.ravel()[0]),
        }[self.covariance_type]()


def _float_or_none(v):
    return None if v is None else float(v)

