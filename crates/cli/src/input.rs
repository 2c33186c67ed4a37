//! A command's data input: held on the device when it fits the memory budget, streamed from
//! its file a chunk at a time when it does not (`.npy` or one tensor of a `.safetensors` file,
//! through a memory map), and its sample weights.
//!
//! | input | held | streamed |
//! |---|---|---|
//! | `.csv` | always | never (no row index) |
//! | `.npy`, `.safetensors` | `N·D·8·2 ≤ --max-memory` (the f64 copy while loading and the tensor) | otherwise |

use std::path::{Path, PathBuf};

use mixburn_data::{DataError, RowFile, VectorFile};
use mixburn_gmm::backend::Precision;
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{FileRows, FitData, GmmError, RowSource};

use crate::CliError;

/// The rows of a command's input.
// One per command, moved rather than copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
    /// On the device.
    Held(Tensor<2>),
    /// Read from the file a chunk at a time.
    Streamed(FileRows, PathBuf),
}

impl Input {
    /// Opens `path` for a command computing on `device` in `precision` under a budget of
    /// `max_memory` bytes; `tensor` names the tensor of a `.safetensors` file.
    pub(crate) fn open(
        path: &Path,
        tensor: Option<&str>,
        device: &Device,
        precision: Precision,
        max_memory: usize,
    ) -> Result<Self, CliError> {
        Self::open_checked(path, tensor, device, precision, max_memory, true)
    }

    /// As [`open`](Self::open); with `check` false, a held input's non-finite values are kept
    /// (for commands with a policy for them: `anomaly score --nan-policy inf`).
    pub(crate) fn open_checked(
        path: &Path,
        tensor: Option<&str>,
        device: &Device,
        precision: Precision,
        max_memory: usize,
        check: bool,
    ) -> Result<Self, CliError> {
        let held = |m: mixburn_data::Matrix| -> Result<Self, CliError> {
            if check {
                mixburn_data::check_finite(&m, path)?;
                if precision == Precision::F32 {
                    mixburn_data::check_fits_f32(&m, path)?;
                }
            }
            Ok(Input::Held(mixburn_gmm::host::tensor_from_f64(
                m.data,
                [m.rows, m.cols],
                device,
                precision.dtype(),
            )))
        };
        if !is_row_file(path)? {
            if tensor.is_some() {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    reason: "--tensor names a tensor of a .safetensors input; this file is not one"
                        .into(),
                }
                .into());
            }
            return held(mixburn_data::read_matrix(path)?);
        }
        let file = RowFile::open(path, tensor)?;
        if file.value_bytes(8).saturating_mul(2) <= max_memory {
            return held(file.to_matrix()?);
        }
        Ok(Input::Streamed(
            FileRows::new(file, device, precision.dtype())?,
            path.to_path_buf(),
        ))
    }

    /// The rows, for the library.
    pub(crate) fn rows(&self) -> &dyn RowSource {
        match self {
            Input::Held(x) => x,
            Input::Streamed(f, _) => f,
        }
    }

    /// Rows N.
    pub(crate) fn n_rows(&self) -> usize {
        self.rows().dims()[0]
    }

    /// `(start, rows)` of every chunk of at most `chunk` rows, read on demand (a held input's
    /// chunks are slices of its tensor).
    pub(crate) fn chunks(
        &self,
        chunk: usize,
    ) -> impl Iterator<Item = Result<(usize, Tensor<2>), CliError>> + '_ {
        mixburn_gmm::host::chunks(self.n_rows(), chunk).map(move |(start, len)| {
            Ok((
                start,
                self.rows()
                    .rows(start, len)
                    .map_err(|e| self.name_error(e))?,
            ))
        })
    }

    /// Rows per chunk of a pass that reads the rows once under `max_memory` bytes.
    pub(crate) fn scan_rows(&self, max_memory: usize) -> usize {
        let r = self.rows();
        mixburn_gmm::source::scan_rows(r.dims()[1], r.dtype().size(), max_memory)
    }

    /// Whether the rows are read from the file chunk by chunk.
    pub(crate) fn is_streamed(&self) -> bool {
        matches!(self, Input::Streamed(..))
    }

    /// The rows with `weights`.
    pub(crate) fn data<'a>(&'a self, weights: Option<&'a [f64]>) -> FitData<'a> {
        FitData::new(self.rows()).with_sample_weight(weights)
    }

    /// A library error about the rows, with a non-finite value of a streamed file named as
    /// the reader names it for a held one.
    pub(crate) fn name_error(&self, e: GmmError) -> CliError {
        match (self, e) {
            (Input::Streamed(_, path), GmmError::NonFinite { row, col, .. }) => {
                DataError::NonFinite {
                    path: path.clone(),
                    row,
                    col,
                }
                .into()
            }
            (_, e) => e.into(),
        }
    }
}

/// Whether `path` is an `.npy` or `.safetensors` file (by its first bytes), which can be
/// streamed; anything else is read whole (CSV).
fn is_row_file(path: &Path) -> Result<bool, CliError> {
    use std::io::Read;
    let (mut file, size) = mixburn_data::open_input(path)?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => {
                return Err(DataError::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
                .into())
            }
        }
    }
    let head = &head[..got];
    // safetensors: an 8-byte little-endian header length that fits in the file, then `{`.
    let safetensors = got >= 9
        && head[8] == b'{'
        && u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) <= size.saturating_sub(8);
    Ok(head.starts_with(b"\x93NUMPY") || safetensors)
}

/// Reads sample weights (a 1-D `.npy` of N floats or integers, or `(N, 1)`), one per row of
/// an input of `n` rows; their values are checked by the fit.
pub(crate) fn read_sample_weight(path: &Path, n: usize) -> Result<Vec<f64>, CliError> {
    let v = VectorFile::open(path)?;
    if v.len() != n {
        return Err(GmmError::config(
            "sample_weight",
            format!(
                "{} has {} weights for {n} rows: give one weight per row",
                path.display(),
                v.len()
            ),
        )
        .into());
    }
    let mut out = Vec::new();
    v.read_f64(0, n, &mut out)?;
    Ok(out)
}
