//! The fitted-mixture API shared by both estimators (scikit-learn's `BaseMixture`): the
//! [`Mixture`] trait, whose scoring, prediction and sampling methods are written once over
//! the one scorer (each estimator gives only its parameters, constants and file format),
//! and [`FittedMixture`], a model file of either estimator told apart by its `format` field.
//!
//! Both estimators score with the same per-component weighted log-density
//!
//! `ℓ_k(x) = c_k + log N(x | μ_k, (P_k P_kᵀ)⁻¹)`, `log p(x) = logsumexp_k ℓ_k(x)`,
//!
//! where `P_k` are the precision Cholesky factors and the constant `c_k` is
//! [`Mixture::log_weights`]: `log π_k` for EM, and for the variational mixture
//! `E[log π_k]` plus its expected log-determinant terms
//! ([`VariationalParams::estep_constants`](crate::VariationalParams::estep_constants)). Code
//! that consumes a fitted mixture (an anomaly detector, a network head) reads these and needs
//! no match on the estimator.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor};

use crate::bayesian::{BayesianGaussianMixture, BAYESIAN_MODEL_FORMAT};
use crate::budget::DEFAULT_MAX_MEMORY_BYTES;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::form::EstepForm;
use crate::model::{GaussianMixture, ScoredChunk, Scorer, MODEL_FORMAT};
use crate::params::Params;
use crate::source::{FitData, RowSource};
use crate::values::Values;
use mixburn_backend::backend::Precision;
use mixburn_backend::host::to_f64;

/// A fitted Gaussian mixture of either estimator (module docs). An estimator gives its shape,
/// parameters, constant terms and its file format; the fitted API (scores, predictions,
/// chunked scoring, samples, `save`) is written here once, over the one scorer.
pub trait Mixture {
    /// The `format` name its model files carry (`mixburn-gmm`, `mixburn-bgm`).
    fn format(&self) -> &'static str;
    /// Covariance type.
    fn covariance_type(&self) -> CovarianceType;
    /// Features D.
    fn n_features(&self) -> usize;
    /// Components K.
    fn n_components(&self) -> usize;
    /// Precision the model was fitted in.
    fn precision(&self) -> Precision;
    /// Weights, means, covariances and precision Cholesky factors (host, f64, row-major).
    fn params(&self) -> &Params;
    /// The per-component constant `c_k` of `ℓ_k` (module docs), length K.
    fn log_weights(&self) -> Vec<f64>;
    /// The model as versioned JSON (its own model-file format; floats round-trip exactly).
    fn to_json(&self) -> Result<String>;
    /// Saves the model file (safetensors) with `extra` metadata entries besides its own,
    /// for files that wrap the model (an anomaly detector's).
    fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()>;

    /// Writes the model file to `path` (safetensors, atomically; see [`crate::model_file`]).
    fn save(&self, path: &Path) -> Result<()> {
        self.save_with_metadata(path, &[])
    }
    /// Mixing weights, length K (`π`; the variational mixture's `E[π]`).
    fn weights(&self) -> &[f64] {
        &self.params().weights
    }
    /// Means, row-major K×D (the variational mixture's posterior means `m_k`).
    fn means(&self) -> &[f64] {
        &self.params().means
    }
    /// Covariances in the covariance type's shape, row-major (the variational mixture's
    /// `W_k⁻¹ / ν_k`).
    fn covariances(&self) -> &Values {
        &self.params().covariances
    }
    /// Precision Cholesky factors in the covariance type's shape, row-major.
    fn precisions_cholesky(&self) -> &Values {
        &self.params().precisions_cholesky
    }
    /// As [`score_samples`](Self::score_samples), under a memory budget of
    /// `max_memory_bytes` (the rows per chunk follow from it; the default is
    /// [`DEFAULT_MAX_MEMORY_BYTES`]) in the E-step form `form`.
    fn score_samples_with(
        &self,
        x: &Tensor<2>,
        max_memory_bytes: usize,
        form: EstepForm,
    ) -> Result<Tensor<1>> {
        Scorer::of(self, max_memory_bytes, form).score_samples(x)
    }
    /// Per-sample `log p(x_n) = logsumexp_k ℓ_k(x_n)`, shape `[N]`, on `x`'s device.
    fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        self.score_samples_with(x, DEFAULT_MAX_MEMORY_BYTES, EstepForm::Auto)
    }
    /// Mean of [`score_samples`](Self::score_samples) (summed on the host in f64, so it does
    /// not depend on the device's float type beyond the per-sample values).
    fn score(&self, x: &Tensor<2>) -> Result<f64> {
        default_scorer(self).score(x)
    }
    /// Responsibilities `exp(ℓ_k − log p)`, shape `[N, K]`.
    fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        default_scorer(self).predict_proba(x)
    }
    /// `argmax_k ℓ_k`, shape `[N]`.
    fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
        default_scorer(self).predict(x)
    }
    /// [`predict`](Self::predict) and [`score_samples`](Self::score_samples) in one pass
    /// (a caller checks the log-likelihoods are finite before trusting the labels).
    fn predict_with_score(&self, x: &Tensor<2>) -> Result<(Tensor<1, Int>, Tensor<1>)> {
        default_scorer(self).predict_with_score(x)
    }
    /// Scores the rows of any source (a tensor, or a file read a chunk at a time) in chunks
    /// whose intermediates fit `max_memory_bytes`, calling `f` on each in order
    /// ([`ScoredChunk`]: `ℓ`, `log p`, labels, responsibilities), so that scoring data larger
    /// than memory needs one chunk at a time.
    fn score_chunks(
        &self,
        x: &dyn RowSource,
        max_memory_bytes: usize,
        f: &mut dyn FnMut(ScoredChunk) -> Result<()>,
    ) -> Result<()> {
        Scorer::of(self, max_memory_bytes, EstepForm::Auto).scan_source(x, f)
    }
    /// `(Σ_n w_n log p(x_n), Σ_n w_n)` of rows with sample weights (all 1 when `None`), chunk
    /// by chunk ([`score_chunks`](Self::score_chunks)), summed on the host in f64 in row order.
    fn weighted_log_likelihood(
        &self,
        data: FitData<'_>,
        max_memory_bytes: usize,
    ) -> Result<(f64, f64)> {
        let (mut total, mut weight) = (0.0, 0.0);
        self.score_chunks(data.rows, max_memory_bytes, &mut |c| {
            let ll = to_f64(c.log_likelihood)?;
            match data.sample_weight {
                Some(w) => {
                    for (i, v) in ll.iter().enumerate() {
                        total += w[c.start + i] * v;
                        weight += w[c.start + i];
                    }
                }
                None => {
                    total += ll.iter().sum::<f64>();
                    weight += ll.len() as f64;
                }
            }
            Ok(())
        })?;
        Ok((total, weight))
    }
    /// `n` samples `[n, D]` and their components `[n]`, drawn as scikit-learn's
    /// `BaseMixture.sample` draws them: counts per component from a multinomial on the
    /// weights, then `x = μ_k + L_k z` with `Σ_k = L_k L_kᵀ`, `z ~ N(0, I)`, grouped by
    /// component (f64 where `device` supports it).
    fn sample(&self, n: usize, seed: u64, device: &Device) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        crate::sample::sample(
            self.covariance_type(),
            self.n_features(),
            self.params(),
            n,
            seed,
            device,
        )
    }
}

