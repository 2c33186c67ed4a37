//! Errors of the OOD detectors and their files.

use std::path::PathBuf;

/// Errors of fitting, scoring, saving and evaluating OOD detectors.
#[derive(Debug, thiserror::Error)]
pub enum OodError {
    /// The mixture core failed (numerics, backend, shapes).
    #[error(transparent)]
    Gmm(#[from] mixburn_gmm::GmmError),
    /// Features and labels disagree in length.
    #[error("features have {features} rows but labels have {labels}; pass exactly one label per feature row")]
    LengthMismatch {
        /// Feature rows.
        features: usize,
        /// Labels.
        labels: usize,
    },
    /// No rows to fit or score.
    #[error("{what} is empty; pass at least one row")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// Labels are not the integers `0..C−1` with every class present.
    #[error("labels must be the integers 0..C-1 with every class present: {reason}; relabel the classes to consecutive integers from 0")]
    BadLabels {
        /// What is wrong.
        reason: String,
    },
    /// A class with fewer than two samples has no within-class spread.
    #[error("class {class} has {count} sample(s); every class needs at least 2 to estimate its mean and spread — add samples or drop the class")]
    TooFewInClass {
        /// The class.
        class: usize,
        /// Its samples.
        count: usize,
    },
    /// NaN or infinity in the features.
    #[error("the features contain a non-finite value ({value}) at row {row}, column {col}; remove or impute NaN/inf features first")]
    NonFinite {
        /// 0-based row.
        row: usize,
        /// 0-based column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// Features of another width than the detector was fitted on.
    #[error("the detector was fitted on {expected}-dimensional features but got {got} columns; score features from the same layer the detector was fitted on")]
    WidthMismatch {
        /// Fitted width.
        expected: usize,
        /// Received width.
        got: usize,
    },
    /// An invalid setting (the project's one shape of this error, `GmmError::InvalidSetting`).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A detector file that cannot be used.
    #[error("{}: not a valid mixburn OOD detector file ({reason}); refit with `mixburn ood fit`", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Data(#[from] mixburn_data::DataError),
}

mixburn_gmm::backend_errors_through_gmm!(OodError);

/// Result with [`OodError`].
pub type Result<T> = std::result::Result<T, OodError>;
