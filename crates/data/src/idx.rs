//! IDX files (the MNIST / Fashion-MNIST format), optionally gzip-compressed,
//! and the loader for an MNIST-format dataset directory.
//!
//! Layout: two zero bytes, a type byte, the number of dimensions `k`, then `k`
//! big-endian `u32` dimensions, then the values in row-major order, big endian.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::DataError;
use crate::matrix::{extension_lower, ElemType, Matrix};

/// Default directory of the Fashion-MNIST dataset as installed by
/// `apt-get install dataset-fashion-mnist`.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// An n-dimensional IDX array with its values converted to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<f64>,
}

/// One split (train or test) of an MNIST-format dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct MnistSplit {
    /// Images as rows of `height * width` pixels (784 for MNIST), scaled from
    /// 0..=255 to [0, 1] as float32 (dtype [`ElemType::F32`]).
    pub images: Matrix,
    /// Class label of each image.
    pub labels: Vec<i64>,
}

/// Element types of IDX files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    fn from_code(code: u8) -> Option<Self> {
        match code {
            0x08 => Some(IdxType::U8),
            0x09 => Some(IdxType::I8),
            0x0B => Some(IdxType::I16),
            0x0C => Some(IdxType::I32),
            0x0D => Some(IdxType::F32),
            0x0E => Some(IdxType::F64),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            IdxType::U8 => "unsigned byte (0x08)",
            IdxType::I8 => "signed byte (0x09)",
            IdxType::I16 => "int16 (0x0B)",
            IdxType::I32 => "int32 (0x0C)",
            IdxType::F32 => "float32 (0x0D)",
            IdxType::F64 => "float64 (0x0E)",
        }
    }
}

/// What to do about a damaged IDX file.
const REDOWNLOAD: &str = "the file is damaged; download or install it again";

/// Maps an error met while reading the content: damaged data becomes
/// [`DataError::Format`], anything else stays an I/O error.
fn content_error(path: &Path, gz: bool, e: io::Error) -> DataError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => {
            let what = if gz { "gzip stream" } else { "file" };
            DataError::format(
                path,
                format!("corrupt or truncated {what} ({e}); {REDOWNLOAD}"),
            )
        }
        _ => DataError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Reads up to `buf.len()` bytes; returns how many were read (fewer only at end of input).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and validates an IDX file: its type, dims and raw (big-endian) data bytes; with
/// `max_items`, only the data of the first `max_items` items along the first dimension are
/// read (and decompressed): the dims stay the header's, and the file's end is not checked.
fn read_raw(
    path: &Path,
    max_items: Option<usize>,
) -> Result<(IdxType, Vec<usize>, Vec<u8>), DataError> {
    let (file, _) = crate::input::open_input(path)?;
    let mut buffered = BufReader::new(file);
    let head = buffered.fill_buf().map_err(|e| DataError::io(path, e))?;
    let gz = head.starts_with(&[0x1f, 0x8b]) || extension_lower(path).as_deref() == Some("gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(GzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let fail = |reason: String| DataError::format(path, reason);

    let mut magic = [0u8; 4];
    let got = read_full(&mut reader, &mut magic).map_err(|e| content_error(path, gz, e))?;
    if got < 4 {
        return Err(fail(format!(
            "the file is truncated: {got} bytes, shorter than the 4-byte IDX magic; {REDOWNLOAD}"
        )));
    }
    let kind = match (magic[0], magic[1], IdxType::from_code(magic[2])) {
        (0, 0, Some(kind)) => kind,
        _ => {
            return Err(fail(format!(
                "bad magic {:02x} {:02x} {:02x} {:02x}: not an IDX file (it must start with \
                 00 00, a type byte 08/09/0b/0c/0d/0e and the number of dimensions, e.g. \
                 00 00 08 03 for MNIST images); use the MNIST-format files such as \
                 train-images-idx3-ubyte(.gz)",
                magic[0], magic[1], magic[2], magic[3]
            )))
        }
    };
    let ndims = usize::from(magic[3]);
    if ndims == 0 {
        return Err(fail(format!(
            "the IDX header declares 0 dimensions; {REDOWNLOAD}"
        )));
    }
    let mut raw_dims = vec![0u8; 4 * ndims];
    let got = read_full(&mut reader, &mut raw_dims).map_err(|e| content_error(path, gz, e))?;
    if got < raw_dims.len() {
        return Err(fail(format!(
            "the file is truncated inside the header ({ndims} dimensions need {} bytes, found {got}); \
             {REDOWNLOAD}",
            raw_dims.len()
        )));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let needed = dims
        .iter()
        .try_fold(kind.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            fail(format!(
                "the IDX dimensions {dims:?} are too large (their product overflows); {REDOWNLOAD}"
            ))
        })?;

    let items = dims.first().copied().unwrap_or(1);
    let limited = max_items.is_some_and(|m| m < items);
    let needed = match max_items {
        Some(m) if limited => needed / items * m,
        _ => needed,
    };
    // Grow the buffer only as data actually arrives, so a lying header cannot
    // make us allocate more than the file holds.
    let mut data = Vec::with_capacity(needed.min(64 << 20));
    (&mut reader)
        .take(needed as u64)
        .read_to_end(&mut data)
        .map_err(|e| content_error(path, gz, e))?;
    if data.len() < needed {
        return Err(fail(format!(
            "the file is truncated: dimensions {dims:?} of {} need {needed} data bytes but only {} \
             follow the header; {REDOWNLOAD}",
            kind.name(),
            data.len()
        )));
    }
    if limited {
        return Ok((kind, dims, data));
    }
    let mut extra = [0u8; 1];
    let more = read_full(&mut reader, &mut extra).map_err(|e| content_error(path, gz, e))?;
    if more > 0 {
        return Err(fail(format!(
            "trailing garbage after the {needed} data bytes that dimensions {dims:?} of {} need; \
             {REDOWNLOAD}",
            kind.name()
        )));
    }
    Ok((kind, dims, data))
}

/// Reads an IDX file of any supported element type (u8, i8, i16, i32, f32,
/// f64), gzip-compressed or not (by `.gz` extension or gzip magic), converting
/// the values to f64.
///
/// # Errors
/// [`DataError::NotFound`] / [`DataError::Io`] when the file cannot be read;
/// [`DataError::Format`] naming the file for a bad magic, an unknown type byte,
/// a truncated header or data, a dimension product that overflows, trailing
/// bytes, or a corrupt gzip stream.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let (kind, dims, raw) = read_raw(path, None)?;
    let data: Vec<f64> = match kind {
        IdxType::U8 => raw.iter().map(|&b| f64::from(b)).collect(),
        IdxType::I8 => raw.iter().map(|&b| f64::from(b as i8)).collect(),
        IdxType::I16 => raw
            .chunks_exact(2)
            .map(|c| f64::from(i16::from_be_bytes([c[0], c[1]])))
            .collect(),
        IdxType::I32 => raw
            .chunks_exact(4)
            .map(|c| f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        IdxType::F32 => raw
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        IdxType::F64 => raw
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_be_bytes(a)
            })
            .collect(),
    };
    Ok(IdxArray { dims, data })
}