/// The scorer of `m` under the default budget, the form chosen by cost.
fn default_scorer<M: Mixture + ?Sized>(m: &M) -> Scorer<'_> {
    Scorer::of(m, DEFAULT_MAX_MEMORY_BYTES, EstepForm::Auto)
}

/// A fitted mixture of either estimator, as read from a model file.
#[derive(Clone, Debug, PartialEq)]
pub enum FittedMixture {
    /// Fitted by EM ([`crate::fit`]).
    Em(GaussianMixture),
    /// The variational Bayesian mixture ([`crate::fit_bayesian`]).
    Bayesian(BayesianGaussianMixture),
}

impl From<GaussianMixture> for FittedMixture {
    fn from(m: GaussianMixture) -> Self {
        FittedMixture::Em(m)
    }
}

impl From<BayesianGaussianMixture> for FittedMixture {
    fn from(m: BayesianGaussianMixture) -> Self {
        FittedMixture::Bayesian(m)
    }
}

impl FittedMixture {
    /// The model as the trait.
    pub fn as_mixture(&self) -> &(dyn Mixture + 'static) {
        match self {
            FittedMixture::Em(m) => m,
            FittedMixture::Bayesian(m) => m,
        }
    }

    /// Parses a model file of either estimator (by its `format` field), validated as that
    /// estimator's own `from_json` validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let format = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v["format"].as_str().map(str::to_owned));
        match format.as_deref() {
            Some(BAYESIAN_MODEL_FORMAT) => Ok(BayesianGaussianMixture::from_json(text)?.into()),
            Some(MODEL_FORMAT) | None => Ok(GaussianMixture::from_json(text)?.into()),
            Some(other) => Err(GmmError::ModelFormat(format!(
                "format is `{other}`, expected `{MODEL_FORMAT}` or `{BAYESIAN_MODEL_FORMAT}` (a model written by `mixburn fit` or `mixburn fit-bayesian`)"
            ))),
        }
    }

    /// A model file's content of either estimator (by its format name), validated as that
    /// estimator's own `from_content` validates it.
    pub fn from_content(content: crate::model_file::ModelContent) -> Result<Self> {
        Ok(if content.format() == BAYESIAN_MODEL_FORMAT {
            BayesianGaussianMixture::from_content(content)?.into()
        } else {
            GaussianMixture::from_content(content)?.into()
        })
    }

    /// Reads a model file of either estimator, safetensors or version-1 JSON (told apart by
    /// content); errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        crate::model_file::load_with(path, Self::from_content)
    }
}

/// A fitted mixture of either estimator is used as the trait: `fitted.score(x)`, or
/// `&*fitted` where a `&dyn Mixture` is wanted.
impl std::ops::Deref for FittedMixture {
    type Target = dyn Mixture;

    fn deref(&self) -> &Self::Target {
        self.as_mixture()
    }
}
