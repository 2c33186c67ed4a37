//! Squared Mahalanobis distances to many centres under one shared precision, in matmul form.
//!
//! With the precision factored as `P = F Fᵀ` (`F: [D, r]`: a precision Cholesky factor, or
//! a pseudo-inverse factor from [`crate::linalg::symmetric_pinv_factor`]) and a reference
//! point `o` (the data mean) subtracted for round-off,
//! `y = (x − o) F`, `m_c = (μ_c − o) F`:
//!
//! `d_c²(x) = (x − μ_c)ᵀ P (x − μ_c) = ‖y‖² − 2 y·m_c + ‖m_c‖²`,
//!
//! i.e. `zᵀPz − 2zᵀPμ_c + μ_cᵀPμ_c`: two GEMMs per chunk (`[n, D]·[D, r]`, `[n, r]·[r, C]`),
//! memory `O(n·(r + C))`, never `n × C × D`. Plain tensor ops, so the distances are
//! differentiable on an autodiff device.

use burn::tensor::Tensor;
use mixburn_backend::dense::product;

/// Centres and a shared precision factor, prepared for [`SharedPrecision::sq_distances`].
#[derive(Clone, Debug)]
pub struct SharedPrecision {
    /// Reference point `o`, `[1, D]`.
    pub origin: Tensor<2>,
    /// Precision factor `F`, `[D, r]`, `P = F Fᵀ`.
    pub factor: Tensor<2>,
    /// Projected centres `m_cᵀ`, `[r, C]`.
    pub centres_t: Tensor<2>,
    /// `‖m_c‖²`, `[1, C]`.
    pub centres_sq: Tensor<2>,
}

impl SharedPrecision {
    /// Prepares centres `means: [C, D]` under `P = F Fᵀ`, relative to `origin: [1, D]`.
    pub fn new(origin: Tensor<2>, factor: Tensor<2>, means: Tensor<2>) -> Self {
        let m = (means - origin.clone()).matmul(factor.clone()); // [C, r]
        let centres_sq = m.clone().square().sum_dim(1).transpose(); // [1, C]
        Self {
            origin,
            factor,
            centres_t: m.transpose(),
            centres_sq,
        }
    }

    /// Rebuilds the same operands from their parts (e.g. module parameters).
    pub fn from_parts(
        origin: Tensor<2>,
        factor: Tensor<2>,
        centres_t: Tensor<2>,
        centres_sq: Tensor<2>,
    ) -> Self {
        Self {
            origin,
            factor,
            centres_t,
            centres_sq,
        }
    }

    /// Number of centres C.
    pub fn n_centres(&self) -> usize {
        self.centres_t.dims()[1]
    }

    /// Feature width D.
    pub fn n_features(&self) -> usize {
        self.factor.dims()[0]
    }

    /// `y = (x − o) F`, `[n, r]`.
    pub fn project(&self, x: Tensor<2>) -> Tensor<2> {
        project(x, self.origin.clone(), self.factor.clone())
    }

    /// `d_c²(x)` for a chunk `x: [n, D]`, `[n, C]`, clamped at 0 against round-off.
    pub fn sq_distances(&self, x: Tensor<2>) -> Tensor<2> {
        let y = self.project(x);
        let norm = y.clone().square().sum_dim(1); // [n, 1]
        let cross = product(y, self.centres_t.clone()); // [n, C]
        (norm + self.centres_sq.clone() - cross.mul_scalar(2.0)).clamp_min(0.0)
    }
}

/// `y = (x − o) F`, `[n, r]`, for `x` `[n, D]`, an origin `o` `[1, D]` and a precision factor
/// `F` `[D, r]` (`P = F Fᵀ`).
pub fn project(x: Tensor<2>, origin: Tensor<2>, factor: Tensor<2>) -> Tensor<2> {
    product(x - origin, factor)
}

/// The squared Mahalanobis distance to a single centre `o` under `P = F Fᵀ`:
/// `d²(x) = (x − o) P (x − o)ᵀ = ‖(x − o) F‖²`, `[n, 1]` (one GEMM, no `D×D` product).
pub fn sq_distance_to(x: Tensor<2>, origin: Tensor<2>, factor: Tensor<2>) -> Tensor<2> {
    project(x, origin, factor).square().sum_dim(1)
}
