//! The fitted mixture: parameters, convergence record, scoring, sampling, information
//! criteria, and a versioned save format that reloads bit-identically.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::GaussianMixtureConfig;
use crate::covariance::{CovTensor, CovarianceType};
use crate::em::validate_data;
use crate::error::{GmmError, Result};
use crate::estep::{log_prob, ChunkedData};
use crate::fitted::Mixture;
use crate::form::{self, EstepForm, PassShape};
use crate::model_file::{
    at_path, from_envelope_json, load_with, to_envelope_json, BinaryModel, ModelContent,
    ModelWriter,
};
use crate::params::{Layout, Params};
use crate::pass::Pass;
use crate::source::{check_finite, PerDevice, RowSource};
use crate::validate;
use crate::values::Values;
use mixburn_backend::backend::Precision;
use mixburn_backend::host::{tensor_from_f64, to_f64};

/// Name written into saved models.
pub const MODEL_FORMAT: &str = "mixburn-gmm";
/// Version of the files [`GaussianMixture::save`] writes (safetensors; version-1 JSON files
/// still load).
pub const MODEL_FORMAT_VERSION: u32 = crate::model_file::BINARY_VERSION;
/// What a `mixburn-gmm` file is, for error messages.
const EXPECTED: &str = "a Gaussian mixture written by `mixburn fit` or GaussianMixture::save";

/// The scalar fields of a saved mixture (the `config` metadata of its safetensors file).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedConfig {
    covariance_type: CovarianceType,
    n_components: usize,
    n_features: usize,
    reg_covar: f64,
    precision: Precision,
    converged: bool,
    n_iter: usize,
}

/// A fitted Gaussian mixture. Parameters are kept on the host in f64 (scikit-learn's shapes,
/// row-major); scoring uploads them to the device of the data it scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianMixture {
    /// Covariance type.
    pub covariance_type: CovarianceType,
    /// Components K.
    pub n_components: usize,
    /// Features D.
    pub n_features: usize,
    /// `reg_covar` used in the fit.
    pub reg_covar: f64,
    /// Precision the model was fitted in.
    pub precision: Precision,
    /// Weights, means, covariances and precision Cholesky factors.
    #[serde(flatten)]
    pub params: Params,
    /// Whether the lower bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
    /// EM iterations run by the best restart.
    pub n_iter: usize,
    /// Mean log-likelihood per sample at the last E-step of the best restart.
    pub lower_bound: f64,
    /// The lower bound at every iteration of the best restart.
    pub lower_bounds: Vec<f64>,
}

impl GaussianMixture {
    /// A model of `template`'s covariance type, components, features and `reg_covar`, in
    /// `precision`, from its weights, means and covariances (flat f64 in the type's shape,
    /// `reg_covar` already added), its precision factors computed on `device` by the core's
    /// Cholesky (an error names a component that is not positive definite). Not converged, no
    /// iterations or lower bounds recorded: the caller sets them. Online EM and the
    /// missing-value M-step build their models with it.
    pub(crate) fn from_covariances(
        template: &GaussianMixture,
        precision: Precision,
        weights: Vec<f64>,
        means: Vec<f64>,
        covariances: Vec<f64>,
        device: &Device,
    ) -> Result<Self> {
        let (cov, k, d) = (
            template.covariance_type,
            template.n_components,
            template.n_features,
        );
        let covs = CovTensor::from_flat(cov, &covariances, 1, k, d, device, precision.dtype());
        let prec = crate::covariance::precision_cholesky(cov, &covs, k, 1)?;
        let covariances = match precision {
            Precision::F32 => Values::F32(covariances.iter().map(|&v| v as f32).collect()),
            Precision::F64 => Values::F64(covariances),
        };
        Ok(Self {
            covariance_type: cov,
            n_components: k,
            n_features: d,
            reg_covar: template.reg_covar,
            precision,
            params: Params {
                weights,
                means,
                covariances,
                precisions_cholesky: prec.to_values()?,
            },
            converged: false,
            n_iter: 0,
            lower_bound: f64::NAN,
            lower_bounds: vec![],
        })
    }

    /// Free parameters: covariance parameters + `K·D` means + `K − 1` weights.
    pub fn n_parameters(&self) -> usize {
        let (k, d) = (self.n_components, self.n_features);
        self.covariance_type.n_cov_parameters(k, d) + k * d + k - 1
    }

