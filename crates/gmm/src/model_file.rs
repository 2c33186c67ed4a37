//! Saved-model files, written once for every model kind (the EM mixture, the variational
//! mixture, the OOD detectors): the format name and version checks, the version-1 JSON
//! envelope, and the version-2 binary files.
//!
//! Version 2 (what `save` writes) is a safetensors file (`mixburn_data::write_safetensors`,
//! through the project's one atomic writer): the arrays under their scikit-learn names and
//! shapes, stored losslessly (f32 when the model was fitted in f32 and every value of the
//! array is exactly an f32, else f64), and the metadata
//! `{"format": <kind>, "version": "2", "config": <JSON of the scalar fields>,
//! "mixburn_version": <crate version>}`. Python reads it with
//! `safetensors.numpy.load_file(path)` (arrays) and `safe_open(path, "np").metadata()`.
//!
//! Version 1 is the JSON envelope `{"format", "version": 1, ...}` that earlier releases
//! wrote; it still loads. [`read_model`] tells the two apart by content, not by file name.

use std::collections::BTreeMap;
use std::path::Path;

use mixburn_data::{Array, ArrayData, DataError, TensorFile};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::params::Params;
use crate::validate;
use crate::values::Values;
use mixburn_backend::backend::Precision;

/// Version of the JSON envelope (read, and written by the `to_json` methods).
pub const JSON_VERSION: u32 = 1;
/// Version of the binary (safetensors) model files that `save` writes.
pub const BINARY_VERSION: u32 = 2;
/// The version of mixburn that writes a file (its provenance, in the metadata).
pub const MIXBURN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The versioned envelope of version-1 JSON files: `{format, version, model}`.
#[derive(Serialize, Deserialize)]
struct Envelope<M> {
    format: String,
    version: u32,
    model: M,
}

/// The part of every version-1 JSON file that says what it is.
#[derive(Deserialize)]
struct EnvelopeHeader {
    format: String,
    version: u32,
}

/// `model` inside its envelope as pretty JSON (floats round-trip exactly).
pub fn to_envelope_json<M: Serialize>(format: &str, model: &M) -> Result<String> {
    serde_json::to_string_pretty(&Envelope {
        format: format.into(),
        version: JSON_VERSION,
        model,
    })
    .map_err(|e| GmmError::ModelFormat(e.to_string()))
}

/// The model inside an envelope written by [`to_envelope_json`], after checking its format
/// name and version ([`check_json_envelope`]); `expected` says in errors what the file should
/// have been.
pub fn from_envelope_json<M: DeserializeOwned>(
    text: &str,
    format: &str,
    expected: &str,
) -> Result<M> {
    check_json_envelope(text, format, expected)?;
    let saved: Envelope<M> = serde_json::from_str(text)
        .map_err(|e| GmmError::ModelFormat(format!("{e}; expected {expected}")))?;
    Ok(saved.model)
}

/// Checks the `format` and `version` fields of a version-1 JSON file (any payload).
pub fn check_json_envelope(text: &str, format: &str, expected: &str) -> Result<()> {
    let head: EnvelopeHeader = serde_json::from_str(text)
        .map_err(|e| GmmError::ModelFormat(format!("{e}; expected {expected}")))?;
    check_format(&head.format, head.version, format, JSON_VERSION, expected)
}

/// The one format check: `found` must be `format` at `version`.
fn check_format(
    found: &str,
    found_version: u32,
    format: &str,
    version: u32,
    expected: &str,
) -> Result<()> {
    if found != format {
        return Err(GmmError::ModelFormat(format!(
            "format is `{found}`, expected `{format}` ({expected}); this file holds another kind of model"
        )));
    }
    if found_version != version {
        return Err(GmmError::ModelFormat(format!(
            "version {found_version} is not supported (this build reads version {JSON_VERSION} JSON and version {BINARY_VERSION} safetensors files)"
        )));
    }
    Ok(())
}

/// A model file's content, parsed as far as its encoding: its format name and version are
/// read, not yet checked ([`check`](Self::check) does, in the model kind's `from_content`).
#[derive(Debug)]
pub enum ModelContent {
    /// A JSON file: its format name, version and text.
    Json {
        /// The `format` field.
        format: String,
        /// The `version` field.
        version: u32,
        /// The whole text.
        text: String,
    },
    /// A safetensors file: its configuration and arrays.
    Binary(BinaryModel),
}

