//! `mixburn._native`: the compiled half of the Python package (`python/mixburn`). It holds no
//! numerics of its own: each function converts NumPy arrays to tensors on the chosen backend,
//! calls the core (`mixburn-gmm`), the OOD detector (`mixburn-ood`) or the anomaly detector
//! (`mixburn-anomaly`) with the GIL released, and converts the results back. Fitted models
//! are the Rust types, kept on the host (their parameters in f64); the Python classes
//! (scikit-learn's and pyod's estimator APIs) wrap them.
//!
//! Errors come back as `ValueError` (bad data, settings or model files), `OSError` (a file
//! that cannot be read or written) or `RuntimeError` (a panic inside the library, caught at
//! the boundary so that it never ends the interpreter), with the CLI's one-line messages.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mixburn_anomaly::{AnomalyConfig, AnomalyDetector, Components, NanPolicy};
use mixburn_backend::backend::{Backend, Precision};
use mixburn_backend::host::{to_f64, to_i64};
use mixburn_gmm::burn::tensor::{Device, Shape, Tensor, TensorData};
use mixburn_gmm::{
    BayesianGaussianMixtureConfig, CovarianceType, FileRows, FitData, FittedMixture,
    GaussianMixtureConfig, InitMethod, Mixture, MixtureSettings, OnlineMixture, RowSource,
    StepSchedule, WeightConcentrationPriorType,
};
use mixburn_ood::{DetectorConfig, DetectorParams, Kept, MahalanobisDetector, Method};
use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict};

/// A library error as the Python exception its kind calls for (module docs): `OSError`
/// when an I/O error is anywhere in its chain (or a file is missing), `ValueError` else.
fn py_err<E: std::error::Error + 'static>(e: E) -> PyErr {
    let mut io = false;
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        let missing = matches!(
            s.downcast_ref::<mixburn_data::DataError>(),
            Some(mixburn_data::DataError::NotFound { .. } | mixburn_data::DataError::Io { .. })
        );
        if missing || s.is::<std::io::Error>() {
            io = true;
            break;
        }
        src = s.source();
    }
    if io {
        PyOSError::new_err(e.to_string())
    } else {
        PyValueError::new_err(e.to_string())
    }
}

fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Runs `f` without the GIL, a panic inside it becoming a `RuntimeError`.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> PyResult<T> + Send) -> PyResult<T> {
    py.detach(|| match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "internal error in mixburn (please report it): {what}"
            )))
        }
    })
}

/// Where and in what precision to compute.
fn device(backend: &str, precision: Precision) -> PyResult<Device> {
    let b: Backend = backend.parse().map_err(py_err)?;
    b.device_for(precision).map_err(py_err)
}

fn precision_of(dtype: Option<&str>, default: Precision) -> PyResult<Precision> {
    match dtype {
        None => Ok(default),
        Some(s) => s.parse::<Precision>().map_err(py_err),
    }
}

fn budget(max_memory: &str) -> PyResult<usize> {
    mixburn_gmm::parse_bytes(max_memory).map_err(py_err)
}

/// Where and how a call computes, as the Python classes pass it (`backend`, `dtype` or
/// `None` for the data's or model's, `max_memory`): the options every command's `Compute`
/// group has.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Compute {
    backend: String,
    dtype: Option<String>,
    max_memory: String,
}

impl Compute {
    /// The device, the precision (`dtype`, else `default`) and the memory budget.
    fn on(&self, default: Precision) -> PyResult<(Device, Precision, usize)> {
        let precision = precision_of(self.dtype.as_deref(), default)?;
        Ok((
            device(&self.backend, precision)?,
            precision,
            budget(&self.max_memory)?,
        ))
    }
}

/// A 2-D float array from Python (float32 or float64; any layout), read through the buffer
/// protocol.
#[derive(FromPyObject)]
enum Rows {
    F64(PyBuffer<f64>),
    F32(PyBuffer<f32>),
}

/// Rows copied out of a NumPy array (the one copy a tensor needs), so that the GIL can be
/// released while they are used.
struct HostRows {
    values: HostValues,
    n: usize,
    d: usize,
}

/// The copied values, in the array's own dtype.
enum HostValues {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// `(n, d)` of a 2-D buffer.
fn shape2<T: Element>(b: &PyBuffer<T>) -> PyResult<(usize, usize)> {
    match b.shape() {
        [n, d] => Ok((*n, *d)),
        s => Err(value_err(format!(
            "expected a 2-D array (n_samples, n_features), got {} dimension(s)",
            s.len()
        ))),
    }
}

/// The values of a 1-D buffer of `T`.
fn vector<T: Element + Copy>(py: Python<'_>, b: &PyBuffer<T>) -> PyResult<Vec<T>> {
    if b.dimensions() != 1 {
        return Err(value_err(format!(
            "expected a 1-D array, got {} dimension(s)",
            b.dimensions()
        )));
    }
    b.to_vec(py)
}

impl Rows {
    fn precision(&self) -> Precision {
        match self {
            Rows::F64(_) => Precision::F64,
            Rows::F32(_) => Precision::F32,
        }
    }

