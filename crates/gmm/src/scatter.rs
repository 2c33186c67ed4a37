//! Mergeable class-conditional moments with one pooled (tied) covariance.
//!
//! For labelled rows `x_i` with classes `c(i) ∈ 0..C` the statistics are the counts `n_c`, the
//! class means `μ_c` and the pooled within-class scatter
//! `W = Σ_c Σ_{i∈c} (x_i − μ_c)(x_i − μ_c)ᵀ`, from which the tied covariance `Σ = W / N`
//! (Lee et al. 2018) and the background covariance of all rows
//! `Σ₀ = (W + Σ_c n_c (μ_c − μ₀)(μ_c − μ₀)ᵀ) / N` (Ren et al. 2021) follow.
//!
//! Chunks are summarised exactly (rows centred on their own class mean before the one GEMM
//! `X̃ᵀX̃`, so f32 stays accurate far from the origin) and merged with Chan et al.'s pairwise
//! update: `n = n_a + n_b`, `δ_c = μ_c^b − μ_c^a`, `μ_c = μ_c^a + δ_c n_c^b / n_c`,
//! `W = W_a + W_b + Σ_c (n_c^a n_c^b / n_c) δ_c δ_cᵀ` (one GEMM `Δᵀ diag(w) Δ`). Any split of the
//! rows over chunks or workers therefore gives the statistics of one pass over all rows.

use burn::tensor::Tensor;

use crate::error::{GmmError, Result};
use mixburn_backend::host::{int_tensor, tensor_from_f64};

/// Counts, class means and pooled within-class scatter of labelled rows (module docs).
#[derive(Clone, Debug)]
pub struct ClassScatter {
    /// Rows per class, `[C]`, on the host.
    pub counts: Vec<f64>,
    /// Class means `[C, D]` (zero rows for classes without samples).
    pub means: Tensor<2>,
    /// Pooled within-class scatter `W` `[D, D]`.
    pub scatter: Tensor<2>,
}

impl ClassScatter {
    /// Statistics of one chunk `x: [n, D]` with `labels` in `0..n_classes`.
    pub fn from_chunk(x: &Tensor<2>, labels: &[usize], n_classes: usize) -> Result<Self> {
        Self::from_weighted_chunk(x, labels, n_classes, None)
    }

    /// As [`from_chunk`](Self::from_chunk), each row counting `w_n` times (`n_c = Σ w_n`,
    /// weighted means and scatter; integer weights give the statistics of repeated rows).
    pub fn from_weighted_chunk(
        x: &Tensor<2>,
        labels: &[usize],
        n_classes: usize,
        weights: Option<&[f64]>,
    ) -> Result<Self> {
        let n = x.dims()[0];
        if labels.len() != n || weights.is_some_and(|w| w.len() != n) {
            return Err(GmmError::DimensionMismatch {
                what: "labels (and sample weights) vs feature rows".into(),
                expected: n,
                got: if labels.len() != n {
                    labels.len()
                } else {
                    weights.map_or(0, <[f64]>::len)
                },
            });
        }
        if let Some(bad) = labels.iter().find(|&&c| c >= n_classes) {
            return Err(GmmError::invalid_setting(
                "labels",
                format!("label {bad} is outside 0..{n_classes}"),
            ));
        }
        let device = x.device();
        let dtype = x.dtype();
        let mut counts = vec![0.0; n_classes];
        for (i, &c) in labels.iter().enumerate() {
            counts[c] += weights.map_or(1.0, |w| w[i]);
        }
        let w_col = weights.map(|w| tensor_from_f64(w.to_vec(), [n, 1], &device, dtype));
        let idx = int_tensor(labels.iter().map(|&c| c as i64).collect(), [n], &device);
        // Sums per class: S = (w ∘ R)ᵀ X with the one-hot labels R (one GEMM).
        let mut onehot = crate::kmeans::one_hot(idx.clone().reshape([n, 1, 1]), n_classes, dtype);
        if let Some(w) = &w_col {
            onehot = onehot * w.clone();
        }
        let sums = onehot.transpose().matmul(x.clone());
        let inv: Vec<f64> = counts
            .iter()
            .map(|&m| if m > 0.0 { 1.0 / m } else { 0.0 })
            .collect();
        let means = sums * tensor_from_f64(inv, [n_classes, 1], &device, dtype);
        let centred = x.clone() - means.clone().select(0, idx);
        let weighted = match &w_col {
            Some(w) => centred.clone() * w.clone(),
            None => centred.clone(),
        };
        let scatter = weighted.transpose().matmul(centred);
        Ok(Self {
            counts,
            means,
            scatter,
        })
    }