impl ModelContent {
    /// The content of a parsed safetensors file: its `format`, `version` and `config`
    /// metadata (each required) and its arrays.
    pub fn from_safetensors(file: mixburn_data::TensorFile) -> Result<Self> {
        let meta = |key: &str| {
            file.metadata.get(key).cloned().ok_or_else(|| {
                GmmError::ModelFormat(format!(
                    "the safetensors metadata has no `{key}`; this is not a mixburn model file"
                ))
            })
        };
        let format = meta("format")?;
        let version = meta("version")?;
        let version: u32 = version
            .parse()
            .map_err(|_| GmmError::ModelFormat(format!("version `{version}` is not a number")))?;
        let config = meta("config")?;
        Ok(ModelContent::Binary(BinaryModel {
            format,
            version,
            config,
            arrays: file.arrays,
        }))
    }

    /// The format name the file declares (the model kind).
    pub fn format(&self) -> &str {
        match self {
            ModelContent::Json { format, .. } => format,
            ModelContent::Binary(b) => &b.format,
        }
    }

    /// The one format check: the file must hold a `format` model in the version its encoding
    /// has (JSON 1, safetensors 2). `expected` says in errors what it should have been.
    pub fn check(&self, format: &str, expected: &str) -> Result<()> {
        match self {
            ModelContent::Json {
                format: found,
                version,
                ..
            } => check_format(found, *version, format, JSON_VERSION, expected),
            ModelContent::Binary(b) => {
                check_format(&b.format, b.version, format, BINARY_VERSION, expected)
            }
        }
    }

    /// The model of one kind in this content: the format [`check`](Self::check)ed, then the
    /// version-1 JSON text or the safetensors arrays read by that kind's own reader (each of
    /// which validates the model as strictly as a fit's result).
    pub fn decode<T>(
        self,
        format: &str,
        expected: &str,
        json: impl FnOnce(&str) -> Result<T>,
        binary: impl FnOnce(BinaryModel) -> Result<T>,
    ) -> Result<T> {
        self.check(format, expected)?;
        match self {
            ModelContent::Json { text, .. } => json(&text),
            ModelContent::Binary(b) => binary(b),
        }
    }
}

/// The model file at `path` ([`read_model`]) as `from_content` reads it: every `load`
/// function of a model kind; errors name the file ([`at_path`]).
pub fn load_with<T>(
    path: &Path,
    from_content: impl FnOnce(ModelContent) -> Result<T>,
) -> Result<T> {
    read_model(path)
        .and_then(from_content)
        .map_err(|e| at_path(path, e))
}

/// Reads a model file of either version, told apart by content (not by file name).
///
/// # Errors
/// [`GmmError::Io`] naming the file when it cannot be read (or is not a regular file);
/// [`GmmError::ModelFormat`] when it is neither a JSON envelope nor a valid safetensors file
/// with `format`, `version` and `config` in its metadata.
pub fn read_model(path: &Path) -> Result<ModelContent> {
    let bytes = mixburn_data::read_input(path).map_err(data_error)?;
    if mixburn_data::is_safetensors(&bytes) || !starts_like_json(&bytes) {
        let file = mixburn_data::parse_safetensors(&bytes, path).map_err(data_error)?;
        return ModelContent::from_safetensors(file);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| GmmError::ModelFormat("the JSON model file is not UTF-8".into()))?;
    let head: EnvelopeHeader = serde_json::from_str(&text).map_err(|e| {
        GmmError::ModelFormat(format!(
            "{e}; expected a mixburn model file (safetensors, or version-1 JSON)"
        ))
    })?;
    Ok(ModelContent::Json {
        format: head.format,
        version: head.version,
        text,
    })
}

/// Whether the first non-blank byte is `{` (a JSON object).
fn starts_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{')
}

/// A data-crate error as this crate's: I/O stays I/O (naming the file), bad content is a
/// model-format error.
fn data_error(e: DataError) -> GmmError {
    match e {
        DataError::Io { path, source } => GmmError::Io {
            path: path.to_path_buf(),
            source,
        },
        DataError::NotFound { path } => GmmError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        },
        DataError::Format { reason, .. } => GmmError::ModelFormat(reason),
        other => GmmError::ModelFormat(other.to_string()),
    }
}