    pub(crate) fn check_compatible(&self, config: &GaussianMixtureConfig, d: usize) -> Result<()> {
        if self.n_features != d {
            return Err(GmmError::DimensionMismatch {
                what: "warm start: previous model vs data".into(),
                expected: self.n_features,
                got: d,
            });
        }
        if self.n_components != config.n_components
            || self.covariance_type != config.covariance_type
        {
            return Err(GmmError::invalid_setting(
                "warm_start",
                "the previous model has another n_components or covariance_type",
            ));
        }
        Ok(())
    }

    /// Bayesian information criterion `−2 log L + p ln N` on `x`.
    pub fn bic(&self, x: &Tensor<2>) -> Result<f64> {
        let n = x.dims()[0] as f64;
        Ok(crate::select::bic(
            self.score(x)? * n,
            self.n_parameters(),
            n,
        ))
    }

    /// Akaike information criterion `−2 log L + 2p` on `x`.
    pub fn aic(&self, x: &Tensor<2>) -> Result<f64> {
        let n = x.dims()[0] as f64;
        Ok(crate::select::aic(self.score(x)? * n, self.n_parameters()))
    }

    /// Checks the parameters as strictly as a fit's result ([`validate::check_mixture`]:
    /// sizes, weights, means, covariances and precision factors), plus `reg_covar ≥ 0` and
    /// finite lower bounds. Run at the end of every fit and on every load.
    pub fn validate(&self) -> Result<()> {
        let (k, d) = (self.n_components, self.n_features);
        validate::check_mixture(self.covariance_type, k, d, &self.params, self.precision)?;
        if !(self.reg_covar >= 0.0 && self.reg_covar.is_finite()) {
            return Err(GmmError::ModelFormat(format!(
                "reg_covar is {}, expected a finite value >= 0",
                self.reg_covar
            )));
        }
        validate::check_finite_values("lower_bounds", &self.lower_bounds)?;
        if self.lower_bound.is_nan() {
            return Err(GmmError::ModelFormat("lower_bound is NaN".into()));
        }
        Ok(())
    }

    /// Parses a version-1 JSON model, checking format, version and every parameter
    /// ([`validate`](Self::validate)).
    pub fn from_json(text: &str) -> Result<Self> {
        let m: Self = from_envelope_json(text, MODEL_FORMAT, EXPECTED)?;
        m.validate()?;
        Ok(m)
    }

    /// The model of a version-2 (safetensors) file: sizes checked before the arrays' shapes
    /// are compared with them, then [`validate`](Self::validate).
    fn from_binary(mut b: BinaryModel) -> Result<Self> {
        let c: SavedConfig = b.config()?;
        let (k, d, cov) = (c.n_components, c.n_features, c.covariance_type);
        let (params, lower_bound, lower_bounds) = b.mixture(cov, k, d)?;
        b.finish()?;
        let m = Self {
            covariance_type: cov,
            n_components: k,
            n_features: d,
            reg_covar: c.reg_covar,
            precision: c.precision,
            params,
            converged: c.converged,
            n_iter: c.n_iter,
            lower_bound,
            lower_bounds,
        };
        m.validate()?;
        Ok(m)
    }

    /// The model in a file, either version: its parsed content after the format checks.
    pub fn from_content(content: ModelContent) -> Result<Self> {
        content.decode(MODEL_FORMAT, EXPECTED, Self::from_json, Self::from_binary)
    }

    /// Reads a model saved by [`save`](Self::save), or a version-1 JSON file (told apart by
    /// content), and validates it as strictly as a fit's result; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        load_with(path, Self::from_content)
    }
}

/// The EM mixture's fitted API: everything else (scores, predictions, chunked scoring,
/// samples, `save`) is [`Mixture`]'s, through the one scorer.
impl Mixture for GaussianMixture {
    fn format(&self) -> &'static str {
        MODEL_FORMAT
    }
    fn covariance_type(&self) -> CovarianceType {
        self.covariance_type
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn n_components(&self) -> usize {
        self.n_components
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn params(&self) -> &Params {
        &self.params
    }
    /// `ln π_k`, floored as the E-step's operand floors it (a zero weight stays finite).
    fn log_weights(&self) -> Vec<f64> {
        crate::params::log_weights(&[&self.params])
    }
    /// Version-1 JSON (floats round-trip exactly); [`save`](Mixture::save) writes the
    /// binary format.
    fn to_json(&self) -> Result<String> {
        to_envelope_json(MODEL_FORMAT, self)
    }
    /// Safetensors (arrays `weights`, `means`, `covariances`, `precisions_cholesky` in
    /// scikit-learn's shapes, `lower_bound`, `lower_bounds`; the scalar fields as the
    /// `config` metadata; see [`crate::model_file`]), atomically.
    fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
        let (k, d, cov) = (self.n_components, self.n_features, self.covariance_type);
        ModelWriter::new(MODEL_FORMAT, self.precision)
            .metadata(extra)
            .mixture(cov, &self.params, self.lower_bound, &self.lower_bounds)
            .save(
                path,
                &SavedConfig {
                    covariance_type: cov,
                    n_components: k,
                    n_features: d,
                    reg_covar: self.reg_covar,
                    precision: self.precision,
                    converged: self.converged,
                    n_iter: self.n_iter,
                },
            )
            .map_err(|e| at_path(path, e))
    }
}

