//! Sufficient statistics of a Gaussian mixture, accumulated chunk by chunk.
//!
//! They are additive: statistics of two disjoint row sets [`merge`](SufficientStats::merge) into
//! the statistics of their union, so a fit can stream data larger than memory, or split it
//! across devices and add the parts.

use burn::tensor::Tensor;

use crate::error::Result;
use crate::host::to_f64;

/// Responsibility-weighted moments for B restarts × K components.
#[derive(Clone, Debug)]
pub struct SufficientStats {
    /// `n_k = Σ_n r_nk`, shape `[B·K]`.
    pub nk: Tensor<1>,
    /// `Σ_n r_nk G(x_n)` with `G = [F(x), x, 1]`, shape `[B·K, T' + D + 1]`: second moments,
    /// first moments, then `n_k` (see [`crate::covariance`]).
    pub moments: Tensor<2>,
    /// `Σ_n log p(x_n)` per restart, shape `[B]` (zero for statistics that come from an
    /// initialisation rather than an E-step).
    pub log_likelihood: Tensor<1>,
    /// Number of rows these statistics summarise.
    pub n_samples: usize,
}

impl SufficientStats {
    /// Statistics of one chunk: responsibilities `resp: [n, B·K]`, features
    /// `g = [F(x), x, 1]: [n, T'+D+1]`, per-row log-likelihoods `log_lik: [n, B]`. One GEMM
    /// `rᵀ G` gives all moments; `n_k` is its last column.
    pub fn from_chunk(resp: Tensor<2>, g: Tensor<2>, log_lik: Tensor<2>) -> Self {
        let n = g.dims()[0];
        let moments = resp.transpose().matmul(g);
        let [bk, w] = moments.dims();
        let nk = moments.clone().slice([0..bk, w - 1..w]).reshape([bk]);
        Self {
            nk,
            moments,
            log_likelihood: log_lik.sum_dim(0).squeeze_dim::<1>(0),
            n_samples: n,
        }
    }

    /// Statistics of the union of two disjoint row sets (elementwise sums).
    pub fn merge(self, other: Self) -> Self {
        Self {
            nk: self.nk + other.nk,
            moments: self.moments + other.moments,
            log_likelihood: self.log_likelihood + other.log_likelihood,
            n_samples: self.n_samples + other.n_samples,
        }
    }

    /// Merges an optional accumulator with new statistics.
    pub fn accumulate(acc: Option<Self>, next: Self) -> Self {
        match acc {
            Some(acc) => acc.merge(next),
            None => next,
        }
    }

    /// Mean log-likelihood per sample of each restart (the EM lower bound), on the host.
    pub fn mean_log_likelihood(&self) -> Result<Vec<f64>> {
        let n = self.n_samples as f64;
        Ok(to_f64(self.log_likelihood.clone())?
            .into_iter()
            .map(|s| s / n)
            .collect())
    }
}