/// The configuration and arrays of a version-2 file, taken out one by one with their shapes
/// checked.
#[derive(Debug)]
pub struct BinaryModel {
    format: String,
    version: u32,
    config: String,
    arrays: BTreeMap<String, Array>,
}

impl BinaryModel {
    /// The configuration (the metadata's `config` JSON), with no unknown field allowed by `C`.
    pub fn config<C: DeserializeOwned>(&self) -> Result<C> {
        serde_json::from_str(&self.config)
            .map_err(|e| GmmError::ModelFormat(format!("the configuration is invalid: {e}")))
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Array> {
        let a = self
            .arrays
            .remove(name)
            .ok_or_else(|| GmmError::ModelFormat(format!("the file has no array `{name}`")))?;
        if a.shape != shape {
            return Err(GmmError::ModelFormat(format!(
                "array `{name}` has shape {:?}, expected {shape:?} from the configuration",
                a.shape
            )));
        }
        Ok(a)
    }

    /// Removes the float array `name`, which must have `shape`, as f64 values.
    pub fn floats(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        self.float_values(name, shape).map(Values::into_f64)
    }

    /// As [`floats`](Self::floats), kept in the file's precision ([`Values`]): an f32 array
    /// is not widened.
    pub fn float_values(&mut self, name: &str, shape: &[usize]) -> Result<Values> {
        match self.take(name, shape)? {
            Array {
                data: ArrayData::F32(v),
                ..
            } => Ok(Values::F32(v)),
            Array {
                data: ArrayData::F64(v),
                ..
            } => Ok(Values::F64(v)),
            a => Err(GmmError::ModelFormat(format!(
                "array `{name}` has dtype {}, expected F32 or F64",
                a.dtype_name()
            ))),
        }
    }

    /// Removes the integer array `name`, which must have `shape`.
    pub fn ints(&mut self, name: &str, shape: &[usize]) -> Result<Vec<i64>> {
        match self.take(name, shape)? {
            Array {
                data: ArrayData::I64(v),
                ..
            } => Ok(v),
            a => Err(GmmError::ModelFormat(format!(
                "array `{name}` has dtype {}, expected I64",
                a.dtype_name()
            ))),
        }
    }

    /// The length of the 1-D array `name` (for arrays whose length the configuration does
    /// not give, such as the lower-bound history).
    pub fn len_1d(&self, name: &str) -> Result<usize> {
        match self.arrays.get(name).map(|a| a.shape.as_slice()) {
            Some([n]) => Ok(*n),
            Some(shape) => Err(GmmError::ModelFormat(format!(
                "array `{name}` has shape {shape:?}, expected one dimension"
            ))),
            None => Err(GmmError::ModelFormat(format!(
                "the file has no array `{name}`"
            ))),
        }
    }

    /// The arrays every mixture kind has ([`ModelWriter::mixture`]) for `k` components of
    /// `d` features, sizes checked before any shape is compared with them: the parameters,
    /// `lower_bound` and `lower_bounds`.
    pub fn mixture(
        &mut self,
        cov: CovarianceType,
        k: usize,
        d: usize,
    ) -> Result<(Params, f64, Vec<f64>)> {
        validate::check_sizes(cov, k, d)?;
        let shape = cov.param_shape(k, d);
        let params = Params {
            weights: self.floats("weights", &[k])?,
            means: self.floats("means", &[k, d])?,
            covariances: self.float_values("covariances", &shape)?,
            precisions_cholesky: self.float_values("precisions_cholesky", &shape)?,
        };
        let lower_bound = self.floats("lower_bound", &[])?[0];
        let n = self.len_1d("lower_bounds")?;
        Ok((params, lower_bound, self.floats("lower_bounds", &[n])?))
    }

    /// Whether the file has an array `name`.
    pub fn has(&self, name: &str) -> bool {
        self.arrays.contains_key(name)
    }

    /// Errors when an array was not taken (a file of another layout).
    pub fn finish(self) -> Result<()> {
        match self.arrays.keys().next() {
            Some(name) => Err(GmmError::ModelFormat(format!(
                "unexpected array `{name}` in the file"
            ))),
            None => Ok(()),
        }
    }
}

/// Builds a version-2 file: arrays added one by one, then [`save`](Self::save) with the
/// configuration.
pub struct ModelWriter {
    format: &'static str,
    prefer_f32: bool,
    file: TensorFile,
}

impl ModelWriter {
    /// A file of model kind `format` fitted in `precision` (f32 models store their arrays in
    /// f32 where that is exact).
    pub fn new(format: &'static str, precision: Precision) -> Self {
        Self {
            format,
            prefer_f32: precision == Precision::F32,
            file: TensorFile::default(),
        }
    }

