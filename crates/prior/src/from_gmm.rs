//! A prior initialised from a fitted diagonal (or spherical) `mixburn_gmm::GaussianMixture`:
//! `logits = log π`, `means = μ`, `log_vars = log σ²`.

use burn::tensor::Device;
use mixburn_gmm::Mixture;
use mixburn_gmm::{CovarianceType, GaussianMixture};

use crate::error::PriorError;
use crate::prior::{GmmPrior, GmmPriorConfig};

impl GmmPrior {
    /// A prior whose parameters are a fitted diagonal mixture's: `logits_k = log π_k`,
    /// `means = μ`, `log_vars = log σ²` (a spherical mixture's one variance per component is
    /// repeated over the D dimensions). The dtype, floor and shape come from `config`; a fitted
    /// variance below `exp(log_var_floor)` is stored as is and used at the floor.
    ///
    /// Errors: [`PriorError::Shape`] when the mixture has full or tied covariances (refit with
    /// `covariance_type` diag or spherical) or another K / D than `config`;
    /// [`PriorError::InvalidSetting`] when a weight or variance is not positive and finite.
    pub fn from_gmm(
        model: &GaussianMixture,
        config: &GmmPriorConfig,
        device: &Device,
    ) -> Result<Self, PriorError> {
        config.validate()?;
        let (k, d) = (model.n_components, model.n_features);
        let cov = model.covariance_type;
        if !matches!(cov, CovarianceType::Diag | CovarianceType::Spherical) {
            return Err(PriorError::Shape(format!(
                "the fitted mixture has `{cov}` covariances but the prior is diagonal; refit it with \
                 covariance_type diag (or spherical)"
            )));
        }
        if k != config.n_components || d != config.latent_dim {
            return Err(PriorError::Shape(format!(
                "the fitted mixture has n_components={k}, n_features={d} but the config asks for \
                 n_components={}, latent_dim={}; use GmmPriorConfig::new({k}, {d}) or refit the \
                 mixture with the config's sizes",
                config.n_components, config.latent_dim
            )));
        }
        let weights = model.weights();
        let means = model.means();
        let covariances = model.covariances().to_f64();
        let per_component = if cov == CovarianceType::Diag { d } else { 1 };
        if weights.len() != k || means.len() != k * d || covariances.len() != k * per_component {
            return Err(PriorError::Shape(format!(
                "the mixture's arrays (weights {}, means {}, covariances {}) do not match \
                 n_components={k}, n_features={d}; pass a fitted model (mixburn_gmm::fit or \
                 GaussianMixture::load)",
                weights.len(),
                means.len(),
                covariances.len()
            )));
        }
        let positive =
            |name: &str, v: &[f64]| match v.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
                Some(i) => Err(PriorError::invalid_setting(
                    "mixture",
                    format!(
                    "the mixture's {name}[{i}] = {} is not positive and finite; refit the mixture \
                 (a larger reg_covar keeps variances positive)",
                    v[i]
                ),
                )),
                None => Ok(()),
            };
        positive("weights", weights)?;
        positive("covariances", &covariances)?;
        let logits: Vec<f64> = weights.iter().map(|w| w.ln()).collect();
        let log_vars: Vec<f64> = (0..k * d)
            .map(|i| covariances[(i / d) * per_component + (i % d) % per_component].ln())
            .collect();
        GmmPrior::from_parameters(&logits, means, &log_vars, config, device)
    }
}