    fn host(&self, py: Python<'_>) -> PyResult<HostRows> {
        let ((n, d), values) = match self {
            Rows::F64(b) => (shape2(b)?, HostValues::F64(b.to_vec(py)?)),
            Rows::F32(b) => (shape2(b)?, HostValues::F32(b.to_vec(py)?)),
        };
        Ok(HostRows { values, n, d })
    }
}

impl HostRows {
    /// The rows as a tensor on `device` in `precision` (converted on the host when the
    /// array's dtype differs).
    fn tensor(self, device: &Device, precision: Precision) -> Tensor<2> {
        let shape = Shape::from([self.n, self.d]);
        let data = match (self.values, precision) {
            (HostValues::F32(v), Precision::F32) => TensorData::new(v, shape),
            (HostValues::F32(v), _) => {
                TensorData::new(v.into_iter().map(f64::from).collect::<Vec<f64>>(), shape)
            }
            (HostValues::F64(v), Precision::F32) => {
                TensorData::new(v.into_iter().map(|x| x as f32).collect::<Vec<f32>>(), shape)
            }
            (HostValues::F64(v), _) => TensorData::new(v, shape),
        };
        Tensor::from_data(data, (device, precision.dtype()))
    }
}

/// Values out, as a `bytearray` the Python side views with `numpy.frombuffer` (writable,
/// no further copy).
fn bytes_out<'py, T: bytemuck::Pod>(py: Python<'py>, v: &[T]) -> Bound<'py, PyByteArray> {
    PyByteArray::new(py, bytemuck::cast_slice(v))
}

/// A float vector in the computation's precision: the bytes and their NumPy dtype.
fn floats_out<'py>(
    py: Python<'py>,
    v: Vec<f64>,
    precision: Precision,
) -> (Bound<'py, PyByteArray>, &'static str) {
    match precision {
        Precision::F32 => {
            let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
            (bytes_out(py, &v), "float32")
        }
        _ => (bytes_out(py, &v), "float64"),
    }
}

/// The settings both estimators share, as the Python classes pass them (scikit-learn's
/// names; `seed` already drawn from `random_state`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Settings {
    n_components: usize,
    covariance_type: String,
    tol: f64,
    reg_covar: f64,
    max_iter: usize,
    n_init: usize,
    init_params: String,
    seed: u64,
}

impl Settings {
    fn mixture(&self, max_memory_bytes: usize) -> PyResult<MixtureSettings> {
        Ok(MixtureSettings {
            n_components: self.n_components,
            covariance_type: self
                .covariance_type
                .parse::<CovarianceType>()
                .map_err(py_err)?,
            tol: self.tol,
            reg_covar: self.reg_covar,
            max_iter: self.max_iter,
            n_init: self.n_init,
            init_params: self.init_params.parse::<InitMethod>().map_err(py_err)?,
            seed: Some(self.seed),
            max_memory_bytes,
            ..MixtureSettings::default()
        })
    }
}

/// What a fit reads: an array, or a `.npy` / `.safetensors` file streamed a chunk at a time.
enum Data {
    Rows(HostRows),
    File(mixburn_data::RowFile),
}

/// The training rows of a fit and their precision (`dtype`, else the array's or file's).
fn fit_data(
    py: Python<'_>,
    x: Option<Rows>,
    path: Option<String>,
    tensor: Option<String>,
    compute: &Compute,
) -> PyResult<(Data, Precision, Device, usize)> {
    match (x, path) {
        (Some(x), None) => {
            let (device, p, max) = compute.on(x.precision())?;
            Ok((Data::Rows(x.host(py)?), p, device, max))
        }
        (None, Some(path)) => {
            let file =
                mixburn_data::RowFile::open(Path::new(&path), tensor.as_deref()).map_err(py_err)?;
            let own = match file.elem() {
                mixburn_data::ElemType::F32 => Precision::F32,
                _ => Precision::F64,
            };
            let (device, p, max) = compute.on(own)?;
            Ok((Data::File(file), p, device, max))
        }
        _ => Err(value_err("give the training data as an array or as a path")),
    }
}

/// The `mixburn serve` workers a fit splits its rows over (`ws://…` or `iroh://…`), and the token
/// their servers ask for.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Workers {
    urls: Vec<String>,
    token: Option<String>,
}