    /// Adds a float array, stored losslessly (module docs).
    pub fn floats(mut self, name: &str, shape: Vec<usize>, values: &[f64]) -> Self {
        self.file
            .arrays
            .insert(name.into(), Array::float(shape, values, self.prefer_f32));
        self
    }

    /// Adds a float array from [`Values`]: f32 values are stored as they are, f64 values as
    /// by [`floats`](Self::floats).
    pub fn values(mut self, name: &str, shape: Vec<usize>, values: &Values) -> Self {
        let array = match values {
            Values::F32(v) => Array {
                shape,
                data: ArrayData::F32(v.clone()),
            },
            Values::F64(v) => Array::float(shape, v, self.prefer_f32),
        };
        self.file.arrays.insert(name.into(), array);
        self
    }

    /// The arrays every mixture kind has: `weights` `[K]`, `means` `[K, D]`, `covariances`
    /// and `precisions_cholesky` in scikit-learn's shapes for `cov`, `lower_bound` `[]` and
    /// `lower_bounds` `[n_iter]`.
    pub fn mixture(
        self,
        cov: CovarianceType,
        p: &Params,
        lower_bound: f64,
        lower_bounds: &[f64],
    ) -> Self {
        let (k, d) = (p.weights.len(), p.means.len() / p.weights.len().max(1));
        self.floats("weights", vec![k], &p.weights)
            .floats("means", vec![k, d], &p.means)
            .values("covariances", cov.param_shape(k, d), &p.covariances)
            .values(
                "precisions_cholesky",
                cov.param_shape(k, d),
                &p.precisions_cholesky,
            )
            .floats("lower_bound", vec![], &[lower_bound])
            .floats("lower_bounds", vec![lower_bounds.len()], lower_bounds)
    }

    /// Adds metadata entries besides the ones every file has (a file that wraps the model,
    /// such as an anomaly detector's, says what it adds here).
    pub fn metadata(mut self, extra: &[(String, String)]) -> Self {
        for (key, value) in extra {
            self.file.metadata.insert(key.clone(), value.clone());
        }
        self
    }

    /// Adds an integer array.
    pub fn ints(mut self, name: &str, shape: Vec<usize>, values: Vec<i64>) -> Self {
        self.file
            .arrays
            .insert(name.into(), Array::int(shape, values));
        self
    }

    /// Writes the file atomically with `config` (the scalar fields) as JSON metadata.
    pub fn save<C: Serialize>(mut self, path: &Path, config: &C) -> Result<()> {
        let config =
            serde_json::to_string(config).map_err(|e| GmmError::ModelFormat(e.to_string()))?;
        let meta = &mut self.file.metadata;
        meta.insert("format".into(), self.format.into());
        meta.insert("version".into(), BINARY_VERSION.to_string());
        meta.insert("config".into(), config);
        meta.insert("mixburn_version".into(), MIXBURN_VERSION.into());
        mixburn_data::write_safetensors(path, &self.file).map_err(|e| match e {
            DataError::Io { path, source } => GmmError::Io {
                path: path.to_path_buf(),
                source,
            },
            other => GmmError::ModelFormat(other.to_string()),
        })
    }
}

/// A model-format error about `path`, for the `load` functions: `path: reason`.
pub fn at_path(path: &Path, e: GmmError) -> GmmError {
    match e {
        GmmError::ModelFormat(reason) => {
            GmmError::ModelFormat(format!("{}: {reason}", path.display()))
        }
        other => other,
    }
}
