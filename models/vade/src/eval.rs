//! Evaluation: predicted clusters (`argmax_k q(c = k | μ̃)`), ACC / NMI / ARI against the true
//! labels (from `mixburn_metrics::cluster`), and the 2-D PCA view of the latent means.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use mixburn_backend::host::to_f64;
/// The project's one eigen-solver (`mixburn_gmm::linalg`), re-exported where the PCA picture
/// uses it.
pub use mixburn_gmm::linalg::symmetric_eigen;
use mixburn_gmm::pass::Pass;
use mixburn_metrics::cluster::{adjusted_rand_index, clustering_accuracy, normalized_mutual_info};
use serde::Serialize;

use crate::checkpoint::{load_model, read_state, CheckpointState, ClusterMetrics, Phase};
use crate::data::Dataset;
use crate::error::{Result, VadeError};
use crate::model::Vade;

/// ACC (Hungarian), NMI (arithmetic) and ARI of `predicted` against `truth`.
pub fn cluster_metrics(truth: &[i64], predicted: &[i64]) -> Result<ClusterMetrics> {
    Ok(ClusterMetrics {
        acc: clustering_accuracy(truth, predicted)?,
        nmi: normalized_mutual_info(truth, predicted)?,
        ari: adjusted_rand_index(truth, predicted)?,
    })
}

/// The outcome of [`evaluate`].
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// ACC / NMI / ARI of the predicted clusters.
    pub metrics: ClusterMetrics,
    /// Predicted cluster of each image.
    pub predicted: Vec<i64>,
    /// Encoder means μ̃, `[N, D]` (no autodiff).
    pub means: Tensor<2>,
}

/// Encodes every image (`chunk` rows at a time), predicts `argmax_k γ_k(μ̃)` and scores the
/// prediction against the data set's labels. `model` should be a validation snapshot
/// ([`Module::valid`](burn::module::Module::valid)).
pub fn evaluate(model: &Vade, data: &Dataset, chunk: usize) -> Result<Evaluation> {
    let means = model.encode_means(&data.images, chunk);
    let predicted = model.predict_from_means(means.clone())?;
    let metrics = cluster_metrics(&data.labels, &predicted)?;
    Ok(Evaluation {
        metrics,
        predicted,
        means,
    })
}

/// The negative ELBO and its two terms, averaged over the images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ElboTerms {
    /// `recon + kl` (lower is better).
    pub neg_elbo: f64,
    /// Mean `Σ_j BCE(x_j, decoder(z)_j)`.
    pub recon: f64,
    /// Mean VaDE KL term.
    pub kl: f64,
}

/// VaDE's negative ELBO averaged over all images, with one draw of ε per image from the stream
/// seeded by `seed`: `(1/N) Σ_i [Σ_j BCE(x_ij, decoder(z_i)_j) + KL_vade(μ̃_i, log σ̃²_i)]`,
/// `z_i = μ̃_i + σ̃_i ε_i` ([`Vade::elbo_loss`], `chunk` rows at a time; the result does not
/// depend on `chunk`). It needs no labels, so it can choose between runs of different seeds,
/// as scikit-learn's `n_init` keeps the restart with the best lower bound.
pub fn mean_neg_elbo(model: &Vade, data: &Dataset, chunk: usize, seed: u64) -> Result<ElboTerms> {
    let [n, _] = data.images.dims();
    let d = model.latent_dim();
    let eps =
        crate::train::evaluation_noise(seed, n, d, &data.images.device(), data.images.dtype());
    let sums = Pass::new(&data.images, chunk)
        .fold(
            || [0.0f64; 3],
            |mut sums, s, len| -> Result<_> {
                let x = data.images.clone().narrow(0, s, len);
                let loss = model.elbo_loss(x, eps.clone().narrow(0, s, len));
                for (acc, v) in sums.iter_mut().zip(to_f64(loss.stats())?) {
                    *acc += v * len as f64;
                }
                Ok(sums)
            },
            |a, b| Ok([a[0] + b[0], a[1] + b[1], a[2] + b[2]]),
        )?
        .unwrap_or_default();
    let mean = |v: f64| v / n.max(1) as f64;
    Ok(ElboTerms {
        neg_elbo: mean(sums[0]),
        recon: mean(sums[1]),
        kl: mean(sums[2]),
    })
}