/// Calls `f` with the rows of `data` as a [`RowSource`] on `device`; with `workers`, split
/// over them (each shard uploaded once, a chunk at a time under `max` bytes), as
/// `mixburn fit --workers` does.
fn with_source<T>(
    data: Data,
    device: &Device,
    precision: Precision,
    workers: Option<(Workers, usize)>,
    f: impl FnOnce(&dyn RowSource) -> PyResult<T>,
) -> PyResult<T> {
    let shard = |rows: &dyn RowSource| -> PyResult<Option<mixburn_gmm::ShardedRows>> {
        let Some((w, max)) = &workers else {
            return Ok(None);
        };
        let devices = w
            .urls
            .iter()
            .map(|u| {
                Ok((
                    mixburn_gmm::shards::connect(u, w.token.as_deref())?,
                    u.clone(),
                ))
            })
            .collect::<mixburn_gmm::Result<Vec<_>>>()
            .map_err(py_err)?;
        let [_, d] = rows.dims();
        let chunk = mixburn_gmm::budget::scan_rows(d, rows.dtype().size(), *max);
        let sharded = mixburn_gmm::ShardedRows::upload(rows, &devices, None, chunk);
        Ok(Some(sharded.map_err(py_err)?))
    };
    let run = |rows: &dyn RowSource| match shard(rows)? {
        Some(sharded) => f(&sharded),
        None => f(rows),
    };
    match data {
        Data::Rows(h) => run(&h.tensor(device, precision)),
        Data::File(file) => run(&FileRows::new(file, device, precision.dtype()).map_err(py_err)?),
    }
}

fn weights_vec(py: Python<'_>, w: Option<PyBuffer<f64>>) -> PyResult<Option<Vec<f64>>> {
    w.map(|w| vector(py, &w)).transpose()
}

/// What a fit reads, resolved while the GIL is held: the rows (copied, or a file), their
/// sample weights, where to compute, and the workers to split them over.
struct FitRows {
    data: Data,
    sample_weight: Option<Vec<f64>>,
    device: Device,
    precision: Precision,
    max: usize,
    workers: Option<Workers>,
}

impl FitRows {
    #[allow(clippy::too_many_arguments)]
    fn read(
        py: Python<'_>,
        x: Option<Rows>,
        path: Option<String>,
        tensor: Option<String>,
        sample_weight: Option<PyBuffer<f64>>,
        compute: &Compute,
        workers: Option<Workers>,
    ) -> PyResult<Self> {
        let sample_weight = weights_vec(py, sample_weight)?;
        let (data, precision, device, max) = fit_data(py, x, path, tensor, compute)?;
        Ok(Self {
            data,
            sample_weight,
            device,
            precision,
            max,
            workers,
        })
    }

    /// Runs `fit` on the rows (and the budget) without the GIL.
    fn fit(
        self,
        py: Python<'_>,
        fit: impl FnOnce(FitData<'_>, usize) -> mixburn_gmm::Result<FittedMixture> + Send,
    ) -> PyResult<PyMixture> {
        let r = self;
        detached(py, move || {
            let workers = r.workers.map(|w| (w, r.max));
            with_source(r.data, &r.device, r.precision, workers, |rows| {
                let data = FitData::new(rows).with_sample_weight(r.sample_weight.as_deref());
                Ok(PyMixture {
                    inner: fit(data, r.max).map_err(py_err)?,
                })
            })
        })
    }
}

/// A fitted mixture of either estimator (`format` tells which), on the host.
#[pyclass(module = "mixburn._native", name = "Mixture", frozen)]
struct PyMixture {
    inner: FittedMixture,
}

/// Fits a Gaussian mixture by EM (scikit-learn's `GaussianMixture.fit`).
#[pyfunction]
#[pyo3(signature = (settings, compute, x=None, path=None, tensor=None, sample_weight=None,
    weights_init=None, means_init=None, precisions_init=None, previous=None, workers=None))]
#[allow(clippy::too_many_arguments)]
fn fit_gaussian_mixture(
    py: Python<'_>,
    settings: Settings,
    compute: Compute,
    x: Option<Rows>,
    path: Option<String>,
    tensor: Option<String>,
    sample_weight: Option<PyBuffer<f64>>,
    weights_init: Option<PyBuffer<f64>>,
    means_init: Option<PyBuffer<f64>>,
    precisions_init: Option<PyBuffer<f64>>,
    previous: Option<PyRef<'_, PyMixture>>,
    workers: Option<Workers>,
) -> PyResult<PyMixture> {
    let mut config = GaussianMixtureConfig {
        settings: settings.mixture(0)?,
        ..GaussianMixtureConfig::default()
    };
    config.weights_init = weights_vec(py, weights_init)?;
    config.means_init = weights_vec(py, means_init)?;
    config.precisions_init = weights_vec(py, precisions_init)?;
    let previous = match previous.as_deref().map(|m| &m.inner) {
        Some(FittedMixture::Em(m)) => {
            config.warm_start = true;
            Some(m.clone())
        }
        _ => None,
    };
    let rows = FitRows::read(py, x, path, tensor, sample_weight, &compute, workers)?;
    rows.fit(py, move |data, max| {
        config.max_memory_bytes = max;
        Ok(mixburn_gmm::fit_warm(&config, data, previous.as_ref())?.into())
    })
}

