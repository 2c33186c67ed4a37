//! Writing `.npy` files through the atomic writer: matrices, vectors, labels, and vectors
//! streamed a chunk at a time ([`VectorSink`]).

use std::io::{self, Write};
use std::path::Path;

use npyz::{DType, WriterBuilder};

use crate::atomic::write_atomic;
use crate::error::DataError;
use crate::matrix::{ElemType, Matrix};

/// A little-endian scalar dtype from a constant type string.
pub(super) fn le_dtype(descr: &str) -> DType {
    DType::Plain(descr.parse().expect("constant npy type strings are valid"))
}

/// Writes `values` as a C-order npy array of `shape` and type `descr`, atomically.
pub(super) fn write_npy<T: npyz::Serialize>(
    path: &Path,
    descr: &str,
    shape: &[u64],
    values: impl Iterator<Item = T>,
) -> Result<(), DataError> {
    let dtype = le_dtype(descr);
    write_atomic(path, |w| -> io::Result<()> {
        let mut writer = npyz::WriteOptions::<T>::new()
            .dtype(dtype)
            .shape(shape)
            .writer(w)
            .begin_nd()?;
        writer.extend(values)?;
        writer.finish()
    })
}

/// Writes a matrix as a C-order `.npy` array of shape `(rows, cols)`, as
/// little-endian float32 (`m.dtype == F32`, values rounded to f32) or float64,
/// atomically (see [`write_atomic`]).
///
/// # Errors
/// [`DataError::Shape`] when `m.data.len() != m.rows * m.cols`;
/// [`DataError::Io`] when the file cannot be written.
pub fn write_matrix_npy(path: &Path, m: &Matrix) -> Result<(), DataError> {
    m.check_shape()?;
    let shape = [m.rows as u64, m.cols as u64];
    match m.dtype {
        ElemType::F32 => write_npy(path, "<f4", &shape, m.data.iter().map(|&v| v as f32)),
        ElemType::F64 => write_npy(path, "<f8", &shape, m.data.iter().copied()),
    }
}

/// Writes a 1-D little-endian float64 `.npy` array (e.g. per-sample scores), atomically.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written.
pub fn write_vector_f64_npy(path: &Path, v: &[f64]) -> Result<(), DataError> {
    write_npy(path, "<f8", &[v.len() as u64], v.iter().copied())
}

/// Writes 1-D little-endian int64 labels as `.npy`, atomically.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written.
pub fn write_labels_npy(path: &Path, labels: &[i64]) -> Result<(), DataError> {
    write_npy(path, "<i8", &[labels.len() as u64], labels.iter().copied())
}

/// The element type of a vector written by [`write_vector_npy_streamed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorKind {
    /// Little-endian float64 (`'<f8'`, as [`write_vector_f64_npy`] writes).
    F64,
    /// Little-endian int64 (`'<i8'`, as [`write_labels_npy`] writes).
    I64,
}

impl VectorKind {
    fn descr(self) -> &'static str {
        match self {
            VectorKind::F64 => "<f8",
            VectorKind::I64 => "<i8",
        }
    }

    fn name(self) -> &'static str {
        match self {
            VectorKind::F64 => "float64",
            VectorKind::I64 => "int64",
        }
    }
}

/// The header `npyz` writes for a C-order 1-D array of `len` values of type `descr` (the same
/// bytes [`write_npy`] starts its file with).
pub(super) fn vector_header<T: npyz::Serialize>(descr: &str, len: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let writer = npyz::WriteOptions::<T>::new()
        .dtype(le_dtype(descr))
        .shape(&[len as u64])
        .writer(&mut out)
        .begin_nd()?;
    // The header is written by `begin_nd`; dropping the writer without values only fails its
    // item-count check, which `Drop` ignores (nothing more is written).
    drop(writer);
    Ok(out)
}

/// Where [`write_vector_npy_streamed`]'s `fill` pushes the values, block by block.
pub struct VectorSink<'a> {
    w: &'a mut dyn Write,
    path: &'a Path,
    kind: VectorKind,
    len: usize,
    written: usize,
    buf: Vec<u8>,
    /// The first error of a push, kept so that a `fill` that ignores it still fails the write.
    failed: Option<DataError>,
}