/// Fast path for unsigned-byte (type 0x08) IDX files such as MNIST images and
/// labels: returns the dimensions and the raw bytes.
///
/// # Errors
/// As [`read_idx`], plus [`DataError::Format`] when the element type is not
/// unsigned byte.
pub fn read_idx_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    read_idx_u8_first(path, None)
}

/// As [`read_idx_u8`], reading (and decompressing) only the first `max_items` items along the
/// first dimension when given: the dimensions returned are the header's, the bytes those of
/// the items read.
///
/// # Errors
/// As [`read_idx_u8`]; the bytes after the items read are not checked.
pub fn read_idx_u8_first(
    path: &Path,
    max_items: Option<usize>,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let (kind, dims, raw) = read_raw(path, max_items)?;
    if kind != IdxType::U8 {
        return Err(DataError::format(
            path,
            format!(
                "expected unsigned byte (0x08) IDX data but the file holds {}; \
                 use read_idx for other element types",
                kind.name()
            ),
        ));
    }
    Ok((dims, raw))
}

/// Finds `name` or `name.gz` in `dir`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::DatasetMissing { path: plain })
}

/// Loads the train (`train == true`: `train-images-idx3-ubyte`,
/// `train-labels-idx1-ubyte`) or test (`t10k-…`) split of an MNIST-format
/// directory such as [`FASHION_MNIST_DIR`]; each file may also be gzipped
/// (`….gz`). Images become an `[n, height * width]` matrix (784 columns for
/// MNIST) with pixels scaled to [0, 1] as float32 values.
///
/// # Errors
/// [`DataError::DatasetMissing`] naming the missing file (its message says to
/// run `apt-get install dataset-fashion-mnist`); the errors of
/// [`read_idx_u8`]; [`DataError::Format`] when the images are not 3-D, the
/// labels not 1-D, or their counts differ.
pub fn read_mnist_dir(dir: &Path, train: bool) -> Result<MnistSplit, DataError> {
    read_mnist_dir_first(dir, train, None)
}

/// As [`read_mnist_dir`], reading (and decompressing) only the first `max_images` images and
/// labels when given: a `--limit` of 200 costs 200 images, not the split.
///
/// # Errors
/// As [`read_mnist_dir`]; the two files' headers must still agree on the split's size.
pub fn read_mnist_dir_first(
    dir: &Path,
    train: bool,
    max_images: Option<usize>,
) -> Result<MnistSplit, DataError> {
    let prefix = if train { "train" } else { "t10k" };
    let images_path = locate(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = locate(dir, &format!("{prefix}-labels-idx1-ubyte"))?;

    let (idims, pixels) = read_idx_u8_first(&images_path, max_images)?;
    let (n, pixels_per_image) = match idims[..] {
        [n, h, w] => (n, h * w), // the product was checked while reading
        _ => {
            return Err(DataError::format(
                &images_path,
                format!(
                    "expected 3-D images [count, height, width] but the file has dimensions \
                     {idims:?}; is it an images file (…-images-idx3-ubyte)?"
                ),
            ))
        }
    };
    let (ldims, raw_labels) = read_idx_u8_first(&labels_path, max_images)?;
    if ldims.len() != 1 {
        return Err(DataError::format(
            &labels_path,
            format!(
                "expected 1-D labels but the file has dimensions {ldims:?}; \
                 is it a labels file (…-labels-idx1-ubyte)?"
            ),
        ));
    }
    if ldims[0] != n {
        return Err(DataError::format(
            &labels_path,
            format!(
                "holds {} labels but {} holds {n} images; the two files must come from the \
                 same dataset split, install or download them again",
                ldims[0],
                images_path.display()
            ),
        ));
    }
    // The images read: all `n`, or the first `max_images`.
    let kept = raw_labels.len();
    let data: Vec<f64> = pixels
        .iter()
        .map(|&p| f64::from(f32::from(p) / 255.0))
        .collect();
    let images = Matrix::new(kept, pixels_per_image, data, ElemType::F32)?;
    let labels = raw_labels.into_iter().map(i64::from).collect();
    Ok(MnistSplit { images, labels })
}