/// What [`evaluate_run`] returns.
#[derive(Debug)]
pub struct RunEvaluation {
    /// The run's state (configuration, phase, epochs done).
    pub state: CheckpointState,
    /// The model of its latest checkpoint (no autodiff).
    pub model: Vade,
    /// Its evaluation on the data.
    pub evaluation: Evaluation,
}

/// A saved run evaluated on `data`: the model of the checkpoint `state.json` points at, loaded on
/// `device`, then [`evaluate`]d.
///
/// # Errors
/// [`VadeError::NoCheckpoint`] / [`VadeError::Checkpoint`] for a missing or damaged run;
/// [`VadeError::InvalidSetting`] when the run is still pre-training (its prior is not fitted yet, so
/// it has no clusters: wait for the GMM initialisation) or when the images are not the size
/// the model was trained on.
pub fn evaluate_run(
    run_dir: &Path,
    data: &Dataset,
    chunk: usize,
    device: &Device,
) -> Result<RunEvaluation> {
    let state = read_state(run_dir)?;
    if state.phase == Phase::Pretrain {
        return Err(VadeError::invalid_setting(
            "model",
            format!(
                "{} is still pre-training the autoencoder (epoch {} of {}); its prior is \
                 fitted after pre-training, evaluate it from then on",
                run_dir.display(),
                state.epoch,
                state.config.pretrain_epochs
            ),
        ));
    }
    let [_, width] = data.images.dims();
    if width != state.config.input_dim {
        return Err(VadeError::invalid_setting(
            "data",
            format!(
                "the images have {width} pixels, the model in {} was trained on {}",
                run_dir.display(),
                state.config.input_dim
            ),
        ));
    }
    let model = load_model(run_dir, &state, None, device)?;
    let evaluation = evaluate(&model, data, chunk)?;
    Ok(RunEvaluation {
        state,
        model,
        evaluation,
    })
}

/// Draws `evaluation`'s latent means on their two leading principal axes ([`pca_2d`]),
/// coloured by predicted cluster (at most 20 000 points), to the PNG `path`.
pub fn write_latent_picture(path: &Path, evaluation: &Evaluation, latent_dim: usize) -> Result<()> {
    let means = means_to_host(evaluation.means.clone())?;
    crate::plot::write_latent_png(
        path,
        &pca_2d(&means, latent_dim),
        &evaluation.predicted,
        "VaDE latent means (PCA), coloured by predicted cluster",
        20_000,
    )
}

/// Projection of the rows of `x` (`[N, D]`, row-major) on their two leading principal axes:
/// the eigenvectors of the covariance `C = (X − x̄)ᵀ(X − x̄) / N` with the largest eigenvalues
/// ([`symmetric_eigen`], `mixburn_gmm::linalg`'s Jacobi solver, on the D×D matrix). Returns N
/// points `[(x − x̄)·v₁, (x − x̄)·v₂]`; with D = 1 the second coordinate is 0.
pub fn pca_2d(x: &[f64], d: usize) -> Vec<[f64; 2]> {
    if d == 0 {
        return vec![];
    }
    let n = x.len() / d;
    let mut mean = vec![0.0; d];
    for row in x.chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0; d * d];
    for row in x.chunks_exact(d) {
        for i in 0..d {
            let ci = row[i] - mean[i];
            for j in i..d {
                cov[i * d + j] += ci * (row[j] - mean[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            cov[i * d + j] /= n.max(1) as f64;
            cov[j * d + i] = cov[i * d + j];
        }
    }
    let (values, vectors) = symmetric_eigen(cov, d);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let axis = |k: usize| -> Vec<f64> {
        match order.get(k) {
            Some(&c) => (0..d).map(|r| vectors[r * d + c]).collect(),
            None => vec![0.0; d],
        }
    };
    let (a1, a2) = (axis(0), axis(1));
    x.chunks_exact(d)
        .map(|row| {
            let (mut p, mut q) = (0.0, 0.0);
            for j in 0..d {
                let c = row[j] - mean[j];
                p += c * a1[j];
                q += c * a2[j];
            }
            [p, q]
        })
        .collect()
}

/// Reads the means back to the host, row-major.
pub fn means_to_host(means: Tensor<2>) -> Result<Vec<f64>> {
    Ok(to_f64(means)?)
}