/// One step of online (stepwise) EM on the rows `x` from `previous`
/// (`GaussianMixture.partial_fit`): `η = (1 + step_offset)^(−step_exponent)`, the caller
/// counting the steps into `step_offset`. Returns the updated mixture, `η` and the rows' mean
/// log-likelihood under `previous` (before the step).
#[pyfunction]
#[pyo3(signature = (previous, settings, compute, x, step_exponent, step_offset))]
fn online_step(
    py: Python<'_>,
    previous: PyRef<'_, PyMixture>,
    settings: Settings,
    compute: Compute,
    x: Rows,
    step_exponent: f64,
    step_offset: f64,
) -> PyResult<(PyMixture, f64, f64)> {
    let model = match &previous.inner {
        FittedMixture::Em(m) => m.clone(),
        _ => {
            return Err(PyValueError::new_err(
                "partial_fit needs a GaussianMixture fitted by EM",
            ))
        }
    };
    let config = GaussianMixtureConfig {
        settings: settings.mixture(0)?,
        ..GaussianMixtureConfig::default()
    };
    let schedule = StepSchedule {
        kappa: step_exponent,
        t0: step_offset,
    };
    let rows = FitRows::read(py, Some(x), None, None, None, &compute, None)?;
    let mut step = None;
    let fitted = rows.fit(py, |data, max| {
        let config = config.with_max_memory_bytes(max);
        let [n, _] = data.rows.dims();
        let chunk = data.rows.rows(0, n)?.cast(model.precision.dtype());
        let mut online = OnlineMixture::new(model, &config, schedule)?;
        step = Some(online.partial_fit(&chunk)?);
        Ok(online.into_model().into())
    })?;
    let step = step.ok_or_else(|| PyRuntimeError::new_err("the online step did not run"))?;
    Ok((fitted, step.eta, step.mean_log_likelihood))
}

/// The variational priors of `BayesianGaussianMixture` (scikit-learn's names; `None` for
/// scikit-learn's defaults, derived from the data).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Priors {
    weight_concentration_prior_type: String,
    weight_concentration_prior: Option<f64>,
    mean_precision_prior: Option<f64>,
    mean_prior: Option<Vec<f64>>,
    degrees_of_freedom_prior: Option<f64>,
    covariance_prior: Option<Vec<f64>>,
}

/// Fits a variational Bayesian mixture (scikit-learn's `BayesianGaussianMixture.fit`).
#[pyfunction]
#[pyo3(signature = (settings, compute, priors, x=None, path=None, tensor=None,
    sample_weight=None, workers=None))]
#[allow(clippy::too_many_arguments)]
fn fit_bayesian_mixture(
    py: Python<'_>,
    settings: Settings,
    compute: Compute,
    priors: Priors,
    x: Option<Rows>,
    path: Option<String>,
    tensor: Option<String>,
    sample_weight: Option<PyBuffer<f64>>,
    workers: Option<Workers>,
) -> PyResult<PyMixture> {
    let mut config = BayesianGaussianMixtureConfig {
        settings: settings.mixture(0)?,
        weight_concentration_prior_type: priors
            .weight_concentration_prior_type
            .parse::<WeightConcentrationPriorType>()
            .map_err(py_err)?,
        weight_concentration_prior: priors.weight_concentration_prior,
        mean_precision_prior: priors.mean_precision_prior,
        mean_prior: priors.mean_prior,
        degrees_of_freedom_prior: priors.degrees_of_freedom_prior,
        covariance_prior: priors.covariance_prior,
        ..BayesianGaussianMixtureConfig::default()
    };
    let rows = FitRows::read(py, x, path, tensor, sample_weight, &compute, workers)?;
    rows.fit(py, move |data, max| {
        config.max_memory_bytes = max;
        Ok(mixburn_gmm::fit_bayesian(&config, data)?.into())
    })
}

/// What a scoring pass keeps of each chunk.
#[derive(Clone, Copy)]
enum Want {
    LogLikelihood,
    Proba,
    Labels,
}

impl PyMixture {
    fn mixture(&self) -> &dyn Mixture {
        self.inner.as_mixture()
    }

