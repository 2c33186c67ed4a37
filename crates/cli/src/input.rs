//! A command's data input: held on the device when it fits the memory budget, streamed from
//! its file a chunk at a time when it does not (`.npy` or one tensor of a `.safetensors` file,
//! through a memory map), and its sample weights.
//!
//! | input | held | streamed |
//! |---|---|---|
//! | `.csv` | always | never (no row index) |
//! | `.npy`, `.safetensors` | `N·D·8·2 ≤ --max-memory` (the f64 copy while loading and the tensor) | otherwise |

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mixburn_backend::backend::Precision;
use mixburn_data::{DataError, RowFile, VectorFile};
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{FileRows, FitData, GmmError, InIteration, Reshard, RowSource, ShardedRows};

use crate::{CliError, WorkerOptions};

/// The rows of a command's input.
// One per command, moved rather than copied: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
    /// On the device.
    Held(Tensor<2>),
    /// Read from the file a chunk at a time.
    Streamed(FileRows, PathBuf),
    /// Split over `--workers`, each holding its shard (the path of the input, if a file; the
    /// input itself with `--retry-shards`, to upload the shards again).
    Sharded(Arc<ShardedRows>, Option<PathBuf>, Option<Box<Input>>),
}

/// How many times a command reads its input, which decides whether a row file (`.npy`,
/// `.safetensors`) is held or streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Passes {
    /// One pass (scoring): the file is always read a chunk at a time, each chunk checked as
    /// it is read. Holding it would only add a copy of the input (two, through the f64 matrix
    /// it is checked in) and a pass over it before the first product.
    One,
    /// Several passes (fitting): held when twice its f64 values fit the budget, streamed
    /// otherwise.
    Many,
}

impl Input {
    /// Opens `path` for a command computing on `device` in `precision` under a budget of
    /// `max_memory` bytes that reads it `passes` times; `tensor` names the tensor of a
    /// `.safetensors` file.
    pub(crate) fn open(
        path: &Path,
        tensor: Option<&str>,
        device: &Device,
        precision: Precision,
        max_memory: usize,
        passes: Passes,
    ) -> Result<Self, CliError> {
        Self::open_checked(path, tensor, device, precision, max_memory, passes, true)
    }

