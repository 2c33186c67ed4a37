//! NumPy `.npy` files: 2-D float matrices, 1-D float vectors and integer labels.
//!
//! Writing goes through `npyz`. Reading validates the header with a small,
//! strict parser of its own and decodes the data itself, because `npyz`'s
//! reader can panic on hostile headers (a shape whose product overflows `u64`,
//! unbounded nesting in the header literal) and does not transpose Fortran-order
//! arrays; `npyz` still parses the dtype string (`'<f8'`, `'>i4'`, ...).
//! Every problem becomes a [`DataError`].

use std::io::{self, Write};
use std::path::Path;

use npyz::{DType, Endianness, TypeChar, TypeStr, WriterBuilder};

use crate::atomic::write_atomic;
use crate::error::{read_file, DataError};
use crate::matrix::{ElemType, Matrix};

pub(crate) const MAGIC: &[u8] = b"\x93NUMPY";

/// How to re-save a float matrix so that this crate can read it.
pub(crate) const MATRIX_HINT: &str =
    "expected a 2-D float32 or float64 .npy array; save it with numpy.save(path, x.astype('float32'))";

/// How to re-save labels so that this crate can read them.
const LABELS_HINT: &str =
    "expected a 1-D integer .npy array of labels; save it with numpy.save(path, y.ravel().astype('int64'))";

/// The parts of an npy header this crate uses.
pub(crate) struct Header {
    /// Element type as written in the file.
    pub(crate) ty: TypeStr,
    /// Whether the first axis varies fastest.
    pub(crate) fortran_order: bool,
    /// Dimensions.
    pub(crate) shape: Vec<usize>,
    /// Offset of the first data byte.
    pub(crate) data_start: usize,
}

impl Header {
    /// The shape as numpy prints it, e.g. `(3, 4)` or `(5,)`.
    pub(crate) fn shape_str(&self) -> String {
        shape_str(&self.shape)
    }

    /// Numpy name and descr of the dtype, e.g. `int64 ('<i8')`.
    pub(crate) fn dtype_str(&self) -> String {
        format!("{} ('{}')", numpy_name(&self.ty), self.ty)
    }
}

/// Formats a shape like numpy: `()`, `(5,)`, `(3, 4)`.
fn shape_str(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Numpy name of a scalar dtype (`float32`, `int64`, `bool`, ...).
fn numpy_name(ty: &TypeStr) -> String {
    let bits = ty.size_field().saturating_mul(8);
    match ty.type_char() {
        TypeChar::Bool => "bool".to_string(),
        TypeChar::Int => format!("int{bits}"),
        TypeChar::Uint => format!("uint{bits}"),
        TypeChar::Float => format!("float{bits}"),
        TypeChar::Complex => format!("complex{bits}"),
        TypeChar::TimeDelta => "timedelta64".to_string(),
        TypeChar::DateTime => "datetime64".to_string(),
        TypeChar::ByteStr => "bytes".to_string(),
        TypeChar::UnicodeStr => "str".to_string(),
        TypeChar::RawData => "void".to_string(),
        _ => ty.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------

/// A Python literal as found in npy headers.
#[derive(Debug)]
enum Py {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

/// Deepest nesting accepted in a header literal (real headers nest at most 2
/// levels, structured dtypes a few more).
const MAX_DEPTH: usize = 32;

/// Recursive-descent parser for the Python dict literal of an npy header.
struct LiteralParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LiteralParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Py, String> {
        if depth > MAX_DEPTH {
            return Err("the header literal is nested too deeply".to_string());
        }
        self.skip_ws();
        match self.peek() {
            None => Err("the header literal ends unexpectedly".to_string()),
            Some(b'{') => self.dict(depth),
            Some(b'(') => self.seq(b')', depth),
            Some(b'[') => self.seq(b']', depth),
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'0'..=b'9' | b'-' | b'+') => self.int(),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(c) => Err(format!(
                "unexpected character {:?} in the header literal",
                char::from(c)
            )),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Py, String> {
        self.i += 1; // '{'
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Py::Dict(items));
            }
            let key = self.value(depth + 1)?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err("expected ':' after a key in the header dict".to_string());
            }
            self.i += 1;
            let val = self.value(depth + 1)?;
            items.push((key, val));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err("expected ',' or '}' in the header dict".to_string()),
            }
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Py, String> {
        self.i += 1; // '(' or '['
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(Py::Seq(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '{}' in a header sequence",
                        char::from(close)
                    ))
                }
            }
        }
    }

    fn string(&mut self, quote: u8) -> Result<Py, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string in the header literal".to_string()),
                Some(b'\\') => {
                    // Only the escapes that matter for names: keep the next byte as is.
                    self.i += 1;
                    match self.peek() {
                        None => return Err("unterminated string in the header literal".to_string()),
                        Some(c) => out.push(c),
                    }
                    self.i += 1;
                }
                Some(c) if c == quote => {
                    self.i += 1;
                    return Ok(Py::Str(String::from_utf8_lossy(&out).into_owned()));
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Py, String> {
        let mut negative = false;
        if let Some(sign @ (b'-' | b'+')) = self.peek() {
            negative = sign == b'-';
            self.i += 1;
        }
        let start = self.i;
        let mut value: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .ok_or_else(|| "an integer in the header is too large".to_string())?;
            self.i += 1;
        }
        if self.i == start {
            return Err("expected digits in the header literal".to_string());
        }
        // Python 2 long suffix, written by very old numpy versions.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.i += 1;
        }
        if negative && value != 0 {
            return Err(
                "negative integer in the header (a dimension cannot be negative)".to_string(),
            );
        }
        Ok(Py::Int(value))
    }

    fn word(&mut self) -> Result<Py, String> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Ok(Py::Bool(true)),
            b"False" => Ok(Py::Bool(false)),
            b"None" => Ok(Py::None),
            w => Err(format!(
                "unexpected word '{}' in the header literal",
                String::from_utf8_lossy(w)
            )),
        }
    }
}

