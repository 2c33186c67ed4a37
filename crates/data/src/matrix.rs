//! The in-memory 2-D array, and reading one from any supported file format.

use std::path::Path;

use crate::error::DataError;

/// Element type a matrix has (or will have) on disk.
///
/// Values are always held as `f64` in memory; this records whether the file
/// they came from stored `float32` or `float64`, and which one
/// [`write_matrix_npy`](crate::write_matrix_npy) writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit IEEE float (`numpy.float32`, npy descr `<f4`).
    F32,
    /// 64-bit IEEE float (`numpy.float64`, npy descr `<f8`).
    F64,
}

impl ElemType {
    /// The numpy name of this type: `"float32"` or `"float64"`.
    pub fn numpy_name(self) -> &'static str {
        match self {
            ElemType::F32 => "float32",
            ElemType::F64 => "float64",
        }
    }
}

/// Row-major 2-D array of f64 values with its on-disk element type.
///
/// Invariant (checked by [`Matrix::new`] and by the writers):
/// `data.len() == rows * cols`, and value `(i, j)` is `data[i * cols + j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows (samples).
    pub rows: usize,
    /// Number of columns (features).
    pub cols: usize,
    /// The values, row after row.
    pub data: Vec<f64>,
    /// Element type on disk.
    pub dtype: ElemType,
}

impl Matrix {
    /// Builds a matrix, checking that `data` holds exactly `rows * cols` values.
    ///
    /// # Errors
    /// [`DataError::Shape`] when the counts disagree (or `rows * cols` overflows).
    pub fn new(
        rows: usize,
        cols: usize,
        data: Vec<f64>,
        dtype: ElemType,
    ) -> Result<Self, DataError> {
        match rows.checked_mul(cols) {
            Some(n) if n == data.len() => Ok(Matrix {
                rows,
                cols,
                data,
                dtype,
            }),
            _ => Err(DataError::Shape {
                rows,
                cols,
                len: data.len(),
            }),
        }
    }

    /// Row `i` as a slice of `cols` values.
    ///
    /// # Panics
    /// If `i >= rows` (an index out of bounds is a programming error, not bad input).
    pub fn row(&self, i: usize) -> &[f64] {
        assert!(
            i < self.rows,
            "row index {i} out of bounds for a matrix with {} rows",
            self.rows
        );
        let start = i * self.cols;
        &self.data[start..start + self.cols]
    }

    /// Checks the `data.len() == rows * cols` invariant (the fields are public,
    /// so it may have been broken after construction).
    pub(crate) fn check_shape(&self) -> Result<(), DataError> {
        match self.rows.checked_mul(self.cols) {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(DataError::Shape {
                rows: self.rows,
                cols: self.cols,
                len: self.data.len(),
            }),
        }
    }
}

/// Lower-cased extension of `path`, if it has one.
pub(crate) fn extension_lower(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// Reads a 2-D float array, choosing the format by extension (case-insensitive).
///
/// * `.npy`: see [`read_npy_matrix`](crate::read_npy_matrix) — float32 or float64,
///   either byte order, C or Fortran order, exactly two dimensions.
/// * `.csv`: see [`read_csv_matrix`](crate::read_csv_matrix) — comma-separated
///   numbers with an optional header row.
///
/// NaN and infinities are returned as they are; use [`check_finite`] to reject them.
///
/// # Errors
/// [`DataError::UnsupportedExtension`] for any other extension, otherwise the
/// errors of the format-specific reader.
pub fn read_matrix(path: &Path) -> Result<Matrix, DataError> {
    match extension_lower(path).as_deref() {
        Some("npy") => crate::npy::read_npy_matrix(path),
        Some("csv") => crate::csv::read_csv_matrix(path),
        _ => Err(DataError::UnsupportedExtension {
            path: path.to_path_buf(),
        }),
    }
}

/// Checks that every value of `m` is finite; `path` names the source in the error.
///
/// # Errors
/// [`DataError::NonFinite`] locating (0-based row and column) the first NaN or
/// infinity in row-major order.
pub fn check_finite(m: &Matrix, path: &Path) -> Result<(), DataError> {
    match m.data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(k) => {
            // cols == 0 means no values at all, so this never falls back in practice.
            let row = k.checked_div(m.cols).unwrap_or(0);
            let col = k.checked_rem(m.cols).unwrap_or(0);
            Err(DataError::NonFinite {
                path: path.to_path_buf(),
                row,
                col,
            })
        }
    }
}

/// The index of the first NaN or infinity of `values`, if any (each chunk a streamed pass
/// reads is checked with this, [`first_non_finite_in_f64`] for f64).
pub fn first_non_finite_in_f32(values: &[f32]) -> Option<usize> {
    first_non_finite_in(values, |v: &f32| v.is_finite())
}

/// As [`first_non_finite_in_f32`] for f64 values.
pub fn first_non_finite_in_f64(values: &[f64]) -> Option<usize> {
    first_non_finite_in(values, |v: &f64| v.is_finite())
}

/// Blocks are tested without a branch per value (vectorised), and only a block holding a bad
/// value is searched. Generic, so instantiated here (in this crate's optimised build) by the
/// two functions above.
fn first_non_finite_in<T: Copy>(values: &[T], finite: impl Fn(&T) -> bool) -> Option<usize> {
    const BLOCK: usize = 1024;
    values.chunks(BLOCK).enumerate().find_map(|(b, block)| {
        let bad = block.iter().fold(false, |bad, v| bad | !finite(v));
        if bad {
            block.iter().position(|v| !finite(v)).map(|i| b * BLOCK + i)
        } else {
            None
        }
    })
}

/// Checks that every value of `m` (read from `path`) is within float32's finite range, for data
/// that will be computed in single precision: a finite float64 beyond ±3.4e38 would become an
/// infinity there.
///
/// # Errors
/// [`DataError::OverflowsF32`] locating (0-based row and column) the first such value.
pub fn check_fits_f32(m: &Matrix, path: &Path) -> Result<(), DataError> {
    match m.data.iter().position(|v| v.abs() > f32::MAX as f64) {
        None => Ok(()),
        Some(k) => Err(DataError::OverflowsF32 {
            path: path.to_path_buf(),
            row: k.checked_div(m.cols).unwrap_or(0),
            col: k.checked_rem(m.cols).unwrap_or(0),
            value: m.data[k],
        }),
    }
}
