//! A Gaussian mixture per class instead of one Gaussian per class: `K` components fitted by
//! `mixburn-gmm` on each class's features, scored by the best class's log-likelihood,
//! `score(z) = −max_c log p(z | c)`, `log p(z | c) = log Σ_k π_ck N(z | μ_ck, Σ_ck)`.
//!
//! The default covariance is diagonal: network features are wide (D in the hundreds), and
//! full or tied per-class mixtures need `K·D²` parameters per class (choose them explicitly
//! for narrow features).

use burn::tensor::Tensor;
use mixburn_backend::host::int_tensor;
use mixburn_gmm::Mixture;
use mixburn_gmm::{CovarianceType, GaussianMixture, GaussianMixtureConfig};

use crate::detector::{check_finite, validate_labels};
use crate::error::{OodError, Result};

/// One fitted mixture per class (module docs).
#[derive(Debug, Clone)]
pub struct ClassGmmDetector {
    models: Vec<GaussianMixture>,
    n_features: usize,
}

impl ClassGmmDetector {
    /// The mixture options used per class: `k` components, diagonal covariances,
    /// `reg_covar = 1e-4` (features are often nearly degenerate), 3 k-means restarts.
    pub fn default_config(k: usize) -> GaussianMixtureConfig {
        GaussianMixtureConfig::new(k)
            .with_covariance_type(CovarianceType::Diag)
            .with_reg_covar(1e-4)
            .with_n_init(3)
            .with_seed(0)
    }

    /// Fits `config` (its `n_components` per class) on each class's rows of `z`.
    pub fn fit(config: &GaussianMixtureConfig, z: &Tensor<2>, labels: &[i64]) -> Result<Self> {
        let [n, d] = z.dims();
        if n == 0 {
            return Err(OodError::Empty {
                what: "the features",
            });
        }
        let (c, idx) = validate_labels(labels, n)?;
        check_finite(z)?;
        let device = z.device();
        let mut models = Vec::with_capacity(c);
        for class in 0..c {
            let rows: Vec<i64> = (0..n)
                .filter(|&i| idx[i] == class)
                .map(|i| i as i64)
                .collect();
            let m = rows.len();
            if m < config.n_components {
                return Err(OodError::TooFewInClass { class, count: m });
            }
            let xc = z.clone().select(0, int_tensor(rows, [m], &device));
            models.push(mixburn_gmm::fit(config, &xc)?);
        }
        Ok(Self {
            models,
            n_features: d,
        })
    }

    /// The fitted mixtures, one per class.
    pub fn models(&self) -> &[GaussianMixture] {
        &self.models
    }

    /// `log p(z | c)` for every class, `[n, C]`.
    pub fn class_log_likelihoods(&self, z: &Tensor<2>) -> Result<Tensor<2>> {
        let [n, d] = z.dims();
        if d != self.n_features {
            return Err(OodError::WidthMismatch {
                expected: self.n_features,
                got: d,
            });
        }
        let cols = self
            .models
            .iter()
            .map(|m| Ok(m.score_samples(z)?.reshape([n, 1])))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(cols, 1))
    }

    /// OOD scores `−max_c log p(z | c)`, `[n]` (higher = more OOD).
    pub fn score(&self, z: &Tensor<2>) -> Result<Tensor<1>> {
        let n = z.dims()[0];
        Ok(self.class_log_likelihoods(z)?.max_dim(1).reshape([n]).neg())
    }
}