/// Parses the npy preamble and header dict. Errors are reasons for [`DataError::Format`].
pub(crate) fn parse_header(bytes: &[u8]) -> Result<Header, String> {
    const RESAVE: &str = "re-create it with numpy.save";
    if !bytes.starts_with(MAGIC) {
        if MAGIC.starts_with(bytes) {
            return Err(format!(
                "the file is truncated ({} bytes, shorter than the .npy magic); {RESAVE}",
                bytes.len()
            ));
        }
        return Err(format!("{NOT_NPY}; {RESAVE}"));
    }
    let (len_size, start) = match (bytes.get(6), bytes.get(7)) {
        (Some(1), Some(0)) => (2usize, 10usize),
        (Some(2 | 3), Some(0)) => (4, 12),
        (Some(&major), Some(&minor)) => {
            return Err(format!(
                "unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are supported); \
                 {RESAVE} from a current numpy"
            ))
        }
        _ => {
            return Err(format!(
                "the file is truncated inside the .npy preamble; {RESAVE}"
            ))
        }
    };
    let header_len = match bytes.get(8..start) {
        Some(b) if len_size == 2 => usize::from(u16::from_le_bytes([b[0], b[1]])),
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => {
            return Err(format!(
                "the file is truncated inside the .npy preamble; {RESAVE}"
            ))
        }
    };
    let data_start = start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            format!(
                "the file is truncated inside the .npy header ({} bytes, header needs {}); {RESAVE}",
                bytes.len(),
                start.saturating_add(header_len)
            )
        })?;
    let text = std::str::from_utf8(&bytes[start..data_start])
        .map_err(|_| format!("the .npy header is not valid text; the file is corrupt, {RESAVE}"))?;

    let mut parser = LiteralParser {
        s: text.as_bytes(),
        i: 0,
    };
    let dict = parser
        .value(0)
        .map_err(|e| format!("corrupt .npy header: {e}; {RESAVE}"))?;
    parser.skip_ws();
    if parser.i != parser.s.len() {
        return Err(format!(
            "corrupt .npy header: unexpected text after the header dict; {RESAVE}"
        ));
    }
    let items = match dict {
        Py::Dict(items) => items,
        _ => {
            return Err(format!(
                "corrupt .npy header: it is not a dict literal; {RESAVE}"
            ))
        }
    };
    let get = |key: &str| {
        items
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("corrupt .npy header: the key '{key}' is missing; {RESAVE}"))
    };

    let ty = match get("descr")? {
        Py::Str(s) => s
            .parse::<TypeStr>()
            .map_err(|e| format!("the .npy dtype '{s}' is not understood ({e}); {MATRIX_HINT}"))?,
        Py::Seq(_) => {
            return Err(format!(
                "structured (record) dtypes are not supported; {MATRIX_HINT}"
            ))
        }
        _ => {
            return Err(format!(
                "corrupt .npy header: 'descr' is not a string; {RESAVE}"
            ))
        }
    };
    let fortran_order = match get("fortran_order")? {
        Py::Bool(b) => *b,
        _ => {
            return Err(format!(
                "corrupt .npy header: 'fortran_order' is not True or False; {RESAVE}"
            ))
        }
    };
    let shape = match get("shape")? {
        Py::Seq(dims) => dims
            .iter()
            .map(|d| match d {
                Py::Int(n) => usize::try_from(*n)
                    .map_err(|_| format!("a dimension of the .npy shape is too large; {RESAVE}")),
                _ => Err(format!(
                    "corrupt .npy header: the shape holds a non-integer; {RESAVE}"
                )),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        _ => {
            return Err(format!(
                "corrupt .npy header: 'shape' is not a tuple; {RESAVE}"
            ))
        }
    };
    Ok(Header {
        ty,
        fortran_order,
        shape,
        data_start,
    })
}

/// Returns the data bytes of `header`'s `count` elements, checking the file
/// holds exactly that many bytes after the header.
fn data_bytes<'a>(bytes: &'a [u8], header: &Header, count: usize) -> Result<&'a [u8], String> {
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
fn decode<const N: usize, T>(
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

/// Whether a type string is big endian (`|` counts as little: single bytes).
pub(crate) fn is_big_endian(ty: &TypeStr) -> bool {
    ty.endianness() == Endianness::Big
}

/// The start of the reason given for a file that is not `.npy` at all.
const NOT_NPY: &str = "not a .npy file (it does not start with the \\x93NUMPY magic)";

/// Reads and parses an `.npy` file; a file that is not one at all is refused with `hint`
/// (what this reader accepts instead, or how to save the array it wants).
fn load(path: &Path, hint: &str) -> Result<(Vec<u8>, Header), DataError> {
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
fn float_values(header: &Header, data: &[u8], dtype: ElemType) -> Vec<f64> {
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
fn c_order(values: Vec<f64>, shape: &[usize], fortran: bool) -> Vec<f64> {
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

/// The element type of a float32/float64 array's header (otherwise a reason for
/// [`DataError::Format`] ending in `hint`).
fn float_elem(header: &Header, hint: &str) -> Result<ElemType, String> {
    match (header.ty.type_char(), header.ty.size_field()) {
        (TypeChar::Float, 4) => Ok(ElemType::F32),
        (TypeChar::Float, 8) => Ok(ElemType::F64),
        _ => Err(format!("it holds {} values; {hint}", header.dtype_str())),
    }
}

/// The `(rows, cols, element type)` of a float array with `header`: a 2-D float32/float64
/// matrix, or with `vector` a float vector of shape `(n,)` or `(n, 1)`. Checks that
/// `rows * cols` does not overflow. Errors are reasons for [`DataError::Format`].
pub(crate) fn float_layout(
    header: &Header,
    vector: bool,
) -> Result<(usize, usize, ElemType), String> {
    let (rows, cols) = match header.shape[..] {
        [rows, 1] if vector => (rows, 1),
        [n] if vector => (n, 1),
        _ if vector => {
            return Err(format!(
                "it holds an array of shape {}; expected a vector of shape (n,) with one \
                 float per sample",
                header.shape_str()
            ))
        }
        [rows, cols] => (rows, cols),
        [n] => {
            return Err(format!(
                "it holds a 1-D array of length {n}, but a data matrix must be 2-D \
                 (samples x features); if it is one feature per sample, save it with shape \
                 ({n}, 1): numpy.save(path, x.reshape(-1, 1).astype('float32'))"
            ))
        }
        [] => {
            return Err(format!(
                "it holds a 0-D scalar; {MATRIX_HINT} of shape (samples, features)"
            ))
        }
        _ => {
            return Err(format!(
                "it holds a {}-D array of shape {}; {MATRIX_HINT} of shape (samples, features), \
                 e.g. numpy.save(path, x.reshape(len(x), -1).astype('float32'))",
                header.shape.len(),
                header.shape_str()
            ))
        }
    };
    let dtype = float_elem(header, MATRIX_HINT)?;
    if rows.checked_mul(cols).is_none() {
        return Err(format!(
            "corrupt .npy header: shape {} is too large; re-create the file with numpy.save",
            header.shape_str()
        ));
    }
    Ok((rows, cols, dtype))
}

fn read_float_array(path: &Path, vector: bool) -> Result<Matrix, DataError> {
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
fn to_i64<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

/// A little-endian scalar dtype from a constant type string.
fn le_dtype(descr: &str) -> DType {
    DType::Plain(descr.parse().expect("constant npy type strings are valid"))
}

/// Writes `values` as a C-order npy array of `shape` and type `descr`, atomically.
fn write_npy<T: npyz::Serialize>(
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
fn vector_header<T: npyz::Serialize>(descr: &str, len: usize) -> io::Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header.to_string();
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((text.len() as u16).to_le_bytes());
        out.extend(text.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn header_with_overflowing_shape_is_an_error_not_a_panic() {
        let b = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
            &[],
        );
        let h = parse_header(&b).expect("header itself parses");
        let count = h.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert!(count.is_none());
        let b = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
            &[],
        );
        let h = parse_header(&b).expect("header itself parses");
        let err = data_bytes(&b, &h, 1usize << 62).unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn deeply_nested_header_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "(".repeat(20000), ")".repeat(20000));
        let b = npy_bytes(&format!("{{'descr': {deep}}}"), &[]);
        let err = parse_header(&b).err().expect("must fail");
        assert!(err.contains("nested too deeply"), "{err}");
    }

    #[test]
    fn header_parser_accepts_python2_long_suffix_and_double_quotes() {
        let b = npy_bytes(
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 3L)}",
            &[0; 24],
        );
        let h = parse_header(&b).expect("parses");
        assert_eq!(h.shape, vec![2, 3]);
        assert!(!h.fortran_order);
    }
}
