//! Where the rows of a pass come from: a tensor already on the device, or a file read a block
//! of rows at a time through a memory map (out of core), with optional per-row sample weights.
//!
//! | source | rows `[start, start + len)` | memory |
//! |---|---|---|
//! | `Tensor<2>` `[N, D]` | a slice of the tensor | the whole data on the device |
//! | [`FileRows`] (`.npy`, `.safetensors`) | read from the map, converted, uploaded | one chunk |
//!
//! Every pass of a fit (the centre, k-means++ seeding, Lloyd, the E-step and its statistics,
//! scoring) asks its source for one chunk at a time, so the same code fits resident and
//! streamed data, and a streamed fit equals the in-memory one with the same seed. Sample
//! weights `w_n ≥ 0` multiply each row's responsibilities and log-likelihood; integer weights
//! give the fit of the rows repeated that many times.

use burn::tensor::kind::Basic;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};
use mixburn_data::RowFile;

use crate::error::{GmmError, Result};
use crate::pass::Pass;
use mixburn_backend::host::{chunks, int_tensor, tensor_from_f64, to_f64, to_i64};

/// Rows of an `[N, D]` float matrix, readable a block at a time from several threads.
pub trait RowSource: Sync {
    /// `[N, D]`.
    fn dims(&self) -> [usize; 2];
    /// The device the rows are uploaded to.
    fn device(&self) -> Device;
    /// The dtype of the uploaded rows.
    fn dtype(&self) -> DType;
    /// Rows `[start, start + len)`, `[len, D]` on [`device`](Self::device).
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>>;
    /// Rows `idx`, in that order, `[idx.len(), D]`.
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>>;
    /// The whole data, when it is one tensor on the device.
    fn resident(&self) -> Option<&Tensor<2>> {
        None
    }
    /// The device holding row `row` (every row is on [`device`](Self::device) unless the rows
    /// are sharded over several devices, [`crate::ShardedRows`]).
    fn device_of(&self, _row: usize) -> Device {
        self.device()
    }
    /// Row ranges `[start, start + len)` of at most `chunk` rows covering `0..N` in order, each
    /// on one device.
    fn chunk_ranges(&self, chunk: usize) -> Vec<(usize, usize)> {
        chunks(self.dims()[0], chunk).collect()
    }
    /// The shards as `(device, first row, rows)`: one, on [`device`](Self::device), unless
    /// sharded.
    fn shards(&self) -> Vec<(Device, usize, usize)> {
        vec![(self.device(), 0, self.dims()[0])]
    }
    /// Rows `[start, start + len)` created on `device` (uploading a shard).
    fn rows_on(&self, start: usize, len: usize, device: &Device) -> Result<Tensor<2>> {
        Ok(on_device(&self.rows(start, len)?, device))
    }
    /// Rows per chunk where the budget allows more ([`crate::budget::MAX_CHUNK_ROWS`]; larger
    /// for rows on remote workers).
    fn max_chunk_rows(&self) -> usize {
        crate::budget::MAX_CHUNK_ROWS
    }
    /// A pass has finished with the chunks of the device of row `row` (for a watchdog).
    fn finished(&self, _row: usize) {}
    /// A name for the device of row `row` in error messages (a worker's address).
    fn describe(&self, _row: usize) -> String {
        format!("{:?}", self.device())
    }
    /// Whether every block this source gives is already checked finite as it is read
    /// ([`FileRows`]), so that a pass need not check it again.
    fn checked(&self) -> bool {
        false
    }
}

/// `t` on `device`: itself when it is already there, else a copy moved there.
pub fn on_device<const D: usize, K: Basic>(t: &Tensor<D, K>, device: &Device) -> Tensor<D, K> {
    if &t.device() == device {
        t.clone()
    } else {
        t.clone().to_device(device)
    }
}

/// A value a pass moves to the devices that hold its rows: a tensor, or a model's E-step
/// operand ([`crate::estep::Operand`]).
pub trait Movable: Clone {
    /// The device it is on.
    fn home(&self) -> Device;
    /// A copy on `device`.
    fn moved_to(&self, device: &Device) -> Self;
}

