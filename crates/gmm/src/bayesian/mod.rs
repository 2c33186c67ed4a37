//! The variational Bayesian Gaussian mixture, scikit-learn's `BayesianGaussianMixture`:
//! a Dirichlet-distribution or (truncated, stick-breaking) Dirichlet-process prior on the
//! weights, a Gaussian–Wishart prior on each component's mean and precision, and a factorised
//! posterior `q(π) Π_k q(μ_k, Λ_k)` fitted by coordinate ascent on the evidence lower bound.
//! Components the data do not need are driven to near-zero weight, so `n_components` is an
//! upper bound ([`BayesianGaussianMixture::n_effective_components`]).
//!
//! The loop is [`crate::em`]'s: data centred on their mean, one chunked pass
//! ([`crate::estep::em_pass`]) per iteration giving the responsibilities' statistics, then a
//! variational M-step on the host (K·D² values) and the lower bound; restarts are batched on
//! the component axis. The E-step's log-density is the ordinary Gaussian one (one GEMM per
//! chunk) under scikit-learn's `precisions_cholesky_` (the factor of `ν_k W_k`) with a
//! per-component constant in place of `log π_k` (see [`VariationalParams::estep_constants`]).
//!
//! Differences from scikit-learn: `lower_bound` is its total lower bound (as scikit-learn's
//! BGM, not per sample as [`crate::GaussianMixture`]'s); `warm_start` is not offered;
//! `resp_init` starts from given responsibilities; with `init_params` k-means++ or
//! random_from_data and tied covariances the starting tied scatter is that of the K chosen
//! rows (zero, plus `reg_covar`), where scikit-learn's `XᵀX − Σ n_k μ_k μ_kᵀ` over all rows
//! depends on the origin; the k-means of `init_params` kmeans is the crate's, so fits from it
//! agree with scikit-learn's in outcome, not bit for bit.
//!
//! One concept per file, as the EM side: `config.rs` (the settings), `posterior.rs` (the priors,
//! the variational posterior and its update), `fit.rs` ([`fit_bayesian`]), `model.rs` (the
//! fitted mixture and its files).

mod config;
mod fit;
mod model;
mod posterior;

pub use config::{BayesianGaussianMixtureConfig, WeightConcentrationPriorType};
pub use fit::fit_bayesian;
pub use model::BayesianGaussianMixture;
pub use posterior::{BayesianPriors, VariationalParams};

/// Name written into saved variational models.
pub const BAYESIAN_MODEL_FORMAT: &str = "mixburn-bgm";
/// Version of the files [`BayesianGaussianMixture::save`] writes (safetensors; version-1 JSON
/// files still load).
pub const BAYESIAN_MODEL_FORMAT_VERSION: u32 = crate::model_file::BINARY_VERSION;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    fn dp_post(a: Vec<f64>, b: Vec<f64>) -> VariationalParams {
        VariationalParams {
            params: Params::default(),
            weight_concentration: vec![a, b],
            mean_precision: vec![1.0; 3],
            degrees_of_freedom: vec![3.0; 3],
        }
    }

    #[test]
    fn stick_breaking_weights_follow_the_expected_sticks() {
        // a = 1 + n, b = γ + tail: E[v_k] = a/(a+b); E[π_k] = E[v_k] Π_{j<k} (1 − E[v_j]).
        let post = dp_post(vec![3.0, 2.0, 1.5], vec![1.0, 0.5, 0.1]);
        let w = post.expected_weights(WeightConcentrationPriorType::DirichletProcess);
        let raw = [
            3.0 / 4.0,
            2.0 / 2.5 * (1.0 / 4.0),
            1.5 / 1.6 * (1.0 / 4.0) * (0.5 / 2.5),
        ];
        let total: f64 = raw.iter().sum();
        for (got, want) in w.iter().zip(raw) {
            assert!((got - want / total).abs() < 1e-15);
        }
    }

    #[test]
    fn expected_log_weights_of_a_dirichlet_are_digamma_differences() {
        let post = VariationalParams {
            weight_concentration: vec![vec![2.0, 3.0, 5.0]],
            ..dp_post(vec![], vec![])
        };
        let e = post.expected_log_weights(WeightConcentrationPriorType::DirichletDistribution);
        // ψ(2) − ψ(10), from scipy.special.digamma.
        assert!((e[0] - (0.42278433509846713 - 2.251752589066721)).abs() < 1e-13);
    }
}
