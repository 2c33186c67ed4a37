//! Errors of the anomaly detector, its settings and its files.

use std::path::PathBuf;

/// Errors of fitting, thresholding, scoring, saving and loading an anomaly detector.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    /// The mixture core failed (fit, numerics, backend, model validation).
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
    /// An invalid setting (the project's one shape of this error, `GmmError::InvalidSetting`).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A row to score holds NaN or an infinity.
    #[error("row {row} has a non-finite value ({value}) in column {col}; remove or impute such rows, or ask for them to be scored as +inf (NanPolicy::Inf, `--nan-policy inf`)")]
    NonFinite {
        /// 0-based row.
        row: usize,
        /// 0-based column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// Data of another width than the detector was fitted on.
    #[error("the detector was fitted on {expected} features (columns) but the data has {got}; score data with the columns the detector was fitted on")]
    WidthMismatch {
        /// Fitted width.
        expected: usize,
        /// Received width.
        got: usize,
    },
    /// No rows.
    #[error("{what} has no rows; pass at least one")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// A detector file that cannot be used.
    #[error("{}: not a valid mixburn anomaly detector ({reason}); fit one with `mixburn anomaly fit`", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

mixburn_gmm::backend_errors_through_gmm!(AnomalyError);

/// Result with [`AnomalyError`].
pub type Result<T> = std::result::Result<T, AnomalyError>;