impl<const D: usize, K: Basic> Movable for Tensor<D, K> {
    fn home(&self) -> Device {
        self.device()
    }
    fn moved_to(&self, device: &Device) -> Self {
        self.clone().to_device(device)
    }
}

/// A parameter of a pass (a centre, centres, a shift, a model's operand) with a copy on each
/// device that asked for it, so that rows sharded over several devices each get it once per
/// pass, not once per chunk.
#[derive(Debug)]
pub struct PerDevice<T: Movable> {
    base: T,
    home: Device,
    copies: std::sync::Mutex<Vec<(Device, T)>>,
}

impl<T: Movable> PerDevice<T> {
    /// `base` (on the client).
    pub fn new(base: T) -> Self {
        Self {
            home: base.home(),
            base,
            copies: std::sync::Mutex::new(vec![]),
        }
    }

    /// The value on the client.
    pub fn base(&self) -> &T {
        &self.base
    }

    /// The value on `device`.
    pub fn on(&self, device: &Device) -> T {
        if &self.home == device {
            return self.base.clone();
        }
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = copies.iter().find(|(d, _)| d == device) {
            return t.clone();
        }
        let t = self.base.moved_to(device);
        copies.push((device.clone(), t.clone()));
        t
    }
}

impl<T: Movable> Clone for PerDevice<T> {
    fn clone(&self) -> Self {
        Self::new(self.base.clone())
    }
}

impl RowSource for Tensor<2> {
    fn dims(&self) -> [usize; 2] {
        Tensor::dims(self)
    }
    fn device(&self) -> Device {
        Tensor::device(self)
    }
    fn dtype(&self) -> DType {
        Tensor::dtype(self)
    }
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        let d = Tensor::dims(self)[1];
        Ok(self.clone().slice([start..start + len, 0..d]))
    }
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        Ok(select_rows(self, idx))
    }
    fn resident(&self) -> Option<&Tensor<2>> {
        Some(self)
    }
}

/// Rows `idx` of another source, in that order (a cross-validation fold of streamed data).
pub struct RowSubset<'a> {
    parent: &'a dyn RowSource,
    idx: Vec<usize>,
}

impl<'a> RowSubset<'a> {
    /// Rows `idx` (each `< N`) of `parent`.
    pub fn new(parent: &'a dyn RowSource, idx: Vec<usize>) -> Self {
        Self { parent, idx }
    }
}

impl RowSource for RowSubset<'_> {
    fn dims(&self) -> [usize; 2] {
        [self.idx.len(), self.parent.dims()[1]]
    }
    fn device(&self) -> Device {
        self.parent.device()
    }
    fn dtype(&self) -> DType {
        self.parent.dtype()
    }
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        self.parent.select(&self.idx[start..start + len])
    }
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        let idx: Vec<usize> = idx.iter().map(|&i| self.idx[i]).collect();
        self.parent.select(&idx)
    }
}

/// Rows `idx` of a resident tensor `x`, in that order, as a tensor on `x`'s device.
pub fn select_rows(x: &Tensor<2>, idx: &[usize]) -> Tensor<2> {
    let i = int_tensor(
        idx.iter().map(|&i| i as i64).collect(),
        [idx.len()],
        &Tensor::device(x),
    );
    x.clone().select(0, i)
}

/// A float matrix in a file ([`RowFile`]: `.npy` in C or Fortran order, or one tensor of a
/// `.safetensors` file), uploaded a block of rows at a time to `device` in `dtype`.
///
/// Every block read is checked finite on the host as it is decoded (an error names the first
/// NaN or infinity by row and column), so a pass over it needs no check of its own
/// ([`RowSource::checked`]); [`unchecked`](Self::unchecked) keeps non-finite values for
/// callers with a policy for them.
pub struct FileRows {
    file: RowFile,
    device: Device,
    dtype: DType,
    check: bool,
}

