//! The fitted variational mixture, [`BayesianGaussianMixture`]: its scores (through the EM
//! model's scorer), samples and model files.

use std::path::Path;

use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::config::WeightConcentrationPriorType;
use super::posterior::{BayesianPriors, VariationalParams};
use super::BAYESIAN_MODEL_FORMAT;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::model::{GaussianMixture, Scorer};
use crate::model_file::{
    at_path, from_envelope_json, load_with, to_envelope_json, BinaryModel, ModelContent,
    ModelWriter,
};
use crate::validate;
use crate::values::Values;
use mixburn_backend::backend::Precision;

/// What a `mixburn-bgm` file is, for error messages.
const EXPECTED: &str =
    "a variational Bayesian mixture written by `mixburn fit-bayesian` or BayesianGaussianMixture::save";

/// The scalar fields of a saved variational mixture (its safetensors `config` metadata).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedConfig {
    covariance_type: CovarianceType,
    n_components: usize,
    n_features: usize,
    reg_covar: f64,
    precision: Precision,
    weight_concentration_prior_type: WeightConcentrationPriorType,
    weight_concentration_prior: f64,
    mean_precision_prior: f64,
    degrees_of_freedom_prior: f64,
    converged: bool,
    n_iter: usize,
}

/// A fitted variational Bayesian Gaussian mixture. The posterior is kept on the host in f64
/// (scikit-learn's shapes, row-major); scoring uploads it to the device of the data it scores.
///
/// Scores use scikit-learn's BGM semantics: the log-density of component k is the Gaussian one
/// under `precisions_cholesky` plus [`VariationalParams::estep_constants`] (which include
/// `E[log π_k]`), so `score_samples` is their log-sum-exp, not a predictive density.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BayesianGaussianMixture {
    /// Covariance type.
    pub covariance_type: CovarianceType,
    /// Components K (the upper bound).
    pub n_components: usize,
    /// Features D.
    pub n_features: usize,
    /// `reg_covar` used in the fit.
    pub reg_covar: f64,
    /// Precision the model was fitted in.
    pub precision: Precision,
    /// The priors, defaults resolved.
    #[serde(flatten)]
    pub priors: BayesianPriors,
    /// The variational posterior.
    #[serde(flatten)]
    pub posterior: VariationalParams,
    /// Whether the lower bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
    /// Iterations run by the best restart.
    pub n_iter: usize,
    /// The (total) lower bound after the last iteration of the best restart.
    pub lower_bound: f64,
    /// The lower bound after every iteration of the best restart.
    pub lower_bounds: Vec<f64>,
}

impl BayesianGaussianMixture {
    /// `E[π]`, length K (scikit-learn's `weights_`).
    pub fn weights(&self) -> &[f64] {
        &self.posterior.params.weights
    }
    /// Posterior means `m_k`, row-major K×D.
    pub fn means(&self) -> &[f64] {
        &self.posterior.params.means
    }
    /// `W_k⁻¹ / ν_k` in the covariance type's shape, row-major.
    pub fn covariances(&self) -> &Values {
        &self.posterior.params.covariances
    }
    /// Cholesky factors of `ν_k W_k` in the covariance type's shape, row-major.
    pub fn precisions_cholesky(&self) -> &Values {
        &self.posterior.params.precisions_cholesky
    }
    /// Number of components whose weight exceeds `threshold` (e.g. 0.01).
    pub fn n_effective_components(&self, threshold: f64) -> usize {
        self.weights().iter().filter(|&&w| w > threshold).count()
    }

