//! An updatable detector: new rows added without the first ones, and the mixture equal to a
//! fit on all rows.
//!
//! A detector over a single Gaussian (K = 1, fitted by EM) keeps one number besides its model:
//! the total weight `n` of its training rows (`kept_count` in its file). The model and `n` are
//! the rows' sufficient statistics, so [`AnomalyDetector::update`] fits one Gaussian to the new
//! rows (the same covariance type, `reg_covar` and precision; a chunked pass like any fit, so
//! the new rows may be streamed) and merges the two exactly
//! ([`GaussianMixture::merge_single`], Chan et al.'s pairwise update): the scores equal a fit
//! on all rows to rounding (tested to 1e-9 in f64).
//!
//! Where it is not exact, it is refused: a mixture of K > 1 components has no such statistics
//! (they depend on the responsibilities, which change with the parameters: continue it with
//! online EM, `mixburn fit --warm-start M --online`), nor has the variational mixture's
//! posterior.
//!
//! The threshold: under the contamination rule it is set again on the new rows' scores under
//! the updated mixture (the first rows' scores are not kept; the percentile of all rows'
//! scores would need them); under a false-alarm rate it is kept, or set again on clean
//! validation rows by [`AnomalyDetector::with_rule`].

use burn::tensor::Tensor;
use mixburn_gmm::budget::DEFAULT_MAX_MEMORY_BYTES;
use mixburn_gmm::{FitData, FittedMixture, GaussianMixture, GaussianMixtureConfig, Mixture};

use crate::detector::AnomalyDetector;
use crate::error::{AnomalyError, Result};
use crate::threshold::ThresholdRule;

impl AnomalyDetector {
    /// This detector, keeping `total_weight` (the number of rows, or the sum of their sample
    /// weights, its mixture was fitted on), so that [`update`](Self::update) refits it on more
    /// rows exactly.
    ///
    /// # Errors
    /// [`AnomalyError::InvalidSetting`] when the mixture is not a single Gaussian fitted by EM
    /// (module docs), or the weight is not a positive finite number.
    pub fn updatable(mut self, total_weight: f64) -> Result<Self> {
        let refuse = |reason: String| AnomalyError::InvalidSetting {
            name: "updatable",
            reason,
        };
        if let Some(why) = no_exact_update(&self.mixture) {
            return Err(refuse(why));
        }
        if !(total_weight.is_finite() && total_weight > 0.0) {
            return Err(refuse(format!(
                "the training rows' total weight {total_weight} is not a positive number"
            )));
        }
        self.kept_count = Some(total_weight);
        Ok(self)
    }

    /// The total weight of the training rows an updatable detector keeps (`None`: not
    /// updatable).
    pub fn kept_count(&self) -> Option<f64> {
        self.kept_count
    }

    /// The single Gaussian fitted on this detector's rows and `rows` together (a tensor, or
    /// rows streamed from a file, with sample weights), exactly and without the first rows
    /// (module docs), and the total weight of all of them. The new rows' pass follows
    /// `max_memory_bytes`.
    ///
    /// # Errors
    /// [`AnomalyError::InvalidSetting`] when the detector is not updatable; the fit's errors
    /// for the new rows (none, another width, non-finite values, bad weights).
    pub fn update_mixture<'a>(
        &self,
        rows: impl Into<FitData<'a>>,
        max_memory_bytes: usize,
    ) -> Result<(GaussianMixture, f64)> {
        let not_updatable = || AnomalyError::InvalidSetting {
            name: "detector",
            reason: no_exact_update(&self.mixture).unwrap_or_else(|| {
                "it keeps no statistics to update: fit it with --updatable \
                 (AnomalyDetector::updatable)"
                    .into()
            }),
        };
        let kept = self.kept_count.ok_or_else(not_updatable)?;
        let FittedMixture::Em(old) = &self.mixture else {
            return Err(not_updatable());
        };
        let data: FitData<'a> = rows.into();
        let [n, d] = data.rows.dims();
        if n == 0 {
            return Err(AnomalyError::Empty { what: "the rows" });
        }
        if d != old.n_features {
            return Err(AnomalyError::WidthMismatch {
                expected: old.n_features,
                got: d,
            });
        }
        let n_new = match data.sample_weight {
            Some(w) => w.iter().sum(),
            None => n as f64,
        };
        // One component: EM's first M-step is the rows' moments (started at the kept mean, so
        // no initialisation pass runs); the second iteration confirms convergence.
        let config = GaussianMixtureConfig::default()
            .with_n_components(1)
            .with_covariance_type(old.covariance_type)
            .with_reg_covar(old.reg_covar)
            .with_max_iter(2)
            .with_n_init(1)
            .with_max_memory_bytes(max_memory_bytes)
            .with_weights_init(vec![1.0])
            .with_means_init(old.means().to_vec());
        let new = mixburn_gmm::fit(&config, data)?;
        if new.precision() != old.precision() {
            return Err(AnomalyError::InvalidSetting {
                name: "dtype",
                reason: format!(
                    "the new rows are {} but the detector was fitted in {}: read them in {}",
                    new.precision(),
                    old.precision(),
                    old.precision()
                ),
            });
        }
        let merged = old.merge_single(kept, &new, n_new, &data.rows.device())?;
        Ok((merged, kept + n_new))
    }

    /// The detector fitted on its rows and the rows `x: [N, D]` (module docs): the mixture
    /// exactly, the threshold set again by contamination on `x`'s scores, or kept under a
    /// false-alarm rate. The result stays updatable.
    pub fn update(&self, x: &Tensor<2>) -> Result<Self> {
        let (mixture, n) = self.update_mixture(x, DEFAULT_MAX_MEMORY_BYTES)?;
        let det = match self.rule {
            ThresholdRule::Contamination { .. } => Self::with_rule(mixture, x, self.rule)?,
            ThresholdRule::FalseAlarmRate { .. } => {
                Self::from_parts(mixture, self.threshold, self.rule)?
            }
        };
        det.updatable(n)
    }
}

/// Why a detector over `mixture` has no exact update (module docs), or `None` for a single
/// Gaussian fitted by EM.
fn no_exact_update(mixture: &FittedMixture) -> Option<String> {
    match mixture {
        FittedMixture::Em(m) if m.n_components == 1 => None,
        FittedMixture::Em(m) => Some(format!(
            "a mixture of {} components has no exact update (its statistics depend on the \
             responsibilities, which change with the parameters): fit one component \
             (--components 1) to keep the detector updatable, or continue a mixture with \
             online EM (mixburn fit --warm-start M --online)",
            m.n_components
        )),
        FittedMixture::Bayesian(_) => Some(
            "the variational mixture's posterior has no exact update: fit one component with \
             the em estimator"
                .into(),
        ),
    }
}