    /// The same statistics on `device` (a shard's, moved to the client to be merged).
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        use crate::source::on_device;
        Self {
            counts: self.counts,
            means: on_device(&self.means, device),
            scatter: on_device(&self.scatter, device),
        }
    }

    /// Number of classes C.
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    /// Total number of rows N.
    pub fn n_samples(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// The statistics of both sets of rows together (Chan et al.'s update, module docs).
    pub fn merge(self, other: Self) -> Result<Self> {
        let (c, d) = (self.n_classes(), self.means.dims()[1]);
        if other.n_classes() != c || other.means.dims()[1] != d {
            return Err(GmmError::DimensionMismatch {
                what: "merging class statistics (classes x features)".into(),
                expected: c * d,
                got: other.n_classes() * other.means.dims()[1],
            });
        }
        let device = self.means.device();
        let dtype = self.means.dtype();
        let mut ratio = vec![0.0; c]; // n_b / n
        let mut weight = vec![0.0; c]; // n_a n_b / n
        let mut counts = vec![0.0; c];
        for i in 0..c {
            let (na, nb) = (self.counts[i], other.counts[i]);
            counts[i] = na + nb;
            if counts[i] > 0.0 {
                ratio[i] = nb / counts[i];
                weight[i] = na * nb / counts[i];
            }
        }
        let delta = other.means - self.means.clone();
        let means = self.means + delta.clone() * tensor_from_f64(ratio, [c, 1], &device, dtype);
        let weighted = delta.clone() * tensor_from_f64(weight, [c, 1], &device, dtype);
        let scatter = self.scatter + other.scatter + delta.transpose().matmul(weighted);
        Ok(Self {
            counts,
            means,
            scatter,
        })
    }

    /// `merge` folded over an optional accumulator.
    pub fn accumulate(acc: Option<Self>, next: Self) -> Result<Self> {
        match acc {
            None => Ok(next),
            Some(a) => a.merge(next),
        }
    }

    /// The overall mean `μ₀ = Σ_c n_c μ_c / N`, `[1, D]`.
    pub fn total_mean(&self) -> Tensor<2> {
        let c = self.n_classes();
        let device = self.means.device();
        let w: Vec<f64> = self.counts.iter().map(|m| m / self.n_samples()).collect();
        tensor_from_f64(w, [1, c], &device, self.means.dtype()).matmul(self.means.clone())
    }

    /// The tied covariance `Σ = W / N` (biased, as Lee et al.).
    pub fn tied_covariance(&self) -> Tensor<2> {
        self.scatter.clone().div_scalar(self.n_samples())
    }

    /// The covariance of all rows ignoring labels,
    /// `Σ₀ = (W + Σ_c n_c (μ_c − μ₀)(μ_c − μ₀)ᵀ) / N`.
    pub fn background_covariance(&self) -> Tensor<2> {
        let c = self.n_classes();
        let device = self.means.device();
        let dev = self.means.clone() - self.total_mean();
        let n = tensor_from_f64(self.counts.clone(), [c, 1], &device, self.means.dtype());
        let between = dev.clone().transpose().matmul(dev * n);
        (self.scatter.clone() + between).div_scalar(self.n_samples())
    }
}