/// Chunked scoring of a fitted mixture, shared by every estimator: each chunk's weighted
/// log-densities `ℓ` (one GEMM, in the form [`crate::form::plan`] chooses for one restart
/// under the budget) and their log-sum-exp, with the rows and the parameters centred on the
/// mixture's mean `Σ_k π_k μ_k` so that the GEMM form does not cancel. The constant term
/// carries [`Mixture::log_weights`]: `log π_k`, or the variational mixture's `E[log π_k]`
/// and expected log-determinant terms.
pub(crate) struct Scorer<'a> {
    /// Covariance type.
    pub cov: CovarianceType,
    /// Features D the mixture was fitted with.
    pub n_features: usize,
    /// Weights (for the centre), means and precision factors.
    pub params: &'a Params,
    /// The constant column's per-component term `c_k`.
    pub log_weights: Vec<f64>,
    /// Memory budget of a chunk's intermediates and the parameters.
    pub max_memory_bytes: usize,
    /// Form of the log-densities (auto: by cost).
    pub form: EstepForm,
}

impl<'a> Scorer<'a> {
    /// The scorer of a fitted mixture under a memory budget of `max_memory_bytes`, in the
    /// E-step form `form`.
    pub fn of<M: Mixture + ?Sized>(m: &'a M, max_memory_bytes: usize, form: EstepForm) -> Self {
        Scorer {
            cov: m.covariance_type(),
            n_features: m.n_features(),
            params: m.params(),
            log_weights: m.log_weights(),
            max_memory_bytes,
            form,
        }
    }

    /// Runs `f` on every chunk of `x` (any [`RowSource`]) in order: its weighted
    /// log-densities `[n, K]` and their log-sum-exp `[n]` ([`ScoredChunk`]). A resident `x` is
    /// checked whole before the first chunk (finite, `n_features` columns); rows read from a
    /// file are checked chunk by chunk, so an output written from the chunks must be written
    /// atomically.
    pub fn scan_source(
        &self,
        x: &dyn RowSource,
        mut f: impl FnMut(ScoredChunk) -> Result<()>,
    ) -> Result<()> {
        let [n, d] = x.dims();
        match x.resident() {
            Some(t) => {
                validate_data(t)?;
            }
            None if n == 0 || d == 0 => {
                return Err(GmmError::EmptyInput {
                    n_samples: n,
                    n_features: d,
                })
            }
            None => {}
        }
        if d != self.n_features {
            return Err(GmmError::DimensionMismatch {
                what: "data vs model".into(),
                expected: self.n_features,
                got: d,
            });
        }
        let p = self.params;
        let k = p.weights.len();
        let (device, dtype) = (x.device(), x.dtype());
        let shape = PassShape {
            cov: self.cov,
            n,
            d,
            k,
            b: 1,
            workers: 1,
            value_bytes: dtype.size(),
        };
        let plan = form::plan_capped(
            self.form,
            &shape,
            self.max_memory_bytes,
            None,
            0,
            x.max_chunk_rows(),
        )?;
        let layout = Layout::new(self.cov, k, d, &device, dtype).with_form(plan.form);
        let centre = p.mixture_mean(d);
        let centred = p.clone().shifted(&centre, -1.0);
        let op = layout.upload_log_weights(&[&centred], self.log_weights.clone());
        let centre_t = tensor_from_f64(centre, [1, d], &device, dtype);
        let data = ChunkedData::new(x, centre_t, plan.chunk_rows, &layout);
        // Rows from a file are checked as they are read; other sources here.
        let check = x.resident().is_none() && !x.checked();
        // The operand on each device holding rows (moved once per device).
        let ops = PerDevice::new(op);
        // The chunks in row order: `f` consumes them one after another.
        Pass::over(x, data.ranges().collect())
            .labelled("score")
            .for_each(|start, len| {
                // Each chunk is read once: checked (rows from a file) and scored.
                let xc = data.rows(start, len)?;
                if check {
                    check_finite(&xc, start)?;
                }
                let (w, lse) = log_prob(&data, &ops.on(&x.device_of(start)), k, xc);
                f(ScoredChunk {
                    start,
                    weighted: w.reshape([len, k]),
                    log_likelihood: lse.reshape([len]),
                })
            })
    }

