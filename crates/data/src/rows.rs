//! Out-of-core arrays: a 2-D float array in a `.npy` or `.safetensors` file ([`RowFile`]) or a
//! 1-D `.npy` vector ([`VectorFile`]), read a block of rows at a time through a memory map and
//! never loaded whole.
//!
//! Opening checks everything that reading relies on: the header (the same strict npy parser as
//! [`read_npy_matrix`](crate::read_npy_matrix), the same safetensors validation as
//! [`read_safetensors`](crate::read_safetensors)), the shape and dtype, that the byte count of
//! the shape does not overflow, and that the file holds exactly the bytes the header promises.
//! After that a read only checks its row range, and no input makes it panic.
//!
//! The file is mapped, not copied: it must not be truncated or rewritten in place while it is
//! open (the operating system would then kill the process with `SIGBUS`, as for any mapped
//! file). Files written by this crate are replaced by rename, which is safe.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use npyz::TypeChar;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::error::DataError;
use crate::input::open_input;
use crate::matrix::{extension_lower, ElemType, Matrix};
use crate::npy::{float_layout, is_big_endian, parse_header, Header, MAGIC};
use crate::tensor_file::{describe, is_safetensors};

/// How to re-save a float matrix as safetensors so that [`RowFile`] can read it.
const SAFETENSORS_HINT: &str = "expected a 2-D F32 or F64 tensor (samples x features); save it \
     with safetensors.numpy.save_file({'x': x.astype('float32')}, path)";

/// Values decoded per step when scanning a long range (bounds the work done past the first hit).
const SCAN_BLOCK: usize = 1 << 16;

/// Whether a read gives the pages it decoded back to the kernel ([`RowFile::release`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pages {
    /// A pass's read: its pages are not read again in this pass.
    Release,
    /// A lookup of a few values (one value, a selected row): the pages are left mapped.
    Keep,
}

/// The memory map of an input file and what kind of file it is.
fn map(path: &Path) -> Result<(Mmap, File), DataError> {
    let (file, len) = open_input(path)?;
    if usize::try_from(len).is_err() {
        return Err(DataError::format(
            path,
            format!("is {len} bytes, more than this machine can address"),
        ));
    }
    // SAFETY: the map is read only and private to this process. Its bytes can change only if
    // another process rewrites the file in place while it is open, which the module docs rule
    // out (files written by this crate are replaced by rename, never rewritten).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
    Ok((map, file))
}

/// Whether `bytes` are (the start of) an npy file: the magic, or a prefix of it.
fn looks_like_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || (!bytes.is_empty() && MAGIC.starts_with(bytes))
}

/// A float32/float64 value converted to the element type a caller reads.
trait Out: bytemuck::Pod + Default {
    /// The stored element type read without conversion.
    const ELEM: ElemType;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    /// Whether a float64 value cannot be represented (finite, but beyond the type's range).
    fn overflows(v: f64) -> bool;
}

impl Out for f64 {
    const ELEM: ElemType = ElemType::F64;
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn overflows(_: f64) -> bool {
        false
    }
}

impl Out for f32 {
    const ELEM: ElemType = ElemType::F32;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn overflows(v: f64) -> bool {
        v.is_finite() && v.abs() > f64::from(f32::MAX)
    }
}

/// Decodes fixed-size scalars of either byte order.
fn scalars<'a, const N: usize, T: 'a>(
    bytes: &'a [u8],
    big: bool,
    from_le: fn([u8; N]) -> T,
    from_be: fn([u8; N]) -> T,
) -> impl Iterator<Item = T> + 'a {
    bytes.chunks_exact(N).map(move |c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        if big {
            from_be(a)
        } else {
            from_le(a)
        }
    })
}

/// A 2-D float array in a file (`.npy`, or one tensor of a `.safetensors` file), read a block
/// of rows at a time through a memory map, never loaded whole.
///
/// `RowFile` is `Send + Sync`: several threads may read it at once through `&self`.
#[derive(Debug)]
pub struct RowFile {
    map: Mmap,
    /// The file mapped, for reads of whole blocks stored as they are read ([`Self::raw`]):
    /// copied by the kernel, they never map the file's pages into this process.
    file: File,
    /// Offset of the first value in `map`.
    data_start: usize,
    rows: usize,
    cols: usize,
    elem: ElemType,
    /// Whether element `(i, j)` is at `j * rows + i` (else `i * cols + j`).
    fortran: bool,
    big_endian: bool,
    path: PathBuf,
}

