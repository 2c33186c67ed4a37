//! The detector's file. Written as safetensors: the mixture's own model file (its arrays and
//! `config`, either estimator, loadable by `mixburn score` as that mixture) with one more
//! metadata entry, `anomaly` = `{format: "mixburn-anomaly", version: 2, threshold,
//! threshold_rule, kept_count}` (`kept_count`: the total weight of the training rows of an
//! updatable detector, `null` otherwise). Version-1 detector files, a JSON envelope
//! `{format, version: 1, threshold, threshold_rule, mixture}` embedding the mixture's JSON
//! model file ([`to_json`](AnomalyDetector::to_json)), still load. This file is the only
//! place that knows either layout.
//!
//! Loading validates as strictly as a fit's result: the format name and version, the
//! mixture by its estimator's own checks (lengths, finite values, ranges, factors), the
//! threshold finite and the rule's parameter in range. A file of another kind (a mixture
//! model, an OOD detector) is refused with what it is.

use std::path::Path;

use mixburn_gmm::FittedMixture;
use serde_json::{json, Value};

use crate::detector::AnomalyDetector;
use crate::error::{AnomalyError, Result};
use crate::threshold::ThresholdRule;

/// Format name of detector files.
pub const ANOMALY_FORMAT: &str = "mixburn-anomaly";
/// Version of the JSON detector files ([`AnomalyDetector::to_json`]), still read.
pub const ANOMALY_FORMAT_VERSION: u64 = 1;
/// Version of the safetensors detector files [`AnomalyDetector::save`] writes.
pub const ANOMALY_BINARY_VERSION: u64 = 2;
/// The metadata entry of a safetensors detector file that makes it a detector.
const ANOMALY_METADATA_KEY: &str = "anomaly";

/// Largest detector file read, 16 GiB (a full mixture with K = 64 at D = 2048 is about
/// 10 GB of JSON); a larger file is refused before it is read.
const MAX_FILE_BYTES: u64 = 1 << 34;

impl AnomalyDetector {
    /// The detector as versioned JSON (module docs).
    pub fn to_json(&self) -> Result<String> {
        let mixture: Value = serde_json::from_str(&self.mixture.to_json()?)
            .map_err(|e| mixburn_gmm::GmmError::ModelFormat(e.to_string()))?;
        let v = json!({
            "format": ANOMALY_FORMAT,
            "version": ANOMALY_FORMAT_VERSION,
            "threshold": self.threshold,
            "threshold_rule": self.rule,
            "kept_count": self.kept_count,
            "mixture": mixture,
        });
        serde_json::to_string_pretty(&v)
            .map_err(|e| mixburn_gmm::GmmError::ModelFormat(e.to_string()).into())
    }

