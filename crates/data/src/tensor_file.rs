//! safetensors files: named f32 / f64 / i64 arrays and a string → string metadata map, the
//! format Burn, PyTorch and NumPy users exchange tensors in (`safetensors.numpy.load_file`
//! reads what [`write_safetensors`] writes).
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...}`, padded with
//! spaces to a multiple of 8), then the arrays' little-endian bytes back to back. The header is
//! built and checked with the `safetensors` crate's own types; the arrays are streamed through
//! [`write_atomic`] (8-byte types first, so every array is aligned to its element size).
//!
//! Reading checks every size before allocating: the header length against the file's length,
//! the offsets (in order, no overlap, no gap, ending at the end of the file), each shape's
//! element count (no overflow) against its byte range, and the dtype (F32, F64 or I64). A bad
//! file is a [`DataError::Format`] that says which of these failed, never a panic.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::atomic::write_atomic;
use crate::error::DataError;

/// The values of one array.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
}

/// One named array of a [`TensorFile`]: a row-major shape and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The shape (`[]` is a scalar).
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub data: ArrayData,
}

impl Array {
    /// Float values stored losslessly: as f32 when `prefer_f32` and every value is exactly an
    /// f32 (NaN excepted: it is stored as f64), else as f64.
    pub fn float(shape: Vec<usize>, values: &[f64], prefer_f32: bool) -> Self {
        let exact = |v: &f64| (*v as f32) as f64 == *v;
        let data = if prefer_f32 && values.iter().all(exact) {
            ArrayData::F32(values.iter().map(|&v| v as f32).collect())
        } else {
            ArrayData::F64(values.to_vec())
        };
        Self { shape, data }
    }

    /// Integer values.
    pub fn int(shape: Vec<usize>, values: Vec<i64>) -> Self {
        Self {
            shape,
            data: ArrayData::I64(values),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.data {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
        }
    }

    /// Whether the array has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The safetensors dtype name (`F32`, `F64`, `I64`).
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            ArrayData::F32(_) => "F32",
            ArrayData::F64(_) => "F64",
            ArrayData::I64(_) => "I64",
        }
    }

    /// The values as f64 (floats only; `None` for integers).
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            ArrayData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            ArrayData::F64(v) => Some(v.clone()),
            ArrayData::I64(_) => None,
        }
    }

    fn dtype(&self) -> Dtype {
        match self.data {
            ArrayData::F32(_) => Dtype::F32,
            ArrayData::F64(_) => Dtype::F64,
            ArrayData::I64(_) => Dtype::I64,
        }
    }

    fn write_bytes(&self, w: &mut dyn Write) -> std::io::Result<()> {
        // Little-endian values, written in blocks (no copy of the whole array).
        let mut buf = Vec::with_capacity(64 * 1024);
        macro_rules! put {
            ($v:expr) => {
                for block in $v.chunks(8192) {
                    buf.clear();
                    for x in block {
                        buf.extend_from_slice(&x.to_le_bytes());
                    }
                    w.write_all(&buf)?;
                }
            };
        }
        match &self.data {
            ArrayData::F32(v) => put!(v),
            ArrayData::F64(v) => put!(v),
            ArrayData::I64(v) => put!(v),
        }
        Ok(())
    }
}

/// A safetensors file in memory: metadata and named arrays (both in name order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// The `__metadata__` map.
    pub metadata: BTreeMap<String, String>,
    /// The arrays by name.
    pub arrays: BTreeMap<String, Array>,
}

/// The largest header this reader accepts (the `safetensors` crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// Writes `file` to `path` as safetensors, atomically ([`write_atomic`]).
///
/// # Errors
/// [`DataError::Format`] when an array's shape does not match its values (the file would be
/// invalid), [`DataError::Io`] when writing fails.
pub fn write_safetensors(path: &Path, file: &TensorFile) -> Result<(), DataError> {
    let header = header_bytes(path, file)?;
    let order = write_order(file);
    write_atomic(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for (_, a) in &order {
            a.write_bytes(w)?;
        }
        Ok(())
    })
}

/// Arrays in file order: 8-byte types first (so each array is aligned to its element size
/// after the 8-aligned header), then by name.
fn write_order(file: &TensorFile) -> Vec<(&String, &Array)> {
    let mut order: Vec<_> = file.arrays.iter().collect();
    order.sort_by_key(|(_, a)| std::cmp::Reverse(a.dtype().bitsize()));
    order
}

/// The header JSON, padded with spaces to a multiple of 8, checked by the `safetensors`
/// crate's own validation.
fn header_bytes(path: &Path, file: &TensorFile) -> Result<Vec<u8>, DataError> {
    let mut entries = serde_json::Map::new();
    if !file.metadata.is_empty() {
        entries.insert(
            "__metadata__".into(),
            serde_json::to_value(&file.metadata).map_err(|e| fmt_err(path, e.to_string()))?,
        );
    }
    let mut offset = 0usize;
    for (name, a) in write_order(file) {
        let count = element_count(&a.shape)
            .filter(|&c| c == a.len())
            .ok_or_else(|| {
                fmt_err(
                    path,
                    format!(
                        "array `{name}` has shape {:?} but {} values",
                        a.shape,
                        a.len()
                    ),
                )
            })?;
        let end = offset + count * a.dtype().bitsize() / 8;
        let info = TensorInfo {
            dtype: a.dtype(),
            shape: a.shape.clone(),
            data_offsets: (offset, end),
        };
        entries.insert(
            name.clone(),
            serde_json::to_value(info).map_err(|e| fmt_err(path, e.to_string()))?,
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&entries).map_err(|e| fmt_err(path, e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    // The crate's validation of what we wrote (offsets contiguous, sizes consistent).
    serde_json::from_slice::<Metadata>(&header)
        .map_err(|e| fmt_err(path, format!("invalid header: {e}")))?;
    Ok(header)
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

fn fmt_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `bytes` start like a safetensors file: a header length that fits in the file,
/// followed by `{`. (A JSON text never does: its first 8 bytes read as a length beyond 2⁵⁶.)
pub fn is_safetensors(bytes: &[u8]) -> bool {
    match bytes.get(..8) {
        Some(len) if bytes.get(8) == Some(&b'{') => {
            let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
            n <= (bytes.len() - 8) as u64
        }
        _ => false,
    }
}

/// Reads a safetensors file written by [`write_safetensors`] (or any writer of F32, F64 and
/// I64 arrays). See [`parse_safetensors`] for the checks.
pub fn read_safetensors(path: &Path) -> Result<TensorFile, DataError> {
    parse_safetensors(&crate::input::read_input(path)?, path)
}

/// Parses the bytes of a safetensors file; `path` names it in errors. Every size is checked
/// before anything is allocated from it (module docs).
///
/// # Errors
/// [`DataError::Format`] saying what is wrong: too short, a header length beyond the file, a
/// header that is not UTF-8 JSON or names an unknown dtype, offsets out of order, overlapping
/// or outside the data, a shape whose element count overflows or does not match its byte
/// range, or an array of a dtype other than F32, F64 and I64.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<TensorFile, DataError> {
    let bad = |reason: String| fmt_err(path, format!("not a valid safetensors file: {reason}"));
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(bad(format!(
            "{} bytes is too short for the 8-byte header length",
            bytes.len()
        )));
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let available = (bytes.len() - 8) as u64;
    if n > available {
        return Err(bad(format!(
            "the header length {n} exceeds the {available} bytes after it (truncated file?)"
        )));
    }
    if n > MAX_HEADER {
        return Err(bad(format!(
            "the header length {n} exceeds the limit of {MAX_HEADER} bytes"
        )));
    }
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(describe(e)))?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(describe(e)))?;
    let mut arrays = BTreeMap::new();
    for (name, view) in tensors.iter() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => ArrayData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            ),
            Dtype::F64 => ArrayData::F64(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            Dtype::I64 => ArrayData::I64(
                raw.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            ),
            other => {
                return Err(bad(format!(
                    "array `{name}` has dtype {other:?}; only F32, F64 and I64 arrays are read"
                )))
            }
        };
        arrays.insert(
            name.to_string(),
            Array {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(TensorFile { metadata, arrays })
}

/// What a `safetensors` crate error means for the user.
pub(crate) fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidHeader(e) => format!("the header is not UTF-8 ({e})"),
        SafeTensorError::InvalidHeaderDeserialization(e) | SafeTensorError::JsonError(e) => {
            format!("the header is not a valid array table ({e})")
        }
        SafeTensorError::HeaderTooLarge => "the header length is too large".into(),
        SafeTensorError::HeaderTooSmall => "the file is too short".into(),
        SafeTensorError::InvalidHeaderLength => "the header length exceeds the file".into(),
        SafeTensorError::InvalidOffset(name) => format!(
            "array `{name}` has data offsets that are out of order, overlap another array or leave a gap"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "an array's shape and dtype do not match the length of its data offsets".into()
        }
        SafeTensorError::ValidationOverflow => {
            "an array's shape has an element count that overflows".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the arrays' data offsets do not end at the end of the file (truncated or padded file)"
                .into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TensorFile {
        let mut f = TensorFile::default();
        f.metadata.insert("format".into(), "test".into());
        f.arrays.insert(
            "a".into(),
            Array::float(vec![2, 3], &[1.0, 2.5, -3.0, 0.0, 0.125, 7.0], true),
        );
        f.arrays
            .insert("b".into(), Array::float(vec![2], &[0.1, 0.2], true));
        f.arrays
            .insert("n".into(), Array::int(vec![3], vec![1, -2, i64::MAX]));
        f.arrays
            .insert("e".into(), Array::float(vec![0], &[], false));
        f.arrays
            .insert("s".into(), Array::float(vec![], &[4.0], false));
        f
    }

    fn written(f: &TensorFile) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        write_safetensors(&path, f).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn arrays_and_metadata_round_trip_bit_for_bit() {
        let f = sample();
        assert!(matches!(f.arrays["a"].data, ArrayData::F32(_)));
        assert!(
            matches!(f.arrays["b"].data, ArrayData::F64(_)),
            "0.1 is no f32"
        );
        let (_dir, path, bytes) = written(&f);
        assert!(is_safetensors(&bytes));
        assert_eq!(read_safetensors(&path).unwrap(), f);
        // 8-byte arrays are aligned to 8 bytes in the file.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
    }

    #[test]
    fn a_truncated_file_is_refused_at_every_length() {
        let (_dir, path, bytes) = written(&sample());
        for cut in 0..bytes.len() {
            let err = parse_safetensors(&bytes[..cut], &path).unwrap_err();
            assert!(matches!(err, DataError::Format { .. }), "{cut}: {err}");
        }
    }

    /// The file with its header JSON replaced (the length field rewritten to match).
    fn with_header(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        edit(&mut header);
        let text = serde_json::to_vec(&header).unwrap();
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(&bytes[8 + n..]);
        out
    }

    fn refused(bytes: &[u8], path: &Path, needle: &str) {
        match parse_safetensors(bytes, path) {
            Err(DataError::Format { reason, .. }) => {
                assert!(reason.contains(needle), "`{reason}` lacks `{needle}`")
            }
            other => panic!("expected a format error with `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn tampered_headers_are_refused_with_what_is_wrong() {
        let (_dir, path, bytes) = written(&sample());
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        refused(&huge, &path, "exceeds");
        let overlap = with_header(&bytes, |h| {
            h["a"]["data_offsets"] = serde_json::json!([0, 24])
        });
        refused(&overlap, &path, "offsets");
        let outside = with_header(&bytes, |h| {
            h["n"]["data_offsets"] = serde_json::json!([0, 1u64 << 40])
        });
        refused(&outside, &path, "offsets");
        let shape = with_header(&bytes, |h| h["a"]["shape"] = serde_json::json!([3, 3]));
        refused(&shape, &path, "shape");
        let overflow = with_header(&bytes, |h| {
            h["a"]["shape"] = serde_json::json!([1u64 << 62, 1u64 << 62, 16])
        });
        refused(&overflow, &path, "overflow");
        let unknown = with_header(&bytes, |h| h["a"]["dtype"] = serde_json::json!("Q7"));
        refused(&unknown, &path, "Q7");
        let other = with_header(&bytes, |h| h["b"]["dtype"] = serde_json::json!("U64"));
        refused(&other, &path, "only F32, F64 and I64");
        let mut garbage = bytes.clone();
        garbage[8] = b'[';
        refused(&garbage, &path, "header");
    }

    #[test]
    fn shapes_that_do_not_match_the_values_are_not_written() {
        let mut f = sample();
        f.arrays.get_mut("a").unwrap().shape = vec![4, 4];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        assert!(matches!(
            write_safetensors(&path, &f),
            Err(DataError::Format { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn devices_and_directories_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_safetensors(dir.path()),
            Err(DataError::Format { .. }) | Err(DataError::Io { .. })
        ));
        if Path::new("/dev/zero").exists() {
            assert!(matches!(
                read_safetensors(Path::new("/dev/zero")),
                Err(DataError::Format { .. })
            ));
        }
    }
}
