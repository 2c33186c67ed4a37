//! # mixburn-metrics
//!
//! The metrics users compare against scikit-learn, on host-side labels and `f64` scores
//! (no Burn):
//!
//! - [`cluster`]: clustering accuracy (Hungarian), NMI and ARI against reference labels, and
//!   the contingency table (`sklearn.metrics` / SciPy definitions and edge cases).
//! - [`ood`]: AUROC, AUPR-In/Out, FPR at 95 % TPR, the ROC and precision–recall curves,
//!   thresholds at a target TPR (OpenOOD's `auc_and_fpr_recall` over scikit-learn).
//! - [`error`]: [`MetricsError`], the one error type of both.
//!
//! Sums are NumPy's pairwise summation (one private implementation), so results agree with
//! scikit-learn to rounding (`tests/metrics.rs` holds the fixtures).

pub mod cluster;
pub mod error;
pub mod ood;
mod sum;

pub use error::{MetricsError, Result};
