//! Reading `.npy` files whole: float matrices and vectors (C or Fortran order, any byte
//! order, float32 or float64), integer labels; every problem a [`DataError`].

use std::path::Path;

use npyz::TypeChar;

use super::header::*;
use super::*;
use crate::error::{read_file, DataError};
use crate::matrix::{ElemType, Matrix};

/// Returns the data bytes of `header`'s `count` elements, checking the file
/// holds exactly that many bytes after the header.
pub(super) fn data_bytes<'a>(
    bytes: &'a [u8],
    header: &Header,
    count: usize,
) -> Result<&'a [u8], String> {
    let item = header.ty.num_bytes().unwrap_or(usize::MAX);
    let needed = count.checked_mul(item).ok_or_else(|| {
        format!(
            "corrupt .npy header: shape {} of {} is too large to address; re-create the file with numpy.save",
            header.shape_str(),
            header.dtype_str()
        )
    })?;
    let have = bytes.len() - header.data_start;
    if have < needed {
        return Err(format!(
            "the file is truncated: shape {} of {} needs {needed} data bytes but only {have} follow \
             the header; it was probably cut off while copying or saving, re-create it with numpy.save",
            header.shape_str(),
            header.dtype_str()
        ));
    }
    if have > needed {
        return Err(format!(
            "the file has {} unexpected bytes after the data of shape {} of {} (trailing garbage \
             or several arrays in one file); re-create it with numpy.save",
            have - needed,
            header.shape_str(),
            header.dtype_str()
        ));
    }
    Ok(&bytes[header.data_start..])
}

/// Decodes `N`-byte chunks with the given byte order.
pub(super) fn decode<const N: usize, T>(
    data: &[u8],
    big_endian: bool,
    from_le: fn([u8; N]) -> T,
    from_be: fn([u8; N]) -> T,
) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            if big_endian {
                from_be(a)
            } else {
                from_le(a)
            }
        })
        .collect()
}

/// Reads and parses an `.npy` file; a file that is not one at all is refused with `hint`
/// (what this reader accepts instead, or how to save the array it wants).
pub(super) fn load(path: &Path, hint: &str) -> Result<(Vec<u8>, Header), DataError> {
    let bytes = read_file(path)?;
    if !bytes.starts_with(MAGIC) && !MAGIC.starts_with(&bytes) {
        return Err(DataError::format(path, format!("{NOT_NPY}; {hint}")));
    }
    let header = parse_header(&bytes).map_err(|r| DataError::format(path, r))?;
    Ok((bytes, header))
}

/// Reads a 2-D float32 or float64 `.npy` array (either byte order, C or
/// Fortran order) into a row-major [`Matrix`] whose dtype records the file's
/// element type. NaN and infinities are kept.
///
/// # Errors
/// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be read;
/// [`DataError::Format`] when it is not a valid npy file, is truncated or has
/// trailing bytes, is not 2-D (a 1-D array of length n must be reshaped to
/// (n, 1)), or holds anything but float32/float64.
pub fn read_npy_matrix(path: &Path) -> Result<Matrix, DataError> {
    read_float_array(path, false)
}

/// Reads a float32/float64 vector (shape `(n,)` or `(n, 1)`) from `.npy`, e.g. one score per
/// sample.
///
/// # Errors
/// As [`read_npy_matrix`], and [`DataError::Format`] for any other shape.
pub fn read_vector(path: &Path) -> Result<Vec<f64>, DataError> {
    Ok(read_float_array(path, true)?.data)
}

/// Reads a float32/float64 array that must have exactly `shape` (C or Fortran order), its
/// values in C (row-major) order: a fit's initial parameters as scikit-learn users hold them
/// (`weights_init` `(K,)`, `means_init` `(K, D)`, `precisions_init` `(K, D, D)` for full
/// covariances). The shape is checked against the header before the values are decoded.
///
/// # Errors
/// As [`read_npy_matrix`], and [`DataError::Format`] naming both shapes when they differ.
pub fn read_float_array_shaped(path: &Path, shape: &[usize]) -> Result<Vec<f64>, DataError> {
    let (bytes, header) = load(path, "save the array with numpy.save")?;
    let fail = |reason: String| DataError::format(path, reason);
    if header.shape != shape {
        return Err(fail(format!(
            "it holds an array of shape {}; expected shape {}",
            header.shape_str(),
            shape_str(shape)
        )));
    }
    let dtype = float_elem(&header, "expected float32 or float64").map_err(fail)?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| fail(format!("shape {} is too large", shape_str(shape))))?;
    let data = data_bytes(&bytes, &header, count).map_err(fail)?;
    Ok(c_order(
        float_values(&header, data, dtype),
        shape,
        header.fortran_order,
    ))
}

