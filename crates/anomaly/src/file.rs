//! The detector's file: a versioned JSON envelope
//! `{format: "mixburn-anomaly", version, threshold, threshold_rule, mixture}` whose `mixture`
//! is the mixture's own model file (`Mixture::to_json`, either estimator). This one
//! `to_json` / `from_json` pair is the only place that knows the layout, so the format can
//! change (e.g. to safetensors arrays, as the model files) here alone.
//!
//! Loading validates as strictly as a fit's result: the format name and version, the
//! embedded mixture by its estimator's own `from_json` (lengths, finite values, ranges), the
//! threshold finite and the rule's parameter in range. A file of another kind (a mixture
//! model, an OOD detector) is refused with what it is.

use std::path::Path;

use mixburn_gmm::{FittedMixture, Mixture};
use serde_json::{json, Value};

use crate::detector::AnomalyDetector;
use crate::error::{AnomalyError, Result};
use crate::threshold::ThresholdRule;

/// Format name of detector files.
pub const ANOMALY_FORMAT: &str = "mixburn-anomaly";
/// Current version of the detector file.
pub const ANOMALY_FORMAT_VERSION: u64 = 1;

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
            "mixture": mixture,
        });
        serde_json::to_string_pretty(&v)
            .map_err(|e| mixburn_gmm::GmmError::ModelFormat(e.to_string()).into())
    }

    /// Parses and validates a detector written by [`to_json`](Self::to_json); the error's
    /// reason says what is wrong (the file name is added by [`load`](Self::load)).
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
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
            Some(ANOMALY_FORMAT_VERSION) => {}
            other => {
                return Err(format!(
                    "version {other:?} is not supported (this build reads version {ANOMALY_FORMAT_VERSION})"
                ))
            }
        }
        let threshold = v["threshold"]
            .as_f64()
            .ok_or("`threshold` is missing or not a number")?;
        let rule: ThresholdRule = serde_json::from_value(v["threshold_rule"].clone())
            .map_err(|e| format!("`threshold_rule`: {e}"))?;
        if !v["mixture"].is_object() {
            return Err("`mixture` is missing".into());
        }
        let mixture = FittedMixture::from_json(&v["mixture"].to_string())
            .map_err(|e| format!("the embedded mixture: {e}"))?;
        AnomalyDetector::from_parts(mixture, threshold, rule).map_err(|e| e.to_string())
    }

    /// Writes the detector to `path` atomically (`mixburn_data::write_atomic`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        mixburn_data::write_atomic(path, |w| w.write_all(text.as_bytes()))?;
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
            // A binary model or OOD detector file, not a detector of this kind: say which.
            let format = mixburn_data::parse_safetensors(&bytes, path)
                .ok()
                .and_then(|f| f.metadata.get("format").cloned());
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
