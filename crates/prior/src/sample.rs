//! Ancestral sampling from the prior with a seeded host RNG (`StdRng`): a categorical draw of
//! the component from `π`, then `z = μ_k + σ_k ∘ ε` with `ε ~ N(0, I)`; the result is uploaded
//! to the prior's device in its dtype. The same seed gives the same samples on every backend.

use burn::tensor::{Int, Tensor};
use mixburn_backend::host::{int_tensor, tensor_from_f64, to_f64};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::error::PriorError;
use crate::prior::GmmPrior;

/// The prior's parameters on the host in f64: weights `[K]`, means `[K·D]`, standard deviations
/// `[K·D]` (from the floored log-variances).
struct HostParams {
    weights: Vec<f64>,
    means: Vec<f64>,
    std: Vec<f64>,
    d: usize,
}

impl GmmPrior {
    fn host_params(&self) -> Result<HostParams, PriorError> {
        let logits = to_f64(self.logits.val())?;
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        let weights = logits.iter().map(|l| (l - max).exp() / total).collect();
        let std = to_f64(self.log_variances())?
            .into_iter()
            .map(|lv| (0.5 * lv).exp())
            .collect();
        Ok(HostParams {
            weights,
            means: to_f64(self.means.val())?,
            std,
            d: self.latent_dim(),
        })
    }

    /// `n` samples `[n, D]` of `p(z)` and their components `[n]`, reproducible per `seed`
    /// (see the module docs).
    ///
    /// # Panics
    ///
    /// Only when reading the parameters back from the device fails; [`try_sample`](Self::try_sample)
    /// returns that as an error.
    pub fn sample(&self, n: usize, seed: u64) -> (Tensor<2>, Tensor<1, Int>) {
        self.try_sample(n, seed)
            .unwrap_or_else(|e| panic!("GmmPrior::sample: {e}"))
    }

    /// [`sample`](Self::sample) returning read-back failures as errors.
    pub fn try_sample(
        &self,
        n: usize,
        seed: u64,
    ) -> Result<(Tensor<2>, Tensor<1, Int>), PriorError> {
        let p = self.host_params()?;
        let d = p.d;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut z = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let k = categorical(&mut rng, &p.weights);
            draw(&mut rng, &p, k, &mut z);
            labels.push(k as i64);
        }
        let device = self.device();
        Ok((
            tensor_from_f64(z, [n, d], &device, self.dtype()),
            int_tensor(labels, [n], &device),
        ))
    }

    /// `n` samples `[n, D]` from component `k` alone, `μ_k + σ_k ∘ ε`, reproducible per `seed`.
    ///
    /// # Panics
    ///
    /// When `k ≥ K` (or the read-back fails); [`try_sample_component`](Self::try_sample_component)
    /// returns those as errors.
    pub fn sample_component(&self, k: usize, n: usize, seed: u64) -> Tensor<2> {
        self.try_sample_component(k, n, seed)
            .unwrap_or_else(|e| panic!("GmmPrior::sample_component: {e}"))
    }

    /// [`sample_component`](Self::sample_component) returning [`PriorError::InvalidSetting`]
    /// for `k ≥ K`.
    pub fn try_sample_component(
        &self,
        k: usize,
        n: usize,
        seed: u64,
    ) -> Result<Tensor<2>, PriorError> {
        let n_components = self.n_components();
        if k >= n_components {
            return Err(PriorError::invalid_setting("component", format!(
                "component {k} does not exist: the prior has {n_components} components, use 0..{n_components}"
            )));
        }
        let p = self.host_params()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut z = Vec::with_capacity(n * p.d);
        for _ in 0..n {
            draw(&mut rng, &p, k, &mut z);
        }
        Ok(tensor_from_f64(z, [n, p.d], &self.device(), self.dtype()))
    }
}

/// One draw from the categorical distribution with probabilities `p` (summing to 1).
fn categorical(rng: &mut StdRng, p: &[f64]) -> usize {
    let u = rng.random::<f64>();
    let mut acc = 0.0;
    for (i, w) in p.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    // Rounding left `acc` just below 1: take the last component with positive weight.
    p.iter().rposition(|&w| w > 0.0).unwrap_or(p.len() - 1)
}

/// Appends `μ_k + σ_k ∘ ε`, `ε ~ N(0, I_D)`, to `out`.
fn draw(rng: &mut StdRng, p: &HostParams, k: usize, out: &mut Vec<f64>) {
    let d = p.d;
    for j in 0..d {
        let e: f64 = StandardNormal.sample(rng);
        out.push(p.means[k * d + j] + p.std[k * d + j] * e);
    }
}
