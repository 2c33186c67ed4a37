//! The one error type of the metrics: every variant is a problem with the input, and the
//! message says what to do.

use thiserror::Error;

/// Errors of the metric functions: every one is a problem with the input, and the message
/// says what to do.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// A score set (or a class inside it) that must not be empty is.
    #[error("{what} is empty; pass at least one score for it")]
    Empty {
        /// Which input or class, e.g. "ID scores", "OOD scores", "positive samples".
        what: &'static str,
    },
    /// A score is NaN or infinite.
    #[error("{what}[{index}] = {value} is not finite; remove or replace NaN/inf scores before computing metrics")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// 0-based position in that input.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A target true-positive rate outside `(0, 1]`.
    #[error("target TPR {tpr} is outside (0, 1]; pass a fraction such as 0.95")]
    InvalidTpr {
        /// The value received.
        tpr: f64,
    },
    /// A threshold that is NaN.
    #[error("threshold {value} is NaN; pass a number (±inf is allowed)")]
    InvalidThreshold {
        /// The value received.
        value: f64,
    },
    /// Two inputs that must have one entry per sample have different lengths.
    #[error("{what}: lengths differ ({left} vs {right}); pass one entry per sample in both")]
    LengthMismatch {
        /// Which two inputs.
        what: &'static str,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },
    /// Labelings (clustering metrics) that cannot be compared: the one shape of an invalid
    /// input in every crate of the project.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The input's name (scikit-learn's spelling), e.g. `labels_true`.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// Points that do not form a curve [`crate::ood::auc`] can integrate.
    #[error("cannot integrate the curve: {reason}")]
    InvalidCurve {
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

impl MetricsError {
    /// Shorthand for [`MetricsError::InvalidSetting`].
    pub fn invalid_setting(name: &'static str, reason: impl Into<String>) -> Self {
        MetricsError::InvalidSetting {
            name,
            reason: reason.into(),
        }
    }
}
