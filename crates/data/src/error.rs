//! The single error type of this crate.

use std::io;
use std::path::{Path, PathBuf};

use crate::idx::FASHION_MNIST_DIR;

/// Every way reading or writing data can fail.
///
/// Each variant names the file involved, and the messages of the
/// content-related variants say both what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or write (permissions, disk full,
    /// missing parent directory when writing, ...).
    #[error("cannot read/write {}: {source}", path.display())]
    Io {
        /// The file that was being read or written.
        path: PathBuf,
        /// The underlying operating-system error.
        #[source]
        source: io::Error,
    },

    /// The file to read does not exist.
    #[error("file not found: {}; check the path and the current directory", path.display())]
    NotFound {
        /// The missing file.
        path: PathBuf,
    },

    /// The file exists but its content is corrupt, truncated or of a kind
    /// this crate does not support. `reason` says what is wrong and what to do.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        reason: String,
    },

    /// A CSV file could not be parsed; `line` is the 1-based line number.
    #[error("{}, line {line}: {reason}", path.display())]
    Csv {
        /// The offending file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What is wrong with that line, and how to fix it.
        reason: String,
    },

    /// A [`Matrix`](crate::Matrix) whose shape does not match its number of values.
    #[error(
        "matrix shape ({rows}, {cols}) does not match its {len} values; \
         rows * cols must equal the number of values"
    )]
    Shape {
        /// Number of rows claimed.
        rows: usize,
        /// Number of columns claimed.
        cols: usize,
        /// Number of values actually present.
        len: usize,
    },

    /// The file extension does not name a supported matrix format.
    #[error("unsupported file extension for {}: use .npy or .csv", path.display())]
    UnsupportedExtension {
        /// The file with the unsupported extension.
        path: PathBuf,
    },

    /// The data contains NaN or an infinity; `row` and `col` (0-based) locate
    /// the first one in row-major order.
    #[error(
        "{}: non-finite value (NaN or infinity) at row {row}, column {col} (0-based); \
         remove or impute such values before using this data",
        path.display()
    )]
    NonFinite {
        /// The file the matrix came from.
        path: PathBuf,
        /// 0-based row of the first non-finite value.
        row: usize,
        /// 0-based column of the first non-finite value.
        col: usize,
    },

    /// A finite value too large in magnitude for the single precision it is computed in.
    #[error(
        "{}: the value {value:e} at row {row}, column {col} (0-based) is finite but beyond \
         float32's range (±3.4e38); compute in float64 (--dtype f64) or rescale the data",
        path.display()
    )]
    OverflowsF32 {
        /// The file the matrix came from.
        path: PathBuf,
        /// 0-based row.
        row: usize,
        /// 0-based column.
        col: usize,
        /// The value.
        value: f64,
    },

    /// A file of an MNIST-format dataset directory is missing (neither the
    /// plain nor the `.gz` file exists).
    #[error(
        "dataset file {} not found (nor {}.gz); install Fashion-MNIST with \
         `apt-get install dataset-fashion-mnist` (it goes to {FASHION_MNIST_DIR}) \
         or pass a directory that holds the MNIST-format IDX files",
        path.display(),
        path.display()
    )]
    DatasetMissing {
        /// The expected (uncompressed) file name in the dataset directory.
        path: PathBuf,
    },
}

impl DataError {
    /// Wraps an I/O error about `path`, turning "not found" into [`DataError::NotFound`].
    pub fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// A [`DataError::Format`] about `path`.
    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Reads a whole regular file, mapping a missing file to [`DataError::NotFound`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    crate::input::read_input(path)
}
