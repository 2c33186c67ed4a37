//! Where the threshold on anomaly scores comes from, and NumPy's percentile that sets it.
//!
//! - [`ThresholdRule::Contamination`] (pyod's rule): `threshold = percentile(train_scores,
//!   100·(1 − c))`, NumPy's default (`linear`) interpolation, `c ∈ (0, 0.5]` (pyod's
//!   `BaseDetector` range), default 0.1; a row is flagged when `score > threshold`, so about a
//!   fraction `c` of the training rows is flagged.
//! - [`ThresholdRule::FalseAlarmRate`]: the same percentile of the scores of a clean
//!   validation set (normal rows only) at `100·(1 − α)`, so about a fraction `α ∈ (0, 1)` of
//!   normal rows is flagged.

use serde::{Deserialize, Serialize};

use crate::error::{AnomalyError, Result};

/// pyod's default contamination.
pub const DEFAULT_CONTAMINATION: f64 = 0.1;

/// How a detector's threshold was set (module docs); saved with the detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum ThresholdRule {
    /// The `100·(1 − contamination)` percentile of the training scores.
    Contamination {
        /// Expected fraction of anomalies in the training data, in (0, 0.5].
        contamination: f64,
    },
    /// The `100·(1 − rate)` percentile of the scores of clean validation rows.
    FalseAlarmRate {
        /// Target fraction of normal rows flagged, in (0, 1).
        rate: f64,
    },
}

impl ThresholdRule {
    /// Checks the rule's parameter: contamination in (0, 0.5], false-alarm rate in (0, 1).
    pub fn validate(&self) -> Result<()> {
        match *self {
            ThresholdRule::Contamination { contamination: c } => {
                if !(c > 0.0 && c <= 0.5) {
                    return Err(AnomalyError::InvalidSetting {
                        name: "contamination",
                        reason: format!(
                            "{c} is outside (0, 0.5]; pass the expected fraction of anomalies in the training data, e.g. 0.1"
                        ),
                    });
                }
            }
            ThresholdRule::FalseAlarmRate { rate } => {
                if !(rate > 0.0 && rate < 1.0) {
                    return Err(AnomalyError::InvalidSetting {
                        name: "false-alarm rate",
                        reason: format!(
                            "{rate} is outside (0, 1); pass the fraction of normal rows that may be flagged, e.g. 0.05"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The fraction of rows above the threshold the rule aims at (`c` or `α`).
    pub fn fraction(&self) -> f64 {
        match *self {
            ThresholdRule::Contamination { contamination } => contamination,
            ThresholdRule::FalseAlarmRate { rate } => rate,
        }
    }

    /// The threshold on `scores` (the training scores for contamination, the validation
    /// scores for a false-alarm rate): `percentile(scores, 100·(1 − fraction))`.
    pub fn threshold(&self, scores: &[f64]) -> Result<f64> {
        self.validate()?;
        if scores.is_empty() {
            return Err(AnomalyError::Empty {
                what: "the scores that set the threshold",
            });
        }
        if let Some(v) = scores.iter().find(|v| !v.is_finite()) {
            return Err(AnomalyError::InvalidSetting {
                name: "threshold",
                reason: format!("a score that sets the threshold is {v}; its rows must be finite"),
            });
        }
        Ok(percentile(scores, 100.0 * (1.0 - self.fraction())))
    }
}

/// NumPy's `np.percentile(a, q)` with the default `linear` method, bit for bit: the sorted
/// values' virtual index `(n − 1)·q/100`, then `_lerp(a, b, γ) = a + (b − a)·γ`, computed as
/// `b − (b − a)·(1 − γ)` when `γ ≥ 0.5`. `a` must be non-empty and free of NaN; `q` in
/// `[0, 100]`.
pub fn percentile(a: &[f64], q: f64) -> f64 {
    let mut sorted = a.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let quantile = q / 100.0;
    let virtual_index = (n - 1) as f64 * quantile;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let last = (n - 1) as f64;
    let lo = below.clamp(0.0, last) as usize;
    let hi = (below + 1.0).clamp(0.0, last) as usize;
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([3, 1, 4, 1, 5, 9, 2, 6], [0, 90, 50, 100, 12.5]).
        let a = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
        assert_eq!(percentile(&a, 0.0), 1.0);
        assert_eq!(percentile(&a, 90.0), 6.8999999999999995);
        assert_eq!(percentile(&a, 50.0), 3.5);
        assert_eq!(percentile(&a, 100.0), 9.0);
        assert_eq!(percentile(&a, 12.5), 1.0);
        assert_eq!(percentile(&[2.5], 90.0), 2.5);
    }

    #[test]
    fn contamination_outside_the_half_open_range_is_refused() {
        for c in [0.0, 0.6, -0.1, f64::NAN, f64::INFINITY] {
            let r = ThresholdRule::Contamination { contamination: c };
            assert!(r.validate().is_err(), "{c} accepted");
        }
        for c in [1e-9, 0.1, 0.5] {
            assert!(ThresholdRule::Contamination { contamination: c }
                .validate()
                .is_ok());
        }
        assert!(ThresholdRule::FalseAlarmRate { rate: 1.0 }
            .validate()
            .is_err());
    }
}