    /// One chunked pass over `x` keeping `want` (on the host, f64 / i64).
    fn scan(
        &self,
        py: Python<'_>,
        x: Rows,
        compute: &Compute,
        want: Want,
    ) -> PyResult<(Vec<f64>, Vec<i64>, Precision)> {
        let (device, precision, max) = compute.on(self.mixture().precision())?;
        let host = x.host(py)?;
        let fitted = &self.inner;
        let out = detached(py, move || {
            let m = fitted.as_mixture();
            let t = host.tensor(&device, precision);
            let (mut f, mut l) = (Vec::new(), Vec::new());
            m.score_chunks(&t, max, &mut |c| {
                match want {
                    Want::LogLikelihood => f.extend(to_f64(c.log_likelihood)?),
                    Want::Proba => f.extend(to_f64(c.proba())?),
                    Want::Labels => l.extend(to_i64(c.labels())?),
                }
                Ok(())
            })
            .map_err(py_err)?;
            Ok((f, l))
        })?;
        Ok((out.0, out.1, precision))
    }
}

#[pymethods]
impl PyMixture {
    /// `log p(x)` per row, shape `(N,)`, in the computation's precision.
    fn score_samples<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
    ) -> PyResult<(Bound<'py, PyByteArray>, &'static str)> {
        let (ll, _, p) = self.scan(py, x, &compute, Want::LogLikelihood)?;
        Ok(floats_out(py, ll, p))
    }

    /// Responsibilities, shape `(N, K)`, float64.
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (r, _, _) = self.scan(py, x, &compute, Want::Proba)?;
        Ok(bytes_out(py, &r))
    }

    /// The most probable component of each row, shape `(N,)`, int64.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (_, l, _) = self.scan(py, x, &compute, Want::Labels)?;
        Ok(bytes_out(py, &l))
    }

    /// `n` samples `(n, D)` (float64) and their components `(n,)`.
    #[pyo3(signature = (n, seed, backend="flex"))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        seed: u64,
        backend: &str,
    ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>)> {
        let device = device(backend, self.mixture().precision())?;
        let fitted = &self.inner;
        let (x, y) = detached(py, move || {
            let (x, y) = fitted
                .as_mixture()
                .sample(n, seed, &device)
                .map_err(py_err)?;
            Ok((to_f64(x).map_err(py_err)?, to_i64(y).map_err(py_err)?))
        })?;
        Ok((bytes_out(py, &x), bytes_out(py, &y)))
    }

    /// The fitted parameters and the fit's summary (flat float64 arrays; the Python class
    /// gives them scikit-learn's shapes).
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let m = self.mixture();
        let p = m.params();
        d.set_item("format", m.format())?;
        d.set_item("covariance_type", m.covariance_type().to_string())?;
        d.set_item("n_components", m.n_components())?;
        d.set_item("n_features", m.n_features())?;
        d.set_item("precision", m.precision().to_string())?;
        d.set_item("weights", bytes_out(py, &p.weights))?;
        d.set_item("means", bytes_out(py, &p.means))?;
        d.set_item("covariances", bytes_out(py, &p.covariances.to_f64()))?;
        d.set_item(
            "precisions_cholesky",
            bytes_out(py, &p.precisions_cholesky.to_f64()),
        )?;
        match &self.inner {
            FittedMixture::Em(g) => {
                d.set_item("converged", g.converged)?;
                d.set_item("n_iter", g.n_iter)?;
                d.set_item("lower_bound", g.lower_bound)?;
                d.set_item("lower_bounds", g.lower_bounds.clone())?;
                d.set_item("n_parameters", g.n_parameters())?;
            }
            FittedMixture::Bayesian(b) => {
                d.set_item("converged", b.converged)?;
                d.set_item("n_iter", b.n_iter)?;
                d.set_item("lower_bound", b.lower_bound)?;
                d.set_item("lower_bounds", b.lower_bounds.clone())?;
                let q = &b.posterior;
                let wc: Vec<Bound<'_, PyByteArray>> = q
                    .weight_concentration
                    .iter()
                    .map(|v| bytes_out(py, v))
                    .collect();
                d.set_item("weight_concentration", wc)?;
                d.set_item("mean_precision", bytes_out(py, &q.mean_precision))?;
                d.set_item("degrees_of_freedom", bytes_out(py, &q.degrees_of_freedom))?;
                let pr = &b.priors;
                d.set_item(
                    "weight_concentration_prior_type",
                    pr.weight_concentration_prior_type.to_string(),
                )?;
                d.set_item("weight_concentration_prior", pr.weight_concentration_prior)?;
                d.set_item("mean_precision_prior", pr.mean_precision_prior)?;
                d.set_item("mean_prior", bytes_out(py, &pr.mean_prior))?;
                d.set_item("degrees_of_freedom_prior", pr.degrees_of_freedom_prior)?;
                d.set_item("covariance_prior", bytes_out(py, &pr.covariance_prior))?;
            }
        }
        Ok(d)
    }

    /// The model as its versioned JSON (what pickling keeps).
    fn to_json(&self) -> PyResult<String> {
        self.mixture().to_json().map_err(py_err)
    }

    /// A model from [`to_json`](Self::to_json)'s text, checked as a loaded file is.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self {
            inner: FittedMixture::from_json(text).map_err(py_err)?,
        })
    }

    /// Writes the model file the CLI reads (safetensors, through the atomic writer).
    fn save(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        let fitted = &self.inner;
        detached(py, move || {
            fitted
                .as_mixture()
                .save_with_metadata(Path::new(path), &[])
                .map_err(py_err)
        })
    }

    /// Reads a model file of either estimator, checked as strictly as a fit's result.
    #[staticmethod]
    fn load(py: Python<'_>, path: &str) -> PyResult<Self> {
        detached(py, move || {
            Ok(Self {
                inner: FittedMixture::load(Path::new(path)).map_err(py_err)?,
            })
        })
    }
}