impl FileRows {
    /// Rows of `file` on `device` in `dtype` (f32 or f64).
    pub fn new(file: RowFile, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(GmmError::invalid_setting(
                "dtype",
                format!("rows are read as f32 or f64, not {dtype:?}"),
            ));
        }
        Ok(Self {
            file,
            device: device.clone(),
            dtype,
            check: true,
        })
    }

    /// The same rows, read without the finite check (NaN and infinities are kept).
    pub fn unchecked(self) -> Self {
        Self {
            check: false,
            ..self
        }
    }

    /// The file.
    pub fn file(&self) -> &RowFile {
        &self.file
    }

    /// The rows that `f64s` or `f32s` (the reader of this source's dtype) reads from the
    /// file, as a tensor on `device`; `row_of(i)` is the file row of the i-th one (for the
    /// error naming a non-finite value).
    fn upload(
        &self,
        device: &Device,
        f64s: impl FnOnce(&mut Vec<f64>) -> std::result::Result<(), mixburn_data::DataError>,
        f32s: impl FnOnce(&mut Vec<f32>) -> std::result::Result<(), mixburn_data::DataError>,
        row_of: impl Fn(usize) -> usize,
    ) -> Result<Tensor<2>> {
        let d = self.file.n_cols();
        let data = if self.dtype == DType::F64 {
            let mut v = Vec::new();
            f64s(&mut v)?;
            self.check_values(mixburn_data::first_non_finite_in_f64, &v, d, row_of)?;
            let n = v.len() / d.max(1);
            TensorData::new(v, Shape::from([n, d]))
        } else {
            let mut v = Vec::new();
            f32s(&mut v)?;
            self.check_values(mixburn_data::first_non_finite_in_f32, &v, d, row_of)?;
            let n = v.len() / d.max(1);
            TensorData::new(v, Shape::from([n, d]))
        };
        Ok(Tensor::from_data(data, (device, self.dtype)))
    }

    /// Rows of `d` values are finite (when checked: `first` finds the first bad one), or the
    /// error naming the first bad one.
    fn check_values<T: Copy + Into<f64>>(
        &self,
        first: fn(&[T]) -> Option<usize>,
        values: &[T],
        d: usize,
        row_of: impl Fn(usize) -> usize,
    ) -> Result<()> {
        match (self.check).then(|| first(values)).flatten() {
            Some(i) => Err(GmmError::NonFinite {
                row: row_of(i / d.max(1)),
                col: i % d.max(1),
                value: values[i].into(),
            }),
            None => Ok(()),
        }
    }
}

impl RowSource for FileRows {
    fn dims(&self) -> [usize; 2] {
        [self.file.n_rows(), self.file.n_cols()]
    }
    fn device(&self) -> Device {
        self.device.clone()
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
        self.rows_on(start, len, &self.device)
    }
    fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
        self.upload(
            &self.device,
            |v| self.file.select_rows_f64(idx, v),
            |v| self.file.select_rows_f32(idx, v),
            |i| idx[i],
        )
    }
    fn rows_on(&self, start: usize, len: usize, device: &Device) -> Result<Tensor<2>> {
        self.upload(
            device,
            |v| self.file.read_rows_f64(start, len, v),
            |v| self.file.read_rows_f32(start, len, v),
            |i| start + i,
        )
    }
    fn checked(&self) -> bool {
        self.check
    }
}

/// The rows of a fit or a score, and their sample weights.
#[derive(Clone, Copy)]
pub struct FitData<'a> {
    /// The rows.
    pub rows: &'a dyn RowSource,
    /// One weight `w_n ≥ 0` per row (`None`: all 1).
    pub sample_weight: Option<&'a [f64]>,
}

impl<'a, R: RowSource> From<&'a R> for FitData<'a> {
    fn from(x: &'a R) -> Self {
        Self::new(x)
    }
}

impl<'a> FitData<'a> {
    /// Rows with unit weights.
    pub fn new(rows: &'a dyn RowSource) -> Self {
        Self {
            rows,
            sample_weight: None,
        }
    }

