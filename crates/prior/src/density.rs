//! Log-densities of the prior in matmul form: `log_joint`, `log_prob`, (log-)responsibilities.
//!
//! With precisions `P_kj = 1/σ²_kj = exp(−max(log_var_kj, floor))`, the Mahalanobis term of every
//! (sample, component) pair is two GEMMs and a broadcast, never an `[N, K, D]` tensor:
//!
//! `Σ_j (z_j − μ_kj)² P_kj = (z²)·Pᵀ − 2 z·(μ∘P)ᵀ + Σ_j μ_kj² P_kj`.
//!
//! Both `z` and `μ` are first shifted by the (detached) mean of the component means, which leaves
//! every value and gradient unchanged (the expression is translation invariant) but keeps the
//! expanded form from cancelling when the latents sit far from the origin.

use std::f64::consts::PI;

use burn::tensor::Tensor;

use crate::prior::GmmPrior;

/// Row-wise `log Σ_k exp(x_nk)` of `x` `[N, K]`, `[N]`, computed as
/// `m_n + log Σ_k exp(x_nk − m_n)` with `m_n = max_k x_nk`. The max is detached: the result's
/// gradient is then exactly `softmax(x)` (the max's contribution cancels analytically). A row
/// whose max is infinite uses `m_n = 0`, so an all-`−inf` row gives `−inf`, not NaN.
pub(crate) fn logsumexp_rows(x: Tensor<2>) -> Tensor<1> {
    mixburn_gmm::logsumexp::log_sum_exp(x, 1).flatten(0, 1)
}

/// Everything the densities and the KL need from the parameters, computed once per call (one
/// pass over the `[K, D]` parameters, shared by `log_joint` and the KL when both are needed).
pub(crate) struct Terms {
    /// Detached mean of the component means `[1, D]`.
    centre: Tensor<2>,
    /// `Pᵀ`, `[D, K]`.
    prec_t: Tensor<2>,
    /// `2 (μ_c ∘ P)ᵀ` with centred means, `[D, K]`.
    two_mean_prec_t: Tensor<2>,
    /// `Σ_j μ_c,kj² P_kj`, `[1, K]`.
    mean_quad: Tensor<2>,
    /// `Σ_j log σ²_kj` (floored), `[1, K]`.
    pub(crate) sum_log_var: Tensor<2>,
    /// `log π_k`, `[1, K]`.
    pub(crate) log_weights: Tensor<2>,
}

impl Terms {
    pub(crate) fn new(prior: &GmmPrior) -> Self {
        let means = prior.means.val();
        let log_var = prior.log_variances();
        let k = means.dims()[0];
        let centre = means.clone().mean_dim(0).detach();
        let means = means - centre.clone();
        let prec = log_var.clone().neg().exp();
        let mean_prec = means.clone() * prec.clone();
        let mean_quad = (mean_prec.clone() * means).sum_dim(1).transpose();
        Self {
            centre,
            prec_t: prec.transpose(),
            two_mean_prec_t: mean_prec.mul_scalar(2.0).transpose(),
            mean_quad,
            sum_log_var: log_var.sum_dim(1).transpose(),
            log_weights: prior.log_weights().reshape([1, k]),
        }
    }

    /// `Σ_j ((x_nj − μ_kj)² + s_nj) / σ²_kj`, `[N, K]` (`s` = 0 when `None`).
    pub(crate) fn quadratic(&self, x: Tensor<2>, extra: Option<Tensor<2>>) -> Tensor<2> {
        let xc = x - self.centre.clone();
        let sq = xc.clone().square();
        let sq = match extra {
            Some(s) => sq + s,
            None => sq,
        };
        sq.matmul(self.prec_t.clone()) - xc.matmul(self.two_mean_prec_t.clone())
            + self.mean_quad.clone()
    }

    /// `log π_k + log N(z_n | μ_k, diag σ_k²)`, `[N, K]` (see [`GmmPrior::log_joint`]).
    pub(crate) fn log_joint(&self, z: Tensor<2>) -> Tensor<2> {
        let d = self.centre.dims()[1] as f64;
        let constant = self.log_weights.clone()
            - self
                .sum_log_var
                .clone()
                .add_scalar(d * (2.0 * PI).ln())
                .mul_scalar(0.5);
        constant - self.quadratic(z, None).mul_scalar(0.5)
    }
}

/// `log q(k | z_n) = x_nk − logsumexp_k x_nk` of a `[N, K]` log-joint (a log-softmax over k).
pub(crate) fn log_softmax_rows(lj: Tensor<2>) -> Tensor<2> {
    let n = lj.dims()[0];
    let lse = logsumexp_rows(lj.clone()).reshape([n, 1]);
    lj - lse
}

impl GmmPrior {
    /// The input cast to the parameters' dtype (a no-op when it already is).
    pub(crate) fn cast_in(&self, x: Tensor<2>) -> Tensor<2> {
        x.cast(self.dtype())
    }

    /// `log π_k + log N(z_n | μ_k, diag σ_k²)`, `[N, K]`:
    ///
    /// `log π_k − ½ Σ_j (log 2π + log σ²_kj) − ½ Σ_j (z_nj − μ_kj)² / σ²_kj`,
    ///
    /// the last sum as `(z²)·(1/σ²)ᵀ − 2 z·(μ/σ²)ᵀ + Σ_j μ²/σ²` (two matmuls, see the module
    /// docs). `z` is `[N, D]` (cast to the prior's dtype); a `z` with another number of columns
    /// than `latent_dim` panics in the matmul.
    pub fn log_joint(&self, z: Tensor<2>) -> Tensor<2> {
        Terms::new(self).log_joint(self.cast_in(z))
    }

    /// `log p(z_n) = logsumexp_k log_joint(z)_nk`, `[N]`, with the row max subtracted (and
    /// detached, so the gradient is exactly the responsibilities): no underflow even when every
    /// component density is far below the smallest float.
    pub fn log_prob(&self, z: Tensor<2>) -> Tensor<1> {
        logsumexp_rows(self.log_joint(z))
    }

    /// `log q(k | z_n) = log_joint(z)_nk − log p(z_n)`, `[N, K]` (a log-softmax over k; finite
    /// where the responsibility itself underflows to 0).
    pub fn log_responsibilities(&self, z: Tensor<2>) -> Tensor<2> {
        log_softmax_rows(self.log_joint(z))
    }

    /// `q(k | z_n) = softmax_k log_joint(z)_nk`, `[N, K]` (rows sum to 1).
    pub fn responsibilities(&self, z: Tensor<2>) -> Tensor<2> {
        self.log_responsibilities(z).exp()
    }
}