/// An anomaly detector (`mixburn anomaly fit`'s files): a mixture and a threshold on
/// `−log p(x)`.
#[pyclass(module = "mixburn._native", name = "AnomalyDetector", frozen)]
struct PyAnomaly {
    inner: AnomalyDetector,
}

/// Fits an anomaly detector: EM on the rows, the threshold at the `contamination` quantile
/// of their scores (pyod's `GMM`).
#[pyfunction]
#[pyo3(signature = (settings, compute, x, contamination, weights_init=None, means_init=None,
    precisions_init=None, candidates=None))]
#[allow(clippy::too_many_arguments)]
fn fit_anomaly(
    py: Python<'_>,
    settings: Settings,
    compute: Compute,
    x: Rows,
    contamination: f64,
    weights_init: Option<PyBuffer<f64>>,
    means_init: Option<PyBuffer<f64>>,
    precisions_init: Option<PyBuffer<f64>>,
    candidates: Option<Vec<usize>>,
) -> PyResult<PyAnomaly> {
    let (device, precision, max) = compute.on(x.precision())?;
    let mut mixture = GaussianMixtureConfig {
        settings: settings.mixture(max)?,
        ..GaussianMixtureConfig::default()
    };
    mixture.weights_init = weights_vec(py, weights_init)?;
    mixture.means_init = weights_vec(py, means_init)?;
    mixture.precisions_init = weights_vec(py, precisions_init)?;
    // K fixed, or the candidate with the lowest BIC (`mixburn anomaly fit --components 1..8`).
    let components = match candidates {
        Some(ks) => Components::Auto(ks),
        None => Components::Fixed(settings.n_components),
    };
    let config = AnomalyConfig::new(components)
        .with_mixture(mixture)
        .with_contamination(contamination);
    let host = x.host(py)?;
    detached(py, move || {
        let t = host.tensor(&device, precision);
        let inner = AnomalyDetector::fit(&config, &t).map_err(py_err)?;
        // A single Gaussian keeps its rows' count, so `update` can add rows exactly.
        let inner = match inner.n_components() {
            1 => inner.updatable(t.dims()[0] as f64).map_err(py_err)?,
            _ => inner,
        };
        Ok(PyAnomaly { inner })
    })
}

#[pymethods]
impl PyAnomaly {
    /// Anomaly scores `−log p(x)` (pyod's `decision_function`); with `nan_policy="inf"` a
    /// row holding NaN or an infinity scores `+inf` instead of being refused.
    #[pyo3(signature = (x, compute, nan_policy="error"))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
        nan_policy: &str,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (device, precision, max) = compute.on(self.inner.precision())?;
        let policy: NanPolicy = nan_policy.parse().map_err(py_err)?;
        let host = x.host(py)?;
        let det = &self.inner;
        let s = detached(py, move || {
            let t = host.tensor(&device, precision);
            let s = det.score_within(&t, policy, max).map_err(py_err)?;
            to_f64(s).map_err(py_err)
        })?;
        Ok(bytes_out(py, &s))
    }

    /// The detector fitted on its rows and the new rows `x` (a single Gaussian: exactly, without
    /// the first rows; `mixburn_anomaly::update`), the threshold set again on `x`'s scores.
    fn update(&self, py: Python<'_>, x: Rows, compute: Compute) -> PyResult<PyAnomaly> {
        let (device, precision, _) = compute.on(self.inner.precision())?;
        let host = x.host(py)?;
        let det = &self.inner;
        detached(py, move || {
            let t = host.tensor(&device, precision);
            let inner = det.update(&t).map_err(py_err)?;
            Ok(PyAnomaly { inner })
        })
    }

    /// The threshold on the score above which a row is an anomaly.
    #[getter]
    fn threshold(&self) -> f64 {
        self.inner.threshold()
    }

    /// The contamination the threshold was set by (`None` for another rule).
    #[getter]
    fn contamination(&self) -> Option<f64> {
        self.inner.contamination()
    }

    /// The detector's mixture.
    fn mixture(&self) -> PyMixture {
        PyMixture {
            inner: self.inner.mixture().clone(),
        }
    }

    fn to_json(&self) -> PyResult<String> {
        self.inner.to_json().map_err(py_err)
    }

    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self {
            inner: AnomalyDetector::from_json(text).map_err(value_err)?,
        })
    }

    /// Writes the detector file `mixburn anomaly` reads.
    fn save(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        let det = &self.inner;
        detached(py, move || det.save(Path::new(path)).map_err(py_err))
    }

    /// Reads a detector file (`mixburn anomaly fit`'s), checked on load.
    #[staticmethod]
    fn load(py: Python<'_>, path: &str) -> PyResult<Self> {
        detached(py, move || {
            Ok(Self {
                inner: AnomalyDetector::load(Path::new(path)).map_err(py_err)?,
            })
        })
    }
}

