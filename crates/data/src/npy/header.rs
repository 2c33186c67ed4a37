//! The `.npy` header: its strict parser (the literal dictionary, never `npyz`'s reader), the
//! element layout it declares.

use npyz::{Endianness, TypeChar, TypeStr};

use super::*;
use crate::matrix::ElemType;

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
pub(super) fn shape_str(shape: &[usize]) -> String {
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
pub(super) fn numpy_name(ty: &TypeStr) -> String {
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
pub(super) enum Py {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

/// Deepest nesting accepted in a header literal (real headers nest at most 2
/// levels, structured dtypes a few more).
pub(super) const MAX_DEPTH: usize = 32;

/// Recursive-descent parser for the Python dict literal of an npy header.
pub(super) struct LiteralParser<'a> {
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

/// Whether a type string is big endian (`|` counts as little: single bytes).
pub(crate) fn is_big_endian(ty: &TypeStr) -> bool {
    ty.endianness() == Endianness::Big
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

/// The element type of a float32/float64 array's header (otherwise a reason for
/// [`DataError::Format`] ending in `hint`).
pub(super) fn float_elem(header: &Header, hint: &str) -> Result<ElemType, String> {
    match (header.ty.type_char(), header.ty.size_field()) {
        (TypeChar::Float, 4) => Ok(ElemType::F32),
        (TypeChar::Float, 8) => Ok(ElemType::F64),
        _ => Err(format!("it holds {} values; {hint}", header.dtype_str())),
    }
}