    /// Runs `f` on the log-densities `[n, 1, K]` and their log-sum-exp `[n, 1, 1]` of each
    /// chunk of `x` (checked: finite, `n_features` columns).
    fn scan<T>(
        &self,
        x: &Tensor<2>,
        mut f: impl FnMut(Tensor<3>, Tensor<3>) -> T,
    ) -> Result<Vec<T>> {
        let mut out = vec![];
        self.scan_source(x, |c| {
            let n = c.log_likelihood.dims()[0];
            let k = c.weighted.dims()[1];
            out.push(f(
                c.weighted.reshape([n, 1, k]),
                c.log_likelihood.reshape([n, 1, 1]),
            ));
            Ok(())
        })?;
        Ok(out)
    }

    /// `log Σ_k exp ℓ_nk` per row, shape `[N]`.
    pub fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        let parts = self.scan(x, |_, lse| lse.flatten::<1>(0, 2))?;
        Ok(Tensor::cat(parts, 0))
    }

    /// Mean of [`score_samples`](Self::score_samples), summed on the host in f64.
    pub fn score(&self, x: &Tensor<2>) -> Result<f64> {
        let ll = to_f64(self.score_samples(x)?)?;
        Ok(ll.iter().sum::<f64>() / ll.len() as f64)
    }

    /// `exp(ℓ_nk − log Σ_j exp ℓ_nj)`, shape `[N, K]`.
    pub fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        let k = self.params.weights.len();
        let parts = self.scan(x, |w, lse| {
            let n = w.dims()[0];
            (w - lse).exp().reshape([n, k])
        })?;
        Ok(Tensor::cat(parts, 0))
    }

    /// `argmax_k ℓ_nk` and `log Σ_k exp ℓ_nk` per row, shapes `[N]`, in one pass.
    pub fn predict_with_score(&self, x: &Tensor<2>) -> Result<(Tensor<1, Int>, Tensor<1>)> {
        let k = self.params.weights.len();
        let parts = self.scan(x, |w, lse| {
            let n = w.dims()[0];
            (
                w.reshape([n, k]).argmax(1).flatten::<1>(0, 1),
                lse.flatten::<1>(0, 2),
            )
        })?;
        let (labels, ll): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        Ok((Tensor::cat(labels, 0), Tensor::cat(ll, 0)))
    }

    /// `argmax_k ℓ_nk`, shape `[N]`.
    pub fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
        let k = self.params.weights.len();
        let parts = self.scan(x, |w, _| {
            let n = w.dims()[0];
            w.reshape([n, k]).argmax(1).flatten::<1>(0, 1)
        })?;
        Ok(Tensor::cat(parts, 0))
    }
}

/// One chunk of rows scored by a fitted mixture ([`crate::Mixture::score_chunks`]).
#[derive(Clone, Debug)]
pub struct ScoredChunk {
    /// Index of the chunk's first row.
    pub start: usize,
    /// Weighted log-densities `ℓ_nk = log π_k + log N(x_n | μ_k, Σ_k)` (the variational
    /// mixture's expected terms in place of `log π_k`), `[n, K]`.
    pub weighted: Tensor<2>,
    /// `log p(x_n) = logsumexp_k ℓ_nk`, `[n]`.
    pub log_likelihood: Tensor<1>,
}

impl ScoredChunk {
    /// Rows in the chunk.
    pub fn len(&self) -> usize {
        self.log_likelihood.dims()[0]
    }

    /// Whether the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most probable component of each row, `[n]`.
    pub fn labels(&self) -> Tensor<1, Int> {
        self.weighted.clone().argmax(1).flatten::<1>(0, 1)
    }

    /// Posterior component probabilities, `[n, K]`.
    pub fn proba(&self) -> Tensor<2> {
        let n = self.len();
        (self.weighted.clone() - self.log_likelihood.clone().reshape([n, 1])).exp()
    }
}