/// A deep-Mahalanobis OOD detector (`mixburn ood fit`'s files), kept on the host: its
/// parameters, the precision it was fitted in, and an updatable detector's statistics.
#[pyclass(module = "mixburn._native", name = "MahalanobisDetector", frozen)]
struct PyOod {
    params: DetectorParams,
    precision: Precision,
    kept: Option<Kept>,
}

impl PyOod {
    fn of(d: &MahalanobisDetector) -> Self {
        Self {
            params: d.params().clone(),
            precision: d.precision(),
            kept: d.kept().cloned(),
        }
    }

    /// One scoring pass `f` of the detector over `x` without the GIL: its values (host,
    /// f64) and the precision it ran in.
    fn pass<const D: usize>(
        &self,
        py: Python<'_>,
        x: Rows,
        compute: &Compute,
        f: impl FnOnce(&MahalanobisDetector, &Tensor<2>) -> mixburn_ood::Result<Tensor<D>> + Send,
    ) -> PyResult<(Vec<f64>, Precision)> {
        let (device, precision, max) = compute.on(self.precision)?;
        let host = x.host(py)?;
        let v = detached(py, move || {
            let det = self.detector(&device, precision, max)?;
            let t = host.tensor(&device, precision);
            to_f64(f(&det, &t).map_err(py_err)?).map_err(py_err)
        })?;
        Ok((v, precision))
    }

    /// The detector on `device`, scoring in chunks under `max_memory`.
    fn detector(
        &self,
        device: &Device,
        precision: Precision,
        max: usize,
    ) -> PyResult<MahalanobisDetector> {
        let rows = mixburn_ood::detector::score_chunk_rows(
            None,
            max,
            &self.params,
            mixburn_gmm::budget::MAX_CHUNK_ROWS,
            precision,
        )
        .map_err(py_err)?;
        let d = MahalanobisDetector::from_params(self.params.clone(), precision, rows, device)
            .map_err(py_err)?;
        Ok(d)
    }
}

/// Fits a detector on features and integer class labels `0..C−1` (Lee et al. 2018; the
/// relative and Mahalanobis++ variants by `method`).
#[pyfunction]
#[pyo3(signature = (x, labels, compute, method="mahalanobis", ridge=0.0, pinv_rtol=None,
    sample_weight=None, updatable=false))]
#[allow(clippy::too_many_arguments)]
fn fit_mahalanobis(
    py: Python<'_>,
    x: Rows,
    labels: PyBuffer<i64>,
    compute: Compute,
    method: &str,
    ridge: f64,
    pinv_rtol: Option<f64>,
    sample_weight: Option<PyBuffer<f64>>,
    updatable: bool,
) -> PyResult<PyOod> {
    let (device, precision, max) = compute.on(x.precision())?;
    let method: Method = method.parse().map_err(py_err)?;
    let config = DetectorConfig::new()
        .with_method(method)
        .with_ridge(ridge)
        .with_pinv_rtol(pinv_rtol)
        .with_max_memory_bytes(max)
        .with_updatable(updatable);
    let labels: Vec<i64> = vector(py, &labels)?;
    let w = weights_vec(py, sample_weight)?;
    let host = x.host(py)?;
    detached(py, move || {
        let t = host.tensor(&device, precision);
        let d =
            MahalanobisDetector::fit_source(&config, &t, &labels, w.as_deref()).map_err(py_err)?;
        Ok(PyOod::of(&d))
    })
}

