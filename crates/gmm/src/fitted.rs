//! The fitted-mixture API shared by both estimators (scikit-learn's `BaseMixture`): the
//! [`Mixture`] trait, implemented by [`GaussianMixture`] and [`BayesianGaussianMixture`] by
//! delegating to their own methods, and [`FittedMixture`], a model file of either estimator
//! told apart by its `format` field.
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
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::model::{GaussianMixture, ScoredChunk, MODEL_FORMAT};
use crate::params::Params;
use crate::source::{FitData, RowSource};
use mixburn_backend::backend::Precision;
use mixburn_backend::host::to_f64;

/// A fitted Gaussian mixture of either estimator (module docs).
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
    /// Per-sample `log p(x_n) = logsumexp_k ℓ_k(x_n)`, shape `[N]`, on `x`'s device.
    fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>>;
    /// Mean of [`score_samples`](Self::score_samples) (summed on the host in f64).
    fn score(&self, x: &Tensor<2>) -> Result<f64>;
    /// Responsibilities `exp(ℓ_k − log p)`, shape `[N, K]`.
    fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>>;
    /// `argmax_k ℓ_k`, shape `[N]`.
    fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>>;
    /// Scores the rows of any source (a tensor, or a file read a chunk at a time) in chunks
    /// whose intermediates fit `max_memory_bytes`, calling `f` on each in order
    /// ([`ScoredChunk`]: `ℓ`, `log p`, labels, responsibilities), so that scoring data larger
    /// than memory needs one chunk at a time.
    fn score_chunks(
        &self,
        x: &dyn RowSource,
        max_memory_bytes: usize,
        f: &mut dyn FnMut(ScoredChunk) -> Result<()>,
    ) -> Result<()>;
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
    /// `n` samples `[n, D]` and their components `[n]`.
    fn sample(&self, n: usize, seed: u64, device: &Device) -> Result<(Tensor<2>, Tensor<1, Int>)>;
    /// The model as versioned JSON (its own model-file format).
    fn to_json(&self) -> Result<String>;
    /// Saves the model file (safetensors) with `extra` metadata entries besides its own,
    /// for files that wrap the model (an anomaly detector's).
    fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()>;
}

/// `ln π_k`, floored as the E-step's operand floors it (a zero weight stays finite).
fn ln_weights(w: &[f64]) -> Vec<f64> {
    w.iter().map(|w| w.ln().max(-1e30)).collect()
}

/// Implements [`Mixture`] for an estimator by delegating to its inherent methods.
macro_rules! delegate_mixture {
    ($ty:ty, $format:expr, |$m:ident| params: $params:expr, log_weights: $lw:expr) => {
        impl Mixture for $ty {
            fn format(&self) -> &'static str {
                $format
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
                let $m = self;
                $params
            }
            fn log_weights(&self) -> Vec<f64> {
                let $m = self;
                $lw
            }
            fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
                <$ty>::score_samples(self, x)
            }
            fn score(&self, x: &Tensor<2>) -> Result<f64> {
                <$ty>::score(self, x)
            }
            fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
                <$ty>::predict_proba(self, x)
            }
            fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
                <$ty>::predict(self, x)
            }
            fn score_chunks(
                &self,
                x: &dyn RowSource,
                max_memory_bytes: usize,
                f: &mut dyn FnMut(ScoredChunk) -> Result<()>,
            ) -> Result<()> {
                let scorer = crate::model::Scorer {
                    max_memory_bytes,
                    ..self.scorer()
                };
                scorer.scan_source(x, f)
            }
            fn sample(
                &self,
                n: usize,
                seed: u64,
                device: &Device,
            ) -> Result<(Tensor<2>, Tensor<1, Int>)> {
                <$ty>::sample(self, n, seed, device)
            }
            fn to_json(&self) -> Result<String> {
                <$ty>::to_json(self)
            }
            fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
                <$ty>::save_with_metadata(self, path, extra)
            }
        }
    };
}

delegate_mixture!(GaussianMixture, MODEL_FORMAT, |m| params: &m.params,
    log_weights: ln_weights(&m.params.weights));
delegate_mixture!(BayesianGaussianMixture, BAYESIAN_MODEL_FORMAT, |m| params: &m.posterior.params,
    log_weights: m.posterior.estep_constants(m.priors.weight_concentration_prior_type, m.n_features));

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
    pub fn as_mixture(&self) -> &dyn Mixture {
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

impl Mixture for FittedMixture {
    fn format(&self) -> &'static str {
        self.as_mixture().format()
    }
    fn covariance_type(&self) -> CovarianceType {
        self.as_mixture().covariance_type()
    }
    fn n_features(&self) -> usize {
        self.as_mixture().n_features()
    }
    fn n_components(&self) -> usize {
        self.as_mixture().n_components()
    }
    fn precision(&self) -> Precision {
        self.as_mixture().precision()
    }
    fn params(&self) -> &Params {
        self.as_mixture().params()
    }
    fn log_weights(&self) -> Vec<f64> {
        self.as_mixture().log_weights()
    }
    fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        self.as_mixture().score_samples(x)
    }
    fn score(&self, x: &Tensor<2>) -> Result<f64> {
        self.as_mixture().score(x)
    }
    fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        self.as_mixture().predict_proba(x)
    }
    fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
        self.as_mixture().predict(x)
    }
    fn score_chunks(
        &self,
        x: &dyn RowSource,
        max_memory_bytes: usize,
        f: &mut dyn FnMut(ScoredChunk) -> Result<()>,
    ) -> Result<()> {
        self.as_mixture().score_chunks(x, max_memory_bytes, f)
    }
    fn sample(&self, n: usize, seed: u64, device: &Device) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        self.as_mixture().sample(n, seed, device)
    }
    fn to_json(&self) -> Result<String> {
        self.as_mixture().to_json()
    }
    fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
        self.as_mixture().save_with_metadata(path, extra)
    }
}