    /// The chunked scorer of this mixture: the Gaussian log-densities under
    /// `precisions_cholesky` with [`VariationalParams::estep_constants`] in the constant
    /// column.
    pub(crate) fn scorer(&self) -> Scorer<'_> {
        Scorer {
            cov: self.covariance_type,
            n_features: self.n_features,
            params: &self.posterior.params,
            log_weights: Some(
                self.posterior
                    .estep_constants(self.priors.weight_concentration_prior_type, self.n_features),
            ),
            max_memory_bytes: crate::budget::DEFAULT_MAX_MEMORY_BYTES,
            form: crate::form::EstepForm::Auto,
        }
    }

    /// Per-sample `log Σ_k exp(E[log π_k] + E[log N(x_n | μ_k, Λ_k⁻¹)] + const)`, as
    /// scikit-learn's `BayesianGaussianMixture.score_samples`, shape `[N]`, on `x`'s device.
    pub fn score_samples(&self, x: &Tensor<2>) -> Result<Tensor<1>> {
        self.scorer().score_samples(x)
    }

    /// Mean of [`score_samples`](Self::score_samples) (summed on the host in f64).
    pub fn score(&self, x: &Tensor<2>) -> Result<f64> {
        self.scorer().score(x)
    }

    /// Responsibilities `r_nk` under the posterior, shape `[N, K]`.
    pub fn predict_proba(&self, x: &Tensor<2>) -> Result<Tensor<2>> {
        self.scorer().predict_proba(x)
    }

    /// Most responsible component of each row, shape `[N]`.
    pub fn predict(&self, x: &Tensor<2>) -> Result<Tensor<1, Int>> {
        self.scorer().predict(x)
    }

    /// [`predict`](Self::predict) and [`score_samples`](Self::score_samples) in one pass.
    pub fn predict_with_score(&self, x: &Tensor<2>) -> Result<(Tensor<1, Int>, Tensor<1>)> {
        self.scorer().predict_with_score(x)
    }

    /// Draws `n` samples as scikit-learn's `BayesianGaussianMixture.sample` (inherited from
    /// its `BaseMixture`): component counts from a multinomial on `weights` (`E[π]`), then
    /// `x = m_k + L_k z` with `covariances_k = L_k L_kᵀ` (the posterior's point estimates),
    /// through [`GaussianMixture::sample`]. Returns the samples `[n, D]` and their components.
    pub fn sample(
        &self,
        n: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Tensor<2>, Tensor<1, Int>)> {
        GaussianMixture {
            covariance_type: self.covariance_type,
            n_components: self.n_components,
            n_features: self.n_features,
            reg_covar: self.reg_covar,
            precision: self.precision,
            params: self.posterior.params.clone(),
            converged: self.converged,
            n_iter: self.n_iter,
            lower_bound: self.lower_bound,
            lower_bounds: vec![],
        }
        .sample(n, seed, device)
    }

    /// Checks the model as strictly as a fit's result: the mixture parameters
    /// ([`validate::check_mixture`]), every array's length against `n_components`,
    /// `n_features` and the covariance type (sizes checked first), and the ranges the scores
    /// need (finite values, concentrations and `β_k` positive, `ν > D − 1`, positive prior
    /// scalars). Run at the end of every fit and on every load.
    pub fn validate(&self) -> Result<()> {
        let (k, d, cov) = (self.n_components, self.n_features, self.covariance_type);
        validate::check_mixture(cov, k, d, &self.posterior.params, self.precision)?;
        let post = &self.posterior;
        let pr = &self.priors;
        let sticks = pr.weight_concentration_prior_type.n_sticks();
        let dofs = if cov == CovarianceType::Tied { 1 } else { k };
        let bad = |what: String| {
            Err(GmmError::ModelFormat(format!(
                "{what} (n_components={k}, n_features={d}, covariance_type={cov}, weight_concentration_prior_type={})",
                pr.weight_concentration_prior_type
            )))
        };
        if post.weight_concentration.len() != sticks
            || post.weight_concentration.iter().any(|v| v.len() != k)
        {
            return bad(format!(
                "weight_concentration does not have {sticks} rows of {k} values"
            ));
        }
        validate::check_len("mean_precision", &post.mean_precision, k)?;
        validate::check_len("degrees_of_freedom", &post.degrees_of_freedom, dofs)?;
        validate::check_len("mean_prior", &pr.mean_prior, d)?;
        validate::check_len(
            "covariance_prior",
            &pr.covariance_prior,
            cov.param_len(1, d),
        )?;
        validate::check_finite_values("mean_prior", &pr.mean_prior)?;
        validate::check_finite_values("covariance_prior", &pr.covariance_prior)?;
        let positive = |v: &f64| v.is_finite() && *v > 0.0;
        if !post
            .weight_concentration
            .iter()
            .flatten()
            .chain(&post.mean_precision)
            .all(positive)
        {
            return bad("weight_concentration and mean_precision must be finite and > 0".into());
        }
        if !post
            .degrees_of_freedom
            .iter()
            .all(|v| v.is_finite() && *v > d as f64 - 1.0)
        {
            return bad(format!(
                "degrees_of_freedom must be finite and > n_features − 1 = {}",
                d - 1
            ));
        }
        if ![pr.weight_concentration_prior, pr.mean_precision_prior]
            .iter()
            .all(positive)
            || !pr.degrees_of_freedom_prior.is_finite()
            || pr.degrees_of_freedom_prior <= d as f64 - 1.0
        {
            return bad(
                "the prior scalars must be finite and positive (ν₀ > n_features − 1)".into(),
            );
        }
        if !(self.reg_covar >= 0.0 && self.reg_covar.is_finite()) {
            return bad(format!("reg_covar is {}", self.reg_covar));
        }
        validate::check_finite_values("lower_bounds", &self.lower_bounds)?;
        if self.lower_bound.is_nan() {
            return bad("lower_bound is NaN".into());
        }
        Ok(())
    }

    /// Serialises the model as version-1 JSON (floats round-trip exactly);
    /// [`save`](Self::save) writes the binary format.
    pub fn to_json(&self) -> Result<String> {
        to_envelope_json(BAYESIAN_MODEL_FORMAT, self)
    }

    /// Parses a version-1 JSON model, checking format, version and every parameter
    /// ([`validate`](Self::validate)).
    pub fn from_json(text: &str) -> Result<Self> {
        let m: Self = from_envelope_json(text, BAYESIAN_MODEL_FORMAT, EXPECTED)?;
        m.validate()?;
        Ok(m)
    }

    /// Shape of the covariance prior `Ψ₀`: full/tied `[D, D]`, diag `[D]`, spherical `[]`.
    fn prior_shape(cov: CovarianceType, d: usize) -> Vec<usize> {
        match cov {
            CovarianceType::Full | CovarianceType::Tied => vec![d, d],
            CovarianceType::Diag => vec![d],
            CovarianceType::Spherical => vec![],
        }
    }

    /// Writes the model to `path` as safetensors (scikit-learn's fitted arrays `weights`,
    /// `means`, `covariances`, `precisions_cholesky`, `weight_concentration`,
    /// `mean_precision`, `degrees_of_freedom`, `mean_prior`, `covariance_prior`,
    /// `lower_bound`, `lower_bounds`; the scalar fields as the `config` metadata; see
    /// [`crate::model_file`]), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_metadata(path, &[])
    }

    /// As [`save`](Self::save), with `extra` metadata entries in the file (for files that
    /// wrap the model, such as an anomaly detector's).
    pub fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
        let (k, d, cov) = (self.n_components, self.n_features, self.covariance_type);
        let post = &self.posterior;
        let pr = &self.priors;
        let wc: Vec<f64> = post.weight_concentration.concat();
        ModelWriter::new(BAYESIAN_MODEL_FORMAT, self.precision)
            .metadata(extra)
            .mixture(cov, &post.params, self.lower_bound, &self.lower_bounds)
            .floats(
                "weight_concentration",
                vec![post.weight_concentration.len(), k],
                &wc,
            )
            .floats("mean_precision", vec![k], &post.mean_precision)
            .floats(
                "degrees_of_freedom",
                vec![post.degrees_of_freedom.len()],
                &post.degrees_of_freedom,
            )
            .floats("mean_prior", vec![d], &pr.mean_prior)
            .floats(
                "covariance_prior",
                Self::prior_shape(cov, d),
                &pr.covariance_prior,
            )
            .save(
                path,
                &SavedConfig {
                    covariance_type: cov,
                    n_components: k,
                    n_features: d,
                    reg_covar: self.reg_covar,
                    precision: self.precision,
                    weight_concentration_prior_type: pr.weight_concentration_prior_type,
                    weight_concentration_prior: pr.weight_concentration_prior,
                    mean_precision_prior: pr.mean_precision_prior,
                    degrees_of_freedom_prior: pr.degrees_of_freedom_prior,
                    converged: self.converged,
                    n_iter: self.n_iter,
                },
            )
            .map_err(|e| at_path(path, e))
    }

    /// The model of a version-2 (safetensors) file: sizes checked before the arrays' shapes
    /// are compared with them, then [`validate`](Self::validate).
    fn from_binary(mut b: BinaryModel) -> Result<Self> {
        let c: SavedConfig = b.config()?;
        let (k, d, cov) = (c.n_components, c.n_features, c.covariance_type);
        let (params, lower_bound, lower_bounds) = b.mixture(cov, k, d)?;
        let sticks = c.weight_concentration_prior_type.n_sticks();
        let dofs = if cov == CovarianceType::Tied { 1 } else { k };
        let wc = b.floats("weight_concentration", &[sticks, k])?;
        let posterior = VariationalParams {
            params,
            weight_concentration: wc.chunks(k).map(<[f64]>::to_vec).collect(),
            mean_precision: b.floats("mean_precision", &[k])?,
            degrees_of_freedom: b.floats("degrees_of_freedom", &[dofs])?,
        };
        let priors = BayesianPriors {
            weight_concentration_prior_type: c.weight_concentration_prior_type,
            weight_concentration_prior: c.weight_concentration_prior,
            mean_precision_prior: c.mean_precision_prior,
            mean_prior: b.floats("mean_prior", &[d])?,
            degrees_of_freedom_prior: c.degrees_of_freedom_prior,
            covariance_prior: b.floats("covariance_prior", &Self::prior_shape(cov, d))?,
        };
        b.finish()?;
        let m = Self {
            covariance_type: cov,
            n_components: k,
            n_features: d,
            reg_covar: c.reg_covar,
            precision: c.precision,
            priors,
            posterior,
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
        content.decode(
            BAYESIAN_MODEL_FORMAT,
            EXPECTED,
            Self::from_json,
            Self::from_binary,
        )
    }

    /// Reads a model saved by [`save`](Self::save), or a version-1 JSON file (told apart by
    /// content), and validates it as strictly as a fit's result; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        load_with(path, Self::from_content)
    }
}