impl RowFile {
    /// Opens `path`: an `.npy` file (recognised by its magic bytes) or a `.safetensors` file
    /// (recognised by [`is_safetensors`]). `tensor` names the safetensors tensor to read; `None`
    /// takes the only 2-D float tensor of the file. For an npy file `tensor` must be `None`.
    ///
    /// Checks, before returning: the array is 2-D and float32/float64 (npy `<f4`, `>f4`, `<f8`,
    /// `>f8` in C or Fortran order; safetensors `F32`/`F64`), `rows * cols * size` does not
    /// overflow, and the file holds exactly the bytes its header promises. The file is opened
    /// with [`open_input`] (regular files only). Zero rows or columns are accepted here.
    ///
    /// # Errors
    /// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be opened or mapped;
    /// [`DataError::Format`] for anything else: not a directory/FIFO/device, not npy or
    /// safetensors (CSV is not streamable), a corrupt or truncated file (naming the rows the
    /// header promises and the rows the file holds), another shape or dtype, a tensor that is
    /// missing or ambiguous (listing the tensors), or a tensor name given for an npy file.
    pub fn open(path: &Path, tensor: Option<&str>) -> Result<RowFile, DataError> {
        // The magic decides; the extension only picks the more precise message for a damaged
        // safetensors file.
        let (map, file) = map(path)?;
        let ext = extension_lower(path);
        if looks_like_npy(&map) {
            if let Some(name) = tensor {
                return Err(DataError::format(
                    path,
                    format!(
                        "is a .npy file, which holds a single array, but the tensor `{name}` \
                         was asked for; give no tensor name for a .npy file"
                    ),
                ));
            }
            return Self::open_npy(map, file, path);
        }
        if is_safetensors(&map) || ext.as_deref() == Some("safetensors") {
            return Self::open_safetensors(map, file, path, tensor);
        }
        let csv = if ext.as_deref() == Some("csv") {
            "This is a CSV file, which"
        } else {
            "A CSV file"
        };
        Err(DataError::format(
            path,
            format!(
                "is neither a .npy nor a .safetensors file; reading a file block by block needs \
                 one of those (save the array with numpy.save(path, x.astype('float32'))). \
                 {csv} is not streamable: read it with read_matrix (into memory), or convert \
                 it to .npy"
            ),
        ))
    }

    fn open_npy(map: Mmap, file: File, path: &Path) -> Result<RowFile, DataError> {
        let fail = |reason: String| DataError::format(path, reason);
        let header: Header = parse_header(&map).map_err(fail)?;
        let (rows, cols, elem) = float_layout(&header, false).map_err(fail)?;
        let what = format!("shape {} of {}", header.shape_str(), header.dtype_str());
        let file = Self::checked(
            (map, file),
            path,
            header.data_start,
            rows,
            cols,
            elem,
            header.fortran_order,
            is_big_endian(&header.ty),
            &what,
            "re-create it with numpy.save",
        )?;
        // As read_npy_matrix: bytes after the data mean a damaged or concatenated file.
        let extra = file.map.len() - file.data_start - file.value_bytes(file.elem_size());
        if extra > 0 {
            return Err(fail(format!(
                "the file has {extra} unexpected bytes after the data of {what} (trailing \
                 garbage or several arrays in one file); re-create it with numpy.save"
            )));
        }
        Ok(file)
    }