    /// Parses and validates a detector written by [`to_json`](Self::to_json); the error's
    /// reason says what is wrong (the file name is added by [`load`](Self::load)).
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let (threshold, rule, kept) = header(&v, ANOMALY_FORMAT_VERSION)?;
        if !v["mixture"].is_object() {
            return Err("`mixture` is missing".into());
        }
        let mixture = FittedMixture::from_json(&v["mixture"].to_string())
            .map_err(|e| format!("the embedded mixture: {e}"))?;
        assemble(mixture, threshold, rule, kept)
    }

    /// Writes the detector to `path` as safetensors (module docs), atomically through the
    /// mixture's own model-file writer.
    pub fn save(&self, path: &Path) -> Result<()> {
        let v = json!({
            "format": ANOMALY_FORMAT,
            "version": ANOMALY_BINARY_VERSION,
            "threshold": self.threshold,
            "threshold_rule": self.rule,
            "kept_count": self.kept_count,
        });
        self.mixture
            .save_with_metadata(path, &[(ANOMALY_METADATA_KEY.into(), v.to_string())])?;
        Ok(())
    }

    /// Reads and validates a detector written by [`save`](Self::save) (module docs).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |reason: String| AnomalyError::Format {
            path: path.to_path_buf(),
            reason,
        };
        // A regular file only (no FIFO wait, no endless device), its size known first.
        let (_, len) = mixburn_data::open_input(path)?;
        if len > MAX_FILE_BYTES {
            return Err(bad(format!("{len} bytes is larger than any detector")));
        }
        let bytes = mixburn_data::read_input(path)?;
        if mixburn_data::is_safetensors(&bytes) {
            let file = mixburn_data::parse_safetensors(&bytes, path)?;
            if let Some(text) = file.metadata.get(ANOMALY_METADATA_KEY) {
                let v: Value = serde_json::from_str(text)
                    .map_err(|e| bad(format!("its `anomaly` metadata is not JSON: {e}")))?;
                let (threshold, rule, kept) = header(&v, ANOMALY_BINARY_VERSION).map_err(bad)?;
                let mixture = FittedMixture::from_content(
                    mixburn_gmm::model_file::ModelContent::from_safetensors(file)?,
                )
                .map_err(|e| bad(format!("the mixture: {e}")))?;
                return assemble(mixture, threshold, rule, kept).map_err(bad);
            }
            // A binary model or OOD detector file, not a detector of this kind: say which.
            let format = file.metadata.get("format").cloned();
            return Err(bad(match format.as_deref() {
                Some(f @ ("mixburn-gmm" | "mixburn-bgm")) => {
                    format!("it is a mixture model file (format `{f}`), not an anomaly detector")
                }
                Some(f) => format!("format is `{f}`, expected `{ANOMALY_FORMAT}`"),
                None => format!("a safetensors file without a format; expected `{ANOMALY_FORMAT}`"),
            }));
        }
        let text = String::from_utf8(bytes).map_err(|e| bad(format!("is not UTF-8 text ({e})")))?;
        Self::from_json(&text).map_err(bad)
    }
}

/// The detector from a file's parts, checked as a fit's result: the threshold and its rule
/// ([`AnomalyDetector::from_parts`]), and a kept count only over a single Gaussian
/// ([`AnomalyDetector::updatable`]).
fn assemble(
    mixture: FittedMixture,
    threshold: f64,
    rule: ThresholdRule,
    kept: Option<f64>,
) -> std::result::Result<AnomalyDetector, String> {
    let det = AnomalyDetector::from_parts(mixture, threshold, rule).map_err(|e| e.to_string())?;
    match kept {
        Some(n) => det.updatable(n).map_err(|e| format!("`kept_count`: {e}")),
        None => Ok(det),
    }
}

/// The detector's own fields of a file of `version`: the format name and version checked,
/// the threshold, its rule and the kept count read (checked by [`assemble`]).
fn header(
    v: &Value,
    version: u64,
) -> std::result::Result<(f64, ThresholdRule, Option<f64>), String> {
    match v["format"].as_str() {
        Some(ANOMALY_FORMAT) => {}
        Some(f @ ("mixburn-gmm" | "mixburn-bgm")) => {
            return Err(format!(
                "it is a mixture model file (format `{f}`), not an anomaly detector"
            ))
        }
        Some(f) => return Err(format!("format is `{f}`, expected `{ANOMALY_FORMAT}`")),
        None => return Err(format!("no `format` field; expected `{ANOMALY_FORMAT}`")),
    }
    match v["version"].as_u64() {
        Some(found) if found == version => {}
        other => {
            return Err(format!(
                "version {other:?} is not supported here (this encoding has version {version})"
            ))
        }
    }
    let threshold = v["threshold"]
        .as_f64()
        .ok_or("`threshold` is missing or not a number")?;
    let rule: ThresholdRule = serde_json::from_value(v["threshold_rule"].clone())
        .map_err(|e| format!("`threshold_rule`: {e}"))?;
    let kept = match &v["kept_count"] {
        Value::Null => None,
        n => Some(n.as_f64().ok_or("`kept_count` is not a number")?),
    };
    Ok((threshold, rule, kept))
}