impl VectorSink<'_> {
    /// Values pushed so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Values still expected.
    pub fn remaining(&self) -> usize {
        self.len - self.written
    }

    fn push<T: Copy, const N: usize>(
        &mut self,
        kind: VectorKind,
        v: &[T],
        bytes: fn(T) -> [u8; N],
    ) -> Result<(), DataError> {
        if let Some(e) = &self.failed {
            return Err(DataError::format(
                self.path,
                format!("an earlier write of this file failed ({e})"),
            ));
        }
        let result = self.push_inner(kind, v, bytes);
        if let Err(e) = &result {
            // Keep a copy of the failure (io::Error is not Clone: keep its message).
            self.failed = Some(DataError::format(self.path, e.to_string()));
        }
        result
    }

    fn push_inner<T: Copy, const N: usize>(
        &mut self,
        kind: VectorKind,
        v: &[T],
        bytes: fn(T) -> [u8; N],
    ) -> Result<(), DataError> {
        if kind != self.kind {
            return Err(DataError::format(
                self.path,
                format!(
                    "{} values were pushed into a {} vector (a bug in the caller)",
                    kind.name(),
                    self.kind.name()
                ),
            ));
        }
        if v.len() > self.remaining() {
            return Err(DataError::format(
                self.path,
                format!(
                    "more values were produced than the {} the file was started with (a bug in \
                     the caller); the file was not written",
                    self.len
                ),
            ));
        }
        for block in v.chunks(8192) {
            self.buf.clear();
            for &x in block {
                self.buf.extend_from_slice(&bytes(x));
            }
            self.w.write_all(&self.buf).map_err(|e| DataError::Io {
                path: self.path.to_path_buf(),
                source: e,
            })?;
        }
        self.written += v.len();
        Ok(())
    }

    /// Appends float64 values (a [`VectorKind::F64`] file only).
    ///
    /// # Errors
    /// [`DataError::Format`] for an int64 file or when more than the announced number of
    /// values would be written; [`DataError::Io`] when writing fails. After an error every
    /// later push fails too, and so does the whole write.
    pub fn push_f64(&mut self, v: &[f64]) -> Result<(), DataError> {
        self.push(VectorKind::F64, v, f64::to_le_bytes)
    }

    /// Appends int64 values (a [`VectorKind::I64`] file only). Errors as [`Self::push_f64`].
    ///
    /// # Errors
    /// As [`Self::push_f64`].
    pub fn push_i64(&mut self, v: &[i64]) -> Result<(), DataError> {
        self.push(VectorKind::I64, v, i64::to_le_bytes)
    }
}

/// Writes a 1-D `.npy` (float64 `'<f8'` or int64 `'<i8'`) of `len` values with bounded memory:
/// the header first, then the values block by block as `fill` pushes them into the
/// [`VectorSink`]. The file is byte for byte what [`write_vector_f64_npy`] /
/// [`write_labels_npy`] write for the same values, and it is written through [`write_atomic`]
/// (a temporary file renamed over `path`; a device or pipe is written in place).
///
/// `fill` must push exactly `len` values in total. If it pushes fewer or more, if a push
/// fails, or if `fill` returns an error, the destination is left untouched (except a device or
/// pipe, which may have received part of the data) and the error is returned: `fill`'s own
/// error as it is, the others as [`DataError`] converted into `E`.
///
/// # Errors
/// `fill`'s error; [`DataError::Format`] for a wrong number of values or a push of the other
/// kind; [`DataError::Io`] when the file cannot be written.
pub fn write_vector_npy_streamed<E: From<DataError>>(
    path: &Path,
    kind: VectorKind,
    len: usize,
    fill: impl FnOnce(&mut VectorSink<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let header = match kind {
        VectorKind::F64 => vector_header::<f64>(kind.descr(), len),
        VectorKind::I64 => vector_header::<i64>(kind.descr(), len),
    }
    .map_err(|e| E::from(DataError::io(path, e)))?;
    // The closure of `write_atomic` can only fail with an io::Error: the real error is kept
    // here and the closure fails with a marker, so that the temporary file is removed.
    let mut failure: Option<E> = None;
    let result = write_atomic(path, |w| {
        w.write_all(&header)?;
        let mut sink = VectorSink {
            w,
            path,
            kind,
            len,
            written: 0,
            buf: Vec::with_capacity(8192 * 8),
            failed: None,
        };
        let err = match fill(&mut sink) {
            Err(e) => Some(e),
            Ok(()) => match sink.failed.take() {
                Some(e) => Some(E::from(e)),
                None if sink.written != len => Some(E::from(DataError::format(
                    path,
                    format!(
                        "only {} of the {len} values were produced (a bug in the caller); \
                         the file was not written",
                        sink.written
                    ),
                ))),
                None => None,
            },
        };
        match err {
            Some(e) => {
                failure = Some(e);
                Err(io::Error::other("the values could not be produced"))
            }
            None => Ok(()),
        }
    });
    match (failure, result) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(E::from(e)),
        (None, Ok(())) => Ok(()),
    }
}