    fn open_safetensors(
        map: Mmap,
        file: File,
        path: &Path,
        tensor: Option<&str>,
    ) -> Result<RowFile, DataError> {
        let bad = |reason: String| {
            DataError::format(path, format!("not a valid safetensors file: {reason}"))
        };
        let Some(len_bytes) = map.get(..8) else {
            return Err(bad(format!(
                "{} bytes is too short for the 8-byte header length",
                map.len()
            )));
        };
        let mut n = [0u8; 8];
        n.copy_from_slice(len_bytes);
        let n = u64::from_le_bytes(n);
        let available = (map.len() - 8) as u64;
        if n > available {
            return Err(bad(format!(
                "the header length {n} exceeds the {available} bytes after it (truncated file?)"
            )));
        }
        // Validates the table: offsets in order and contiguous, every shape matching its byte
        // range without overflow, and the data ending exactly at the end of the file. When
        // only the last check fails, the table is used to say which tensor is cut and by how
        // much (the error is returned after the tensor's own check).
        let (header_len, meta, incomplete) = match SafeTensors::read_metadata(&map) {
            Ok((header_len, meta)) => (header_len, meta, None),
            Err(SafeTensorError::MetadataIncompleteBuffer) => {
                let header_len = n as usize; // n <= available, a usize
                let meta: Metadata = map
                    .get(8..8 + header_len)
                    .and_then(|h| serde_json::from_slice(h).ok())
                    .ok_or_else(|| bad(describe(SafeTensorError::MetadataIncompleteBuffer)))?;
                let need = meta
                    .tensors()
                    .values()
                    .map(|info| info.data_offsets.1)
                    .max()
                    .unwrap_or(0);
                let have = map.len() - 8 - header_len;
                let reason = if have < need {
                    format!(
                        "the header promises {need} data bytes but only {have} follow it; the \
                         file was probably cut off while copying or saving, re-create it"
                    )
                } else {
                    format!(
                        "{} unexpected bytes follow the data (trailing garbage or a damaged \
                         file); re-create it",
                        have - need
                    )
                };
                (header_len, meta, Some(bad(reason)))
            }
            Err(e) => return Err(bad(describe(e))),
        };
        let mut names: Vec<(String, &TensorInfo)> = meta.tensors().into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let describe = |info: &TensorInfo| format!("{:?} of shape {:?}", info.dtype, info.shape);
        let listing = if names.is_empty() {
            "none".to_string()
        } else {
            let all: Vec<String> = names
                .iter()
                .map(|(name, info)| format!("`{name}` ({})", describe(info)))
                .collect();
            all.join(", ")
        };
        let is_matrix = |info: &TensorInfo| {
            info.shape.len() == 2 && matches!(info.dtype, Dtype::F32 | Dtype::F64)
        };
        let (name, info) = if let Some(want) = tensor {
            match names.iter().find(|(name, _)| name == want) {
                Some((name, info)) => (name.clone(), *info),
                None => {
                    return Err(DataError::format(
                        path,
                        format!("has no tensor named `{want}`; its tensors are: {listing}"),
                    ))
                }
            }
        } else {
            let matrices: Vec<_> = names.iter().filter(|(_, info)| is_matrix(info)).collect();
            match matrices[..] {
                [(name, info)] => (name.clone(), *info),
                [] => {
                    return Err(DataError::format(
                        path,
                        format!(
                            "holds no 2-D F32 or F64 tensor (its tensors: {listing}); \
                             {SAFETENSORS_HINT}"
                        ),
                    ))
                }
                _ => {
                    let list: Vec<String> = matrices
                        .iter()
                        .map(|(name, _)| format!("`{name}`"))
                        .collect();
                    return Err(DataError::format(
                        path,
                        format!(
                            "holds several 2-D float tensors ({}); name the one to read",
                            list.join(", ")
                        ),
                    ));
                }
            }
        };
        let elem = match info.dtype {
            Dtype::F32 => ElemType::F32,
            Dtype::F64 => ElemType::F64,
            _ => {
                return Err(DataError::format(
                    path,
                    format!("tensor `{name}` is {}; {SAFETENSORS_HINT}", describe(info)),
                ))
            }
        };
        let (rows, cols) = match info.shape[..] {
            [rows, cols] => (rows, cols),
            _ => {
                return Err(DataError::format(
                    path,
                    format!(
                        "tensor `{name}` is {}, not 2-D; {SAFETENSORS_HINT} (reshape it to \
                         (samples, features) first)",
                        describe(info)
                    ),
                ))
            }
        };
        let (begin, end) = info.data_offsets;
        let data_start = 8usize
            .checked_add(header_len)
            .and_then(|s| s.checked_add(begin))
            .filter(|_| begin <= end)
            .ok_or_else(|| bad(format!("tensor `{name}` has data offsets out of range")))?;
        let what = format!("tensor `{name}` ({})", describe(info));
        let file = Self::checked(
            (map, file),
            path,
            data_start,
            rows,
            cols,
            elem,
            false,
            false,
            &what,
            "re-create it with safetensors",
        )?;
        if let Some(e) = incomplete {
            return Err(e);
        }
        // The tensor's byte range must be exactly its values (validated by read_metadata).
        if file.value_bytes(file.elem_size()) != end - begin {
            return Err(bad(format!(
                "tensor `{name}`'s data offsets do not match its shape and dtype"
            )));
        }
        Ok(file)
    }

