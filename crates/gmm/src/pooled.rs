//! Two fits of one Gaussian (K = 1) on disjoint rows merged into the fit of all rows, exactly.
//!
//! A single Gaussian's maximum-likelihood fit is its rows' moments: EM's first M-step gives
//! the (weighted) mean `μ` and the covariance `Σ = S / n + r·I`, with `S = Σ_i w_i (x_i − μ)(x_i −
//! μ)ᵀ` the centred scatter, `n = Σ_i w_i` and `r` the `reg_covar`. So a fitted model and its
//! total weight are sufficient statistics: `S = n (Σ − r·I)`, and two of them merge by Chan et
//! al.'s pairwise update
//!
//! ```text
//! n = n_a + n_b,   δ = μ_b − μ_a,   μ = μ_a + δ n_b / n,   S = S_a + S_b + (n_a n_b / n) δ δᵀ
//! ```
//!
//! in each covariance type's own shape (O(K·D) for diag and spherical):
//!
//! | type | kept | merged scatter |
//! |---|---|---|
//! | full, tied | `Σ` `[D, D]` | `S + (n_a n_b / n) δ δᵀ` |
//! | diag | `σ²_j` `[D]` | `S_j + (n_a n_b / n) δ_j²` |
//! | spherical | `σ²` (the mean over features of `σ²_j`) | `S + (n_a n_b / n) ‖δ‖²` with `S = n D (σ² − r)` |
//!
//! A mixture of K > 1 components has no such update: its statistics depend on the
//! responsibilities, which change with the parameters (continue it with online EM instead,
//! [`crate::OnlineMixture`]).

use burn::tensor::Device;

use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::model::GaussianMixture;

impl GaussianMixture {
    /// The one-Gaussian fit of the rows of `self` (total weight `n_self`) and of `other`
    /// (total weight `n_other`), as a fit on all rows gives it (module docs), with its mean
    /// log-likelihood per row as the lower bound; factored on `device`.
    ///
    /// # Errors
    /// [`GmmError::InvalidSetting`] when either model has more than one component, the two
    /// differ in covariance type, features, `reg_covar` or precision, or a weight is not a
    /// positive finite number; the Cholesky's error when the merged covariance is not positive
    /// definite.
    pub fn merge_single(
        &self,
        n_self: f64,
        other: &GaussianMixture,
        n_other: f64,
        device: &Device,
    ) -> Result<GaussianMixture> {
        let bad = |reason: String| GmmError::invalid_setting("update", reason);
        if self.n_components != 1 || other.n_components != 1 {
            return Err(bad(format!(
                "a mixture of {} components has no exact update (its statistics depend on the \
                 responsibilities): only a single Gaussian does; continue a mixture with online \
                 EM (fit --warm-start --online)",
                self.n_components.max(other.n_components)
            )));
        }
        if (self.covariance_type, self.n_features, self.precision)
            != (other.covariance_type, other.n_features, other.precision)
            || self.reg_covar.to_bits() != other.reg_covar.to_bits()
        {
            return Err(bad(format!(
                "the new rows' fit ({} covariance, {} features, reg_covar {}, {}) differs \
                 from the model's ({}, {}, {}, {})",
                other.covariance_type,
                other.n_features,
                other.reg_covar,
                other.precision,
                self.covariance_type,
                self.n_features,
                self.reg_covar,
                self.precision
            )));
        }
        for (what, n) in [("the model's", n_self), ("the new rows'", n_other)] {
            if !(n.is_finite() && n > 0.0) {
                return Err(bad(format!(
                    "{what} total weight {n} is not a positive number"
                )));
            }
        }
        let (d, r) = (self.n_features, self.reg_covar);
        let n = n_self + n_other;
        let (ma, mb) = (&self.params.means, &other.params.means);
        let delta: Vec<f64> = mb.iter().zip(ma).map(|(b, a)| b - a).collect();
        let means: Vec<f64> = ma
            .iter()
            .zip(&delta)
            .map(|(a, dl)| a + dl * n_other / n)
            .collect();
        let c = n_self * n_other / n;
        let (ca, cb) = (&self.params.covariances, &other.params.covariances);
        // `Σ = S / n + r` on the entries that carry the ridge, `S / n` elsewhere.
        let merge = |i: usize, ridge: f64, outer: f64| {
            let sa = n_self * (ca.get(i).unwrap_or(f64::NAN) - ridge);
            let sb = n_other * (cb.get(i).unwrap_or(f64::NAN) - ridge);
            (sa + sb + c * outer) / n + ridge
        };
        let covariances: Vec<f64> = match self.covariance_type {
            CovarianceType::Full | CovarianceType::Tied => (0..d * d)
                .map(|i| {
                    let (row, col) = (i / d, i % d);
                    let ridge = if row == col { r } else { 0.0 };
                    merge(i, ridge, delta[row] * delta[col])
                })
                .collect(),
            CovarianceType::Diag => (0..d).map(|j| merge(j, r, delta[j] * delta[j])).collect(),
            CovarianceType::Spherical => {
                let norm2: f64 = delta.iter().map(|v| v * v).sum();
                vec![merge(0, r, norm2 / d as f64)]
            }
        };
        let mut merged = GaussianMixture::from_covariances(
            self,
            self.precision,
            vec![1.0],
            means,
            covariances,
            device,
        )?;
        let lb = mean_log_likelihood(&merged);
        merged.converged = true;
        merged.n_iter = 1;
        merged.lower_bound = lb;
        merged.lower_bounds = vec![lb];
        Ok(merged)
    }
}

/// The mean log-likelihood per row of the rows a single Gaussian was fitted on, from the model
/// alone: `−½ (D ln 2π + ln |Σ| + tr(Σ⁻¹ (Σ − r·I)))`, with `tr(Σ⁻¹) = ‖L‖²_F` for the precision
/// factor `L` (`Σ⁻¹ = L Lᵀ`) and `ln |Σ| = −2 Σ ln diag L`, in each type's shape.
fn mean_log_likelihood(m: &GaussianMixture) -> f64 {
    let (d, r) = (m.n_features, m.reg_covar);
    let l = &m.params.precisions_cholesky;
    let (log_det_l, frob2) = match m.covariance_type {
        CovarianceType::Full | CovarianceType::Tied => (
            (0..d)
                .map(|j| l.get(j * d + j).unwrap_or(f64::NAN).ln())
                .sum(),
            l.iter().map(|v| v * v).sum(),
        ),
        CovarianceType::Diag => (l.iter().map(f64::ln).sum(), l.iter().map(|v| v * v).sum()),
        CovarianceType::Spherical => {
            let s = l.get(0).unwrap_or(f64::NAN);
            (d as f64 * s.ln(), d as f64 * s * s)
        }
    };
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    -0.5 * (d as f64 * ln_2pi - 2.0 * log_det_l + d as f64 - r * frob2)
}
