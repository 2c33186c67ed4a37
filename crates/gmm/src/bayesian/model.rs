//! The fitted variational mixture, [`BayesianGaussianMixture`]: its parameters, validation
//! and model files; its scores and samples are [`Mixture`]'s.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::WeightConcentrationPriorType;
use super::posterior::{BayesianPriors, VariationalParams};
use super::BAYESIAN_MODEL_FORMAT;
use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::fitted::Mixture;
use crate::model_file::{
    at_path, from_envelope_json, load_with, to_envelope_json, BinaryModel, ModelContent,
    ModelWriter,
};
use crate::params::Params;
use crate::validate;
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
    /// Number of components whose weight exceeds `threshold` (e.g. 0.01).
    pub fn n_effective_components(&self, threshold: f64) -> usize {
        self.weights().iter().filter(|&&w| w > threshold).count()
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

/// The variational mixture's fitted API: its scores are scikit-learn's BGM scores (the
/// Gaussian log-densities under `precisions_cholesky` plus
/// [`VariationalParams::estep_constants`] as `c_k`); the rest is [`Mixture`]'s.
impl Mixture for BayesianGaussianMixture {
    fn format(&self) -> &'static str {
        BAYESIAN_MODEL_FORMAT
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
        &self.posterior.params
    }
    /// `E[log π_k]` and the expected log-determinant terms.
    fn log_weights(&self) -> Vec<f64> {
        self.posterior
            .estep_constants(self.priors.weight_concentration_prior_type, self.n_features)
    }
    /// Version-1 JSON (floats round-trip exactly); [`save`](Mixture::save) writes the
    /// binary format.
    fn to_json(&self) -> Result<String> {
        to_envelope_json(BAYESIAN_MODEL_FORMAT, self)
    }
    /// Safetensors (scikit-learn's fitted arrays `weights`, `means`, `covariances`,
    /// `precisions_cholesky`, `weight_concentration`, `mean_precision`,
    /// `degrees_of_freedom`, `mean_prior`, `covariance_prior`, `lower_bound`,
    /// `lower_bounds`; the scalar fields as the `config` metadata; see
    /// [`crate::model_file`]), atomically.
    fn save_with_metadata(&self, path: &Path, extra: &[(String, String)]) -> Result<()> {
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
                BayesianGaussianMixture::prior_shape(cov, d),
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
}