    /// The same rows with sample weights (checked by [`prepare`](Self::prepare)).
    pub fn with_sample_weight(mut self, w: Option<&'a [f64]>) -> Self {
        self.sample_weight = w;
        self
    }

    /// Checks the data once for a fit, in one pass over the rows in chunks that fit
    /// `max_memory_bytes` ([`crate::budget::scan_rows`]): at least one row and one column, every value finite
    /// (the first bad one named), the weights (length N, finite, `≥ 0`, not all zero); and the
    /// (weighted) data mean, the centre every moment of the fit accumulates around (not the
    /// origin, so that f32 moments of data far from it do not cancel).
    pub fn prepare(&self, max_memory_bytes: usize) -> Result<Prepared> {
        let [n, d] = self.rows.dims();
        let chunk_rows = crate::budget::scan_rows(d, self.rows.dtype().size(), max_memory_bytes);
        if n == 0 || d == 0 {
            return Err(GmmError::EmptyInput {
                n_samples: n,
                n_features: d,
            });
        }
        let total_weight = match self.sample_weight {
            Some(w) => check_sample_weight(w, n)?,
            None => n as f64,
        };
        let dtype = self.rows.dtype();
        let centre = match (self.rows.resident(), self.sample_weight) {
            (Some(x), None) => {
                // One reduction over the resident tensor (the path of an in-memory fit).
                check_finite(x, 0)?;
                to_f64(x.clone().mean_dim(0))?
            }
            _ => {
                let sums = Pass::new(self.rows, chunk_rows)
                    .labelled("reading")
                    .reduce(
                        |start, len| -> Result<_> {
                            let x = self.rows.rows(start, len)?;
                            check_finite(&x, start)?;
                            let sum = match self.sample_weight {
                                Some(w) => {
                                    let w = tensor_from_f64(
                                        w[start..start + len].to_vec(),
                                        [len, 1],
                                        &x.device(),
                                        dtype,
                                    );
                                    (x * w).sum_dim(0)
                                }
                                None => x.sum_dim(0),
                            };
                            Ok(to_f64(sum)?)
                        },
                        |a, b| Ok(crate::pass::add_sums(a, b)),
                    )?;
                let acc = sums.unwrap_or_else(|| vec![0.0; d]);
                acc.into_iter().map(|s| s / total_weight).collect()
            }
        };
        Ok(Prepared {
            n,
            d,
            total_weight,
            centre,
        })
    }
}

/// What [`FitData::prepare`] found.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Rows N.
    pub n: usize,
    /// Features D.
    pub d: usize,
    /// `Σ_n w_n` (N without weights).
    pub total_weight: f64,
    /// The (weighted) data mean, length D.
    pub centre: Vec<f64>,
}

/// Checks sample weights against N rows: length, finite, `≥ 0`, not all zero. Returns their sum.
pub fn check_sample_weight(w: &[f64], n: usize) -> Result<f64> {
    if w.len() != n {
        return Err(GmmError::invalid_setting(
            "sample_weight",
            format!(
                "has {} values for {n} rows: give one weight per row",
                w.len()
            ),
        ));
    }
    if let Some(i) = w.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(GmmError::invalid_setting(
            "sample_weight",
            format!("weight {i} is {}: weights must be finite and >= 0", w[i]),
        ));
    }
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return Err(GmmError::invalid_setting(
            "sample_weight",
            format!("the weights sum to {total}: at least one row needs a positive weight"),
        ));
    }
    Ok(total)
}

/// Checks every value of rows `x` (the first at row `offset`) is finite, naming the first bad one.
pub fn check_finite(x: &Tensor<2>, offset: usize) -> Result<()> {
    let d = x.dims()[1];
    let bad = to_i64(x.clone().is_finite().bool_not().any().int())?;
    if bad.first().copied().unwrap_or(0) != 0 {
        let values = to_f64(x.clone())?;
        let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(GmmError::NonFinite {
            row: offset + i / d,
            col: i % d,
            value: values[i],
        });
    }
    Ok(())
}