    /// As [`open`](Self::open); with `check` false, a held input's non-finite values are kept
    /// (for commands with a policy for them: `anomaly score --nan-policy inf`).
    pub(crate) fn open_checked(
        path: &Path,
        tensor: Option<&str>,
        device: &Device,
        precision: Precision,
        max_memory: usize,
        passes: Passes,
        check: bool,
    ) -> Result<Self, CliError> {
        let held = |m: mixburn_data::Matrix| -> Result<Self, CliError> {
            if check {
                mixburn_data::check_finite(&m, path)?;
                if precision == Precision::F32 {
                    mixburn_data::check_fits_f32(&m, path)?;
                }
            }
            Ok(Input::Held(mixburn_backend::host::tensor_from_f64(
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
        if passes == Passes::Many && mixburn_gmm::budget::holds(file.value_bytes(8), max_memory) {
            return held(file.to_matrix()?);
        }
        // Each chunk is checked as it is read, unless the command has a policy for non-finite
        // values.
        let rows = FileRows::new(file, device, precision.dtype())?;
        let rows = if check { rows } else { rows.unchecked() };
        Ok(Input::Streamed(rows, path.to_path_buf()))
    }

    /// The rows, for the library.
    pub(crate) fn rows(&self) -> &dyn RowSource {
        match self {
            Input::Held(x) => x,
            Input::Streamed(f, _) => f,
            Input::Sharded(s, ..) => &**s,
        }
    }

    /// The rows split over the `--workers` (each shard uploaded once, a chunk at a time, never
    /// held whole by this process); the input itself without workers.
    pub(crate) fn shard(
        self,
        workers: &WorkerOptions,
        max_memory: usize,
    ) -> Result<Self, CliError> {
        self.shard_except(workers, &[], max_memory)
    }

    /// The rows split again over the workers but `lost` (after a worker failed, with
    /// `--retry-shards`); `None` when no worker is left or the input was not kept.
    pub(crate) fn reshard_without(
        self,
        workers: &WorkerOptions,
        lost: &[String],
        max_memory: usize,
    ) -> Result<Option<Self>, CliError> {
        let Input::Sharded(_, _, Some(original)) = self else {
            return Ok(None);
        };
        if workers.urls().iter().all(|u| lost.contains(u)) {
            return Ok(None);
        }
        Ok(Some(original.shard_except(workers, lost, max_memory)?))
    }

    fn shard_except(
        self,
        workers: &WorkerOptions,
        lost: &[String],
        max_memory: usize,
    ) -> Result<Self, CliError> {
        let Some(devices) = workers.connect_except(lost)? else {
            return Ok(self);
        };
        let weights: Option<Vec<f64>> = workers.worker_weights.as_ref().map(|w| {
            workers
                .urls()
                .iter()
                .zip(w)
                .filter(|(u, _)| !lost.contains(u))
                .map(|(_, w)| *w)
                .collect()
        });
        let path = match &self {
            Input::Streamed(_, p) => Some(p.clone()),
            _ => None,
        };
        let sharded = ShardedRows::upload(
            self.rows(),
            &devices,
            weights.as_deref(),
            self.scan_rows(max_memory),
        )
        .map_err(|e| self.name_error(e))?
        .with_max_chunk_rows(workers.worker_chunk_rows);
        let sharded = Arc::new(sharded);
        let timeout = workers.worker_timeout.max(1);
        sharded.watch(Duration::from_secs(timeout), move |stall| {
            eprintln!("mixburn: error: {stall} (--worker-timeout {timeout}); {WORKER_HINT}");
            std::process::exit(1);
        });
        *ACTIVE_WORKERS.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&sharded);
        let keep = workers.retry_shards.then(|| Box::new(self));
        Ok(Input::Sharded(sharded, path, keep))
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
        self.rows()
            .chunk_ranges(chunk)
            .into_iter()
            .map(move |(start, len)| {
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
        mixburn_gmm::budget::scan_rows(r.dims()[1], r.dtype().size(), max_memory)
    }

    /// Whether the rows are read from the file chunk by chunk.
    pub(crate) fn is_streamed(&self) -> bool {
        matches!(self, Input::Streamed(..) | Input::Sharded(_, Some(_), _))
    }

    /// The workers' shards as JSON (`null` without workers).
    pub(crate) fn shards_json(&self) -> serde_json::Value {
        match self {
            Input::Sharded(s, ..) => serde_json::json!(s
                .layout()
                .into_iter()
                .map(|(w, start, rows)| serde_json::json!({"worker": w, "start": start, "rows": rows}))
                .collect::<Vec<_>>()),
            _ => serde_json::Value::Null,
        }
    }

    /// The rows with `weights`.
    pub(crate) fn data<'a>(&'a self, weights: Option<&'a [f64]>) -> FitData<'a> {
        FitData::new(self.rows()).with_sample_weight(weights)
    }

    /// A library error about the rows, with a non-finite value of a streamed file named as
    /// the reader names it for a held one.
    pub(crate) fn name_error(&self, e: GmmError) -> CliError {
        match (self, e) {
            (
                Input::Streamed(_, path) | Input::Sharded(_, Some(path), _),
                GmmError::NonFinite { row, col, .. },
            ) => DataError::NonFinite {
                path: path.clone(),
                row,
                col,
            }
            .into(),
            (_, e) => e.into(),
        }
    }
}

/// A fit's input, split again over the workers left when one fails (with `--retry-shards`;
/// without it, or without workers, there is nothing to split again).
pub(crate) struct Resharded<'a> {
    pub input: Input,
    pub weights: Option<&'a [f64]>,
    pub workers: &'a WorkerOptions,
    pub max_memory: usize,
}

impl Reshard for Resharded<'_> {
    type Error = CliError;
    fn data(&self) -> FitData<'_> {
        self.input.data(self.weights)
    }
    fn without(self, lost: &[String]) -> Result<Option<Self>, CliError> {
        let next = self
            .input
            .reshard_without(self.workers, lost, self.max_memory)?;
        Ok(next.map(|input| Resharded { input, ..self }))
    }
    fn name_error(&self, e: GmmError) -> CliError {
        self.input.name_error(e)
    }
}

/// The workers' rows of the running command, for naming a worker when a failure inside the
/// backend (a lost connection) surfaces as a panic.
/// What to do about a worker that failed or stopped answering.
const WORKER_HINT: &str = "check that it is running and reachable, or leave it out of --workers";

static ACTIVE_WORKERS: Mutex<Weak<ShardedRows>> = Mutex::new(Weak::new());

/// A one-line error for a panic during a command: a worker's failure when workers are in use
/// (naming the one most likely lost), an internal error otherwise.
pub fn describe_panic(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no message".into());
    let workers = ACTIVE_WORKERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upgrade();
    match workers {
        Some(rows) => {
            let it = mixburn_gmm::progress::current_iteration();
            format!(
                "worker {} failed{}: {msg}; {WORKER_HINT}",
                rows.stalled_worker(),
                InIteration((it > 0).then_some(it))
            )
        }
        None => format!("internal error: {msg}"),
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
        return Err(GmmError::invalid_setting(
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
