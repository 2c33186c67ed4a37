//! # mixburn-ood
//!
//! Deep Mahalanobis out-of-distribution detection (Lee et al. 2018) on network features,
//! built on the numerics of `mixburn-gmm` (its class statistics, pseudo-inverse factor and
//! matmul-form distances; no second Cholesky or distance kernel here).
//!
//! Map:
//! - [`detector`]: [`MahalanobisDetector`] — class means + tied covariance, the Mahalanobis,
//!   relative and Mahalanobis++ scores, streaming fits from mergeable statistics, JSON files.
//! - [`head`]: [`MahalanobisHead`], the fitted detector as a Burn `Module` for a network's
//!   forward pass (saved with Burn's record format).
//! - [`class_gmm`]: [`ClassGmmDetector`], a Gaussian mixture per class.
//! - [`ensemble`]: the multi-layer ensemble (logistic regression over per-layer scores).
//! - [`preprocess`]: input pre-processing (a signed-gradient step towards the closest class).
//!
//! The OOD metrics (AUROC, AUPR-In/Out, FPR at 95 % TPR, thresholds) are in
//! `mixburn-metrics`, with the clustering metrics.
//!
//! Every score is "higher = more out-of-distribution".

pub mod class_gmm;
pub mod detector;
pub mod ensemble;
pub mod error;
pub mod head;
pub mod preprocess;

pub use class_gmm::ClassGmmDetector;
pub use detector::{DetectorConfig, DetectorParams, Kept, MahalanobisDetector, Method};
pub use error::{OodError, Result};
pub use head::{MahalanobisHead, MahalanobisHeadConfig};