/// The float32/float64 values of `data` (in `header`'s byte order) as f64, in storage order.
pub(super) fn float_values(header: &Header, data: &[u8], dtype: ElemType) -> Vec<f64> {
    let big = is_big_endian(&header.ty);
    match dtype {
        ElemType::F32 => decode::<4, f32>(data, big, f32::from_le_bytes, f32::from_be_bytes)
            .into_iter()
            .map(f64::from)
            .collect(),
        ElemType::F64 => decode::<8, f64>(data, big, f64::from_le_bytes, f64::from_be_bytes),
    }
}

/// `values` of an array of `shape` in C (row-major) order; with `fortran` they are stored
/// first axis fastest, and are walked in C order keeping each index's Fortran offset.
pub(super) fn c_order(values: Vec<f64>, shape: &[usize], fortran: bool) -> Vec<f64> {
    if !fortran || shape.iter().filter(|&&d| d > 1).count() < 2 {
        return values;
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        let mut offset = 0;
        let mut stride = 1;
        for (i, d) in index.iter().zip(shape) {
            offset += i * stride;
            stride *= d;
        }
        out.push(values[offset]);
        for (i, d) in index.iter_mut().zip(shape).rev() {
            *i += 1;
            if *i < *d {
                break;
            }
            *i = 0;
        }
    }
    out
}

pub(super) fn read_float_array(path: &Path, vector: bool) -> Result<Matrix, DataError> {
    let hint = match vector {
        true => "save the vector with numpy.save(path, v.ravel().astype('float64'))",
        false => "re-create it with numpy.save, or use a .csv file with comma-separated numbers",
    };
    let (bytes, header) = load(path, hint)?;
    let fail = |reason: String| DataError::format(path, reason);
    let (rows, cols, dtype) = float_layout(&header, vector).map_err(fail)?;
    let count = rows * cols;
    let data = data_bytes(&bytes, &header, count).map_err(fail)?;
    let values = c_order(
        float_values(&header, data, dtype),
        &[rows, cols],
        header.fortran_order,
    );
    Matrix::new(rows, cols, values, dtype)
}

/// Reads 1-D integer labels from `.npy`: int32 and int64, and losslessly
/// int8, int16, uint8, uint16, uint32 (uint64 too, when every value fits in
/// i64). Shape `(n,)` or `(n, 1)`.
///
/// # Errors
/// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be read;
/// [`DataError::Format`] when it is not a valid npy file, is truncated, holds
/// floats or another non-integer dtype, has another shape, or holds a uint64
/// value above `i64::MAX`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, DataError> {
    let (bytes, header) = load(path, LABELS_HINT)?;
    let fail = |reason: String| DataError::format(path, reason);
    let n = match header.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(fail(format!(
                "it holds an array of shape {}; {LABELS_HINT}",
                header.shape_str()
            )))
        }
    };
    let ty = &header.ty;
    let size = ty.size_field();
    let int_kind = match ty.type_char() {
        TypeChar::Int if matches!(size, 1 | 2 | 4 | 8) => true,
        TypeChar::Uint if matches!(size, 1 | 2 | 4 | 8) => false,
        TypeChar::Float => {
            return Err(fail(format!(
                "labels must be integers but it holds {} values; save them with \
                 numpy.save(path, y.astype('int64')) (after checking they are whole numbers)",
                header.dtype_str()
            )))
        }
        _ => {
            return Err(fail(format!(
                "labels must be integers but it holds {} values; {LABELS_HINT}",
                header.dtype_str()
            )))
        }
    };
    let data = data_bytes(&bytes, &header, n).map_err(fail)?;
    let big = is_big_endian(ty);
    let labels: Vec<i64> = match (int_kind, size) {
        (true, 1) => data.iter().map(|&b| i64::from(b as i8)).collect(),
        (false, 1) => data.iter().map(|&b| i64::from(b)).collect(),
        (true, 2) => to_i64(decode(data, big, i16::from_le_bytes, i16::from_be_bytes)),
        (false, 2) => to_i64(decode(data, big, u16::from_le_bytes, u16::from_be_bytes)),
        (true, 4) => to_i64(decode(data, big, i32::from_le_bytes, i32::from_be_bytes)),
        (false, 4) => to_i64(decode(data, big, u32::from_le_bytes, u32::from_be_bytes)),
        (true, _) => decode(data, big, i64::from_le_bytes, i64::from_be_bytes),
        (false, _) => {
            let raw = decode(data, big, u64::from_le_bytes, u64::from_be_bytes);
            let mut out = Vec::with_capacity(raw.len());
            for (k, v) in raw.into_iter().enumerate() {
                out.push(i64::try_from(v).map_err(|_| {
                    fail(format!(
                        "label {k} is {v}, too large for int64; {LABELS_HINT}"
                    ))
                })?);
            }
            out
        }
    };
    Ok(labels)
}

/// Widens a vector of small integers to i64.
pub(super) fn to_i64<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}