#[pymethods]
impl PyOod {
    /// OOD scores, higher = more out-of-distribution (`min_c ½ d_c²`, or the variant's).
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
    ) -> PyResult<(Bound<'py, PyByteArray>, &'static str)> {
        let (s, precision) = self.pass(py, x, &compute, |d, t| d.score(t))?;
        Ok(floats_out(py, s, precision))
    }

    /// Squared Mahalanobis distances to every class, `(N, C)`, float64.
    fn sq_distances<'py>(
        &self,
        py: Python<'py>,
        x: Rows,
        compute: Compute,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (s, _) = self.pass(py, x, &compute, |d, t| d.sq_distances(t))?;
        Ok(bytes_out(py, &s))
    }

    /// Adds rows (and new classes) to an updatable detector, exactly as a fit on all rows.
    #[pyo3(signature = (x, labels, compute, sample_weight=None))]
    fn update(
        &self,
        py: Python<'_>,
        x: Rows,
        labels: PyBuffer<i64>,
        compute: Compute,
        sample_weight: Option<PyBuffer<f64>>,
    ) -> PyResult<Self> {
        // An update adds to statistics kept in the detector's own precision.
        let (device, precision, max) = compute.on(self.precision)?;
        if precision != self.precision {
            return Err(value_err(format!(
                "an update runs in the detector's precision ({}), not {precision}",
                self.precision
            )));
        }
        let labels: Vec<i64> = vector(py, &labels)?;
        let w = weights_vec(py, sample_weight)?;
        let host = x.host(py)?;
        detached(py, move || {
            let det = MahalanobisDetector::from_saved(
                self.params.clone(),
                precision,
                self.kept.clone(),
                &device,
            )
            .map_err(py_err)?;
            let t = host.tensor(&device, precision);
            let next = det.update(&t, &labels, w.as_deref(), max).map_err(py_err)?;
            Ok(PyOod::of(&next))
        })
    }

    /// The parameters (flat float64 arrays) and settings.
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let p = &self.params;
        d.set_item("method", p.method.to_string())?;
        d.set_item("n_features", p.n_features)?;
        d.set_item("n_classes", p.counts.len())?;
        d.set_item("rank", p.rank)?;
        d.set_item("ridge", p.ridge)?;
        d.set_item("precision", self.precision.to_string())?;
        d.set_item("counts", bytes_out(py, &p.counts))?;
        d.set_item("means", bytes_out(py, &p.means))?;
        d.set_item("origin", bytes_out(py, &p.origin))?;
        d.set_item("factor", bytes_out(py, &p.factor))?;
        d.set_item("updatable", self.kept.is_some())?;
        Ok(d)
    }

    /// Writes the detector file `mixburn ood score` reads.
    fn save(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        detached(py, move || {
            let det = MahalanobisDetector::from_saved(
                self.params.clone(),
                self.precision,
                self.kept.clone(),
                &device("flex", self.precision)?,
            )
            .map_err(py_err)?;
            det.save(Path::new(path)).map_err(py_err)
        })
    }

    /// Reads a detector file (`mixburn ood fit`'s), checked as strictly as a fit's result.
    #[staticmethod]
    fn load(py: Python<'_>, path: &str) -> PyResult<Self> {
        detached(py, move || {
            let (params, precision, kept) =
                MahalanobisDetector::read_kept(Path::new(path)).map_err(py_err)?;
            Ok(Self {
                params,
                precision,
                kept,
            })
        })
    }
}

/// Whether this build can split fits over `mixburn serve` workers (the `remote` feature).
#[pyfunction]
fn remote_workers() -> bool {
    cfg!(feature = "remote")
}

/// The backends this build was compiled with.
#[pyfunction]
fn backends() -> Vec<String> {
    Backend::compiled().iter().map(|b| b.to_string()).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The command line's allocator policy (freed chunk buffers kept rather than unmapped and
    // faulted in again every chunk), unless MIXBURN_KEEP_FREED_BUFFERS=0: it is process-wide,
    // so a host application can decline it.
    if std::env::var("MIXBURN_KEEP_FREED_BUFFERS").as_deref() != Ok("0") {
        mixburn_backend::allocator::keep_freed_buffers();
    }
    m.add_function(wrap_pyfunction!(fit_gaussian_mixture, m)?)?;
    m.add_function(wrap_pyfunction!(fit_bayesian_mixture, m)?)?;
    m.add_function(wrap_pyfunction!(online_step, m)?)?;
    m.add_function(wrap_pyfunction!(fit_anomaly, m)?)?;
    m.add_function(wrap_pyfunction!(fit_mahalanobis, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_function(wrap_pyfunction!(remote_workers, m)?)?;
    m.add_class::<PyMixture>()?;
    m.add_class::<PyAnomaly>()?;
    m.add_class::<PyOod>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