    /// Builds the file after checking that `rows * cols` values of `elem` fit in the map after
    /// `data_start` (naming both row counts when they do not).
    #[allow(clippy::too_many_arguments)]
    fn checked(
        (map, file): (Mmap, File),
        path: &Path,
        data_start: usize,
        rows: usize,
        cols: usize,
        elem: ElemType,
        fortran: bool,
        big_endian: bool,
        what: &str,
        recreate: &str,
    ) -> Result<RowFile, DataError> {
        let size = elem_size(elem);
        let needed = rows
            .checked_mul(cols)
            .and_then(|c| c.checked_mul(size))
            .ok_or_else(|| {
                DataError::format(
                    path,
                    format!("corrupt header: {what} is too large to address; {recreate}"),
                )
            })?;
        let have = map.len().saturating_sub(data_start);
        if have < needed {
            // Rows that are complete in a C-order file (row size > 0 here, as needed > 0).
            let row_bytes = cols * size;
            let held = have / row_bytes;
            return Err(DataError::format(
                path,
                format!(
                    "the file is truncated: its header promises {rows} rows ({what}, {needed} \
                     data bytes) but the file holds only {have} data bytes, {held} complete \
                     rows; it was probably cut off while copying or saving, {recreate}"
                ),
            ));
        }
        Ok(RowFile {
            map,
            file,
            data_start,
            rows,
            cols,
            elem,
            fortran,
            big_endian,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of rows (samples).
    pub fn n_rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.cols
    }

    /// The element type stored in the file.
    pub fn elem(&self) -> ElemType {
        self.elem
    }

    /// Whether the file stores the array in Fortran (column-major) order.
    pub fn fortran_order(&self) -> bool {
        self.fortran
    }

    /// Bytes of the values in `elem_size`-byte floats: `rows * cols * elem_size`, saturating
    /// (for deciding whether the data fits in memory).
    pub fn value_bytes(&self, elem_size: usize) -> usize {
        self.rows
            .saturating_mul(self.cols)
            .saturating_mul(elem_size)
    }

    fn elem_size(&self) -> usize {
        elem_size(self.elem)
    }

    /// The error for rows `[start, start + len)` outside the file.
    fn check_range(&self, start: usize, len: usize) -> Result<(), DataError> {
        match start.checked_add(len) {
            Some(end) if end <= self.rows => Ok(()),
            _ => Err(DataError::format(
                &self.path,
                format!(
                    "rows {start}..{} were asked for, but the array has {} rows (a bug in the \
                     caller)",
                    start.saturating_add(len),
                    self.rows
                ),
            )),
        }
    }

    /// Copies the bytes of `out.len() / size` consecutive stored values from value index
    /// `first` (in storage order) into `out`, by the kernel (`pread`): the file's pages go
    /// from the page cache to `out` without being mapped into this process, so a pass neither
    /// faults them in nor has them to give back.
    fn raw(&self, first: usize, out: &mut [u8]) -> Result<(), DataError> {
        let bytes = self.stored(first, out.len() / self.elem_size())?;
        let offset = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
        self.file
            .read_exact_at(out, offset as u64)
            .map_err(|e| DataError::io(&self.path, e))
    }

    /// The bytes of `count` consecutive stored values from value index `first`.
    fn stored(&self, first: usize, count: usize) -> Result<&[u8], DataError> {
        let size = self.elem_size();
        first
            .checked_mul(size)
            .and_then(|b| b.checked_add(self.data_start))
            .and_then(|begin| Some((begin, begin.checked_add(count.checked_mul(size)?)?)))
            .and_then(|(begin, end)| self.map.get(begin..end))
            .ok_or_else(|| {
                DataError::format(
                    &self.path,
                    "a read past the end of the data was asked for (a bug in the caller)",
                )
            })
    }

    /// Decodes `count` consecutive stored values from value index `first` (in storage order),
    /// calling `put(k, value)` for the k-th. Returns the index of the first value that
    /// overflows `T`. A pass's read ([`Pages::Release`]) then gives the pages it touched back
    /// ([`Self::release`]); a lookup of a few values ([`Pages::Keep`]) leaves them.
    fn decode<T: Out>(
        &self,
        first: usize,
        count: usize,
        pages: Pages,
        mut put: impl FnMut(usize, T),
    ) -> Result<Option<usize>, DataError> {
        let bytes = self.stored(first, count)?;
        let mut overflow = None;
        match self.elem {
            ElemType::F32 => {
                let values = scalars(
                    bytes,
                    self.big_endian,
                    f32::from_le_bytes,
                    f32::from_be_bytes,
                );
                for (k, v) in values.enumerate() {
                    put(k, T::from_f32(v));
                }
            }
            ElemType::F64 => {
                let values = scalars(
                    bytes,
                    self.big_endian,
                    f64::from_le_bytes,
                    f64::from_be_bytes,
                );
                for (k, v) in values.enumerate() {
                    if overflow.is_none() && T::overflows(v) {
                        overflow = Some(k);
                    }
                    put(k, T::from_f64(v));
                }
            }
        }
        if pages == Pages::Release {
            self.release(bytes);
        }
        Ok(overflow)
    }

    /// Drops this process's references to the pages of `bytes` (a range of the map just
    /// decoded), so that a pass over a file larger than memory does not keep every page it
    /// read in the process's resident set (`RssFile` in `/proc/<pid>/status`): the pages stay
    /// in the kernel's page cache, and a later read maps them again from there or from the
    /// file. Every read of a pass is released, whatever its size: the data checks' scan
    /// blocks, a small budget's chunks and a Fortran-order file's column runs are each well
    /// under a megabyte, and together they are the whole file. The range is widened to whole
    /// pages, so the page shared with the next read is dropped too and faulted in again by
    /// it (one page per read). Failures are ignored (it is advice).
    fn release(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let offset = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
        // SAFETY: the map is read only and never written through, so dropping its pages loses
        // nothing: the next access faults them in again with the file's contents.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, offset, bytes.len())
        };
    }

    /// The error for a value at `(row, col)` that overflows float32.
    fn overflow_error(&self, row: usize, col: usize) -> DataError {
        let value = self.value_at(row, col).unwrap_or(f64::INFINITY);
        DataError::OverflowsF32 {
            path: self.path.clone(),
            row,
            col,
            value,
        }
    }

    /// The value at `(row, col)` as f64.
    fn value_at(&self, row: usize, col: usize) -> Result<f64, DataError> {
        let mut v = 0.0;
        self.decode::<f64>(self.index(row, col), 1, Pages::Keep, |_, x| v = x)?;
        Ok(v)
    }

    /// The storage index of `(row, col)` (both in range).
    fn index(&self, row: usize, col: usize) -> usize {
        if self.fortran {
            col * self.rows + row
        } else {
            row * self.cols + col
        }
    }

    /// `out` cleared and sized for `n` values, or an error if they do not fit in memory.
    fn prepare<T: Out>(&self, out: &mut Vec<T>, rows: usize) -> Result<(), DataError> {
        out.clear();
        let n = rows
            .checked_mul(self.cols)
            .ok_or_else(|| self.too_many(rows))?;
        out.try_reserve_exact(n).map_err(|_| self.too_many(rows))?;
        out.resize(n, T::default());
        Ok(())
    }

    fn too_many(&self, rows: usize) -> DataError {
        DataError::format(
            &self.path,
            format!(
                "{rows} rows of {} values do not fit in memory; read fewer rows at a time",
                self.cols
            ),
        )
    }

    fn read_rows<T: Out>(
        &self,
        start: usize,
        len: usize,
        out: &mut Vec<T>,
    ) -> Result<(), DataError> {
        self.check_range(start, len)?;
        self.prepare(out, len)?;
        let cols = self.cols;
        // The first overflowing value in row-major order, as (row within the block, col).
        let mut first: Option<(usize, usize)> = None;
        if !self.fortran && self.elem == T::ELEM && self.big_endian == cfg!(target_endian = "big") {
            // Stored as read: one copy of the bytes (no value can overflow its own type).
            self.raw(start * cols, bytemuck::cast_slice_mut(&mut out[..]))?;
        } else if !self.fortran {
            let read = |k, v| out[k] = v;
            if let Some(k) = self.decode::<T>(start * cols, len * cols, Pages::Release, read)? {
                first = Some((k / cols, k % cols));
            }
        } else {
            // Each column's rows are one contiguous run.
            for j in 0..cols {
                let put = |i, v| out[i * cols + j] = v;
                let hit = self.decode::<T>(j * self.rows + start, len, Pages::Release, put)?;
                if let Some(i) = hit {
                    if first.is_none_or(|(r, _)| i < r) {
                        first = Some((i, j));
                    }
                }
            }
        }
        match first {
            Some((i, j)) => {
                out.clear();
                Err(self.overflow_error(start + i, j))
            }
            None => Ok(()),
        }
    }

    fn select_rows<T: Out>(&self, idx: &[usize], out: &mut Vec<T>) -> Result<(), DataError> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.rows) {
            return Err(DataError::format(
                &self.path,
                format!(
                    "row {bad} was asked for, but the array has {} rows (a bug in the caller)",
                    self.rows
                ),
            ));
        }
        self.prepare(out, idx.len())?;
        let cols = self.cols;
        for (r, &i) in idx.iter().enumerate() {
            let row = &mut out[r * cols..(r + 1) * cols];
            let hit = if self.fortran {
                let mut hit = None;
                for (j, slot) in row.iter_mut().enumerate() {
                    if self
                        .decode::<T>(self.index(i, j), 1, Pages::Keep, |_, v| *slot = v)?
                        .is_some()
                        && hit.is_none()
                    {
                        hit = Some(j);
                    }
                }
                hit
            } else {
                self.decode::<T>(i * cols, cols, Pages::Keep, |k, v| row[k] = v)?
            };
            if let Some(j) = hit {
                out.clear();
                return Err(self.overflow_error(i, j));
            }
        }
        Ok(())
    }

    /// Rows `[start, start + len)`, row-major, as f64 into `out` (cleared first, then
    /// `len * cols` values). Fortran-order files are transposed block by block; big-endian
    /// values are swapped.
    ///
    /// # Errors
    /// [`DataError::Format`] when the rows are out of range or do not fit in memory.
    pub fn read_rows_f64(
        &self,
        start: usize,
        len: usize,
        out: &mut Vec<f64>,
    ) -> Result<(), DataError> {
        self.read_rows(start, len, out)
    }

    /// Rows `[start, start + len)`, row-major, as f32 into `out` (see [`Self::read_rows_f64`]).
    ///
    /// # Errors
    /// As [`Self::read_rows_f64`], and [`DataError::OverflowsF32`] naming the row and column of a
    /// float64 value that is finite but beyond float32's range (`out` is then empty).
    pub fn read_rows_f32(
        &self,
        start: usize,
        len: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        self.read_rows(start, len, out)
    }

    /// The rows at `idx`, in that order (repeats allowed), row-major as f64 into `out` (cleared
    /// first).
    ///
    /// # Errors
    /// [`DataError::Format`] for an index out of range.
    pub fn select_rows_f64(&self, idx: &[usize], out: &mut Vec<f64>) -> Result<(), DataError> {
        self.select_rows(idx, out)
    }

    /// The rows at `idx` as f32 (see [`Self::select_rows_f64`]).
    ///
    /// # Errors
    /// As [`Self::select_rows_f64`], and [`DataError::OverflowsF32`] as in
    /// [`Self::read_rows_f32`].
    pub fn select_rows_f32(&self, idx: &[usize], out: &mut Vec<f32>) -> Result<(), DataError> {
        self.select_rows(idx, out)
    }

    /// The first NaN or infinity in rows `[start, start + len)`, in row-major order, as
    /// `(row, col, value)` (0-based, `row` counted from the start of the file).
    ///
    /// # Errors
    /// [`DataError::Format`] when the rows are out of range.
    pub fn first_non_finite(
        &self,
        start: usize,
        len: usize,
    ) -> Result<Option<(usize, usize, f64)>, DataError> {
        self.check_range(start, len)?;
        let cols = self.cols;
        if cols == 0 || len == 0 {
            return Ok(None);
        }
        if !self.fortran {
            // Blocks of whole rows, so that the scan stops soon after the first hit.
            let block_rows = (SCAN_BLOCK / cols).max(1);
            let mut r = start;
            while r < start + len {
                let n = block_rows.min(start + len - r);
                let mut hit = None;
                self.decode::<f64>(r * cols, n * cols, Pages::Release, |k, v| {
                    if hit.is_none() && !v.is_finite() {
                        hit = Some((k, v));
                    }
                })?;
                if let Some((k, v)) = hit {
                    return Ok(Some((r + k / cols, k % cols, v)));
                }
                r += n;
            }
            return Ok(None);
        }
        // Fortran order: the earliest row over all columns (the lowest column on ties).
        let mut best: Option<(usize, usize, f64)> = None;
        for j in 0..cols {
            // Rows after the best hit so far cannot improve it.
            let end = best.map_or(start + len, |(r, _, _)| r + 1);
            let mut hit = None;
            self.decode::<f64>(
                j * self.rows + start,
                end - start,
                Pages::Release,
                |i, v| {
                    if hit.is_none() && !v.is_finite() {
                        hit = Some((start + i, v));
                    }
                },
            )?;
            if let Some((r, v)) = hit {
                if best.is_none_or(|(b, _, _)| r < b) {
                    best = Some((r, j, v));
                }
            }
        }
        Ok(best)
    }

    /// The whole array as a [`Matrix`] of the file's element type (what
    /// [`read_matrix`](crate::read_matrix) gives for an npy file), for small files.
    ///
    /// # Errors
    /// [`DataError::Format`] when the values do not fit in memory.
    pub fn to_matrix(&self) -> Result<Matrix, DataError> {
        let mut data = Vec::new();
        self.read_rows_f64(0, self.rows, &mut data)?;
        Matrix::new(self.rows, self.cols, data, self.elem)
    }
}

