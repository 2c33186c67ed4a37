//! # mixburn-anomaly
//!
//! Anomaly detection by Gaussian-mixture likelihood, on any fitted mixture of `mixburn-gmm`
//! (EM or variational, one code path through [`mixburn_gmm::Mixture`]):
//!
//! - score `= −log p(x)`, higher = more anomalous (pyod's `decision_function`);
//! - threshold by `contamination` (pyod's rule: the `100·(1 − c)` percentile of the training
//!   scores, NumPy's linear interpolation) or by a false-alarm rate on clean validation rows;
//! - flags `score > threshold`, and per row the most responsible component, its
//!   responsibility and its own `−log` weighted density (which cluster a flagged row failed).
//!
//! Map:
//! - [`detector`]: [`AnomalyDetector`] (fit, K fixed or by BIC, score, flag, explain),
//!   [`NanPolicy`].
//! - [`threshold`]: [`ThresholdRule`] and NumPy's [`percentile`](threshold::percentile).
//! - [`update`]: an updatable detector (one Gaussian) refitted on more rows without the first
//!   ones, exactly.
//! - [`head`]: [`AnomalyHead`], the detector as a Burn `Module` (differentiable scores).
//! - [`mod@file`]: the detector's file (versioned JSON embedding the mixture's model file).
//! - [`error`]: [`AnomalyError`], the one error type of the crate.
//!
//! ```no_run
//! use mixburn_anomaly::{AnomalyConfig, AnomalyDetector, Components};
//! # fn demo(x: mixburn_gmm::burn::tensor::Tensor<2>, new: mixburn_gmm::burn::tensor::Tensor<2>) -> mixburn_anomaly::Result<()> {
//! let config = AnomalyConfig::new(Components::Auto((1..=8).collect())).with_contamination(0.05);
//! let det = AnomalyDetector::fit(&config, &x)?;        // x: normal rows [N, D]
//! let scores = det.score(&new)?;                       // Tensor<1>, −log p(x)
//! let why = det.explain(&new, Default::default())?;    // flags, closest components
//! det.save("detector.json".as_ref())?;
//! # Ok(()) }
//! ```

pub mod detector;
pub mod error;
pub mod file;
pub mod head;
pub mod threshold;
pub mod update;

pub use detector::{AnomalyConfig, AnomalyDetector, Components, Explanation, NanPolicy};
pub use error::{AnomalyError, Result};
pub use file::{ANOMALY_FORMAT, ANOMALY_FORMAT_VERSION};
pub use head::{AnomalyHead, AnomalyHeadConfig};
pub use threshold::{ThresholdRule, DEFAULT_CONTAMINATION};