fn elem_size(elem: ElemType) -> usize {
    match elem {
        ElemType::F32 => 4,
        ElemType::F64 => 8,
    }
}

/// How to re-save a vector so that [`VectorFile`] can read it.
const VECTOR_HINT: &str = "expected a 1-D float or integer .npy vector of shape (n,) or (n, 1); \
     save it with numpy.save(path, w.ravel().astype('float64'))";

/// The scalar types a [`VectorFile`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Float,
    Int,
    Uint,
}

/// A 1-D float (or integer) `.npy` vector, e.g. one weight per sample, read a block at a time
/// through a memory map; `open` refuses other shapes.
///
/// Accepts float32/float64 and int8..int64/uint8..uint64 of either byte order, of shape `(n,)`
/// or `(n, 1)`. `VectorFile` is `Send + Sync`.
#[derive(Debug)]
pub struct VectorFile {
    map: Mmap,
    data_start: usize,
    len: usize,
    kind: Scalar,
    size: usize,
    big_endian: bool,
    path: PathBuf,
}

impl VectorFile {
    /// Opens the `.npy` vector at `path` (a regular file, see [`open_input`]), checking its
    /// header, shape, dtype and that the file holds exactly the bytes the header promises.
    ///
    /// # Errors
    /// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be opened or mapped;
    /// [`DataError::Format`] when it is not a valid npy file, is truncated (naming the values
    /// promised and held) or has trailing bytes, has another shape, or holds another dtype.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let (map, _) = map(path)?;
        let fail = |reason: String| DataError::format(path, reason);
        if !looks_like_npy(&map) {
            return Err(fail(format!(
                "is not a .npy file (it does not start with the \\x93NUMPY magic); {VECTOR_HINT}"
            )));
        }
        let header: Header = parse_header(&map).map_err(fail)?;
        let len = match header.shape[..] {
            [n] | [n, 1] => n,
            _ => {
                return Err(fail(format!(
                    "it holds an array of shape {}; {VECTOR_HINT}",
                    header.shape_str()
                )))
            }
        };
        let size = header.ty.size_field() as usize;
        let kind = match (header.ty.type_char(), size) {
            (TypeChar::Float, 4 | 8) => Scalar::Float,
            (TypeChar::Int, 1 | 2 | 4 | 8) => Scalar::Int,
            (TypeChar::Uint, 1 | 2 | 4 | 8) => Scalar::Uint,
            _ => {
                return Err(fail(format!(
                    "it holds {} values; {VECTOR_HINT}",
                    header.dtype_str()
                )))
            }
        };
        let what = format!("shape {} of {}", header.shape_str(), header.dtype_str());
        let needed = len.checked_mul(size).ok_or_else(|| {
            fail(format!(
                "corrupt .npy header: {what} is too large to address; re-create it with numpy.save"
            ))
        })?;
        let have = map.len() - header.data_start;
        if have < needed {
            return Err(fail(format!(
                "the file is truncated: its header promises {len} values ({what}, {needed} data \
                 bytes) but the file holds only {have} data bytes, {} values; it was probably \
                 cut off while copying or saving, re-create it with numpy.save",
                have / size
            )));
        }
        if have > needed {
            return Err(fail(format!(
                "the file has {} unexpected bytes after the data of {what} (trailing garbage \
                 or several arrays in one file); re-create it with numpy.save",
                have - needed
            )));
        }
        Ok(VectorFile {
            big_endian: is_big_endian(&header.ty),
            data_start: header.data_start,
            map,
            len,
            kind,
            size,
            path: path.to_path_buf(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector has no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values `[start, start + len)` as f64 into `out` (cleared first). Integers are converted
    /// to the nearest f64 (exact up to 2⁵³).
    ///
    /// # Errors
    /// [`DataError::Format`] when the range is outside the vector or does not fit in memory.
    pub fn read_f64(&self, start: usize, len: usize, out: &mut Vec<f64>) -> Result<(), DataError> {
        let bad = |reason: String| DataError::format(&self.path, reason);
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                bad(format!(
                    "values {start}..{} were asked for, but the vector has {} (a bug in the \
                     caller)",
                    start.saturating_add(len),
                    self.len
                ))
            })?;
        let bytes = self
            .map
            .get(self.data_start + start * self.size..self.data_start + end * self.size)
            .ok_or_else(|| bad("a read past the end of the data was asked for".to_string()))?;
        out.clear();
        out.try_reserve_exact(len).map_err(|_| {
            bad(format!(
                "{len} values do not fit in memory; read fewer at a time"
            ))
        })?;
        let big = self.big_endian;
        match (self.kind, self.size) {
            (Scalar::Float, 4) => out
                .extend(scalars(bytes, big, f32::from_le_bytes, f32::from_be_bytes).map(f64::from)),
            (Scalar::Float, _) => {
                out.extend(scalars(bytes, big, f64::from_le_bytes, f64::from_be_bytes))
            }
            (Scalar::Int, 1) => out.extend(bytes.iter().map(|&b| f64::from(b as i8))),
            (Scalar::Uint, 1) => out.extend(bytes.iter().map(|&b| f64::from(b))),
            (Scalar::Int, 2) => out
                .extend(scalars(bytes, big, i16::from_le_bytes, i16::from_be_bytes).map(f64::from)),
            (Scalar::Uint, 2) => out
                .extend(scalars(bytes, big, u16::from_le_bytes, u16::from_be_bytes).map(f64::from)),
            (Scalar::Int, 4) => out
                .extend(scalars(bytes, big, i32::from_le_bytes, i32::from_be_bytes).map(f64::from)),
            (Scalar::Uint, 4) => out
                .extend(scalars(bytes, big, u32::from_le_bytes, u32::from_be_bytes).map(f64::from)),
            (Scalar::Int, _) => out.extend(
                scalars(bytes, big, i64::from_le_bytes, i64::from_be_bytes).map(|v| v as f64),
            ),
            (Scalar::Uint, _) => out.extend(
                scalars(bytes, big, u64::from_le_bytes, u64::from_be_bytes).map(|v| v as f64),
            ),
        }
        Ok(())
    }
}
