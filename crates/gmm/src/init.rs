//! Starting parameters of each restart, as scikit-learn's `_initialize_parameters`: starting
//! responsibilities from `init_params`, one M-step from them (weights `n_k / N`), then any
//! user-given `weights_init` / `means_init` / `precisions_init` override.
//!
//! [`initial_stats`] and [`stats_from_responsibilities`] stop one step earlier, at the
//! sufficient statistics of the starting responsibilities, for estimators whose first step
//! from them is another M-step (the variational mixture, [`crate::bayesian`]).

use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::seq::index::{sample, sample_weighted};
use rand::{Rng, SeedableRng};

use crate::budget;
use crate::config::{GaussianMixtureConfig, InitMethod};
use crate::covariance::{self, CovTensor, CovarianceType};
use crate::error::{GmmError, Result};
use crate::estep::ChunkedData;
use crate::form::EstepForm;
use crate::kmeans::{assign, kmeans_centred, one_hot, plusplus_indices, KMeansConfig};
use crate::params::{Layout, Params, WeightNorm};
use crate::pass::Pass;
use crate::source::{on_device, PerDevice};
use crate::stats::{Moments, SufficientStats, UpperBlocks};
use crate::values::Values;
use mixburn_backend::host::{accumulate, tensor_from_f64, to_f64};

/// Starting parameters (in the centred coordinates of `data`) for each seed.
pub fn initial_params(
    config: &GaussianMixtureConfig,
    data: &ChunkedData<'_>,
    layout: &Layout,
    seeds: &[u64],
    centre: &[f64],
    eps: f64,
) -> Result<Vec<Params>> {
    let all_given = config.weights_init.is_some()
        && config.means_init.is_some()
        && config.precisions_init.is_some();
    let m_step =
        |stats: SufficientStats| layout.m_step(stats, config.reg_covar, eps, WeightNorm::Samples);
    let starts = if all_given {
        vec![Params::default(); seeds.len()]
    } else {
        match config.init_params {
            InitMethod::KMeansPlusPlus | InitMethod::RandomFromData => {
                point_params(config, data, layout, seeds, eps)?
            }
            InitMethod::Kmeans => m_step(kmeans_stats(config, data, layout, seeds)?)?,
            InitMethod::Random => m_step(random_stats(data, layout, seeds)?)?,
        }
    };
    override_inits(config, layout, centre, starts)
}

/// One seed per restart (`n_init` of them), drawn from `config.seed` (`random_state`), or from
/// the OS when it is `None`.
pub fn restart_seeds(config: &GaussianMixtureConfig) -> Vec<u64> {
    let mut rng = match config.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    };
    (0..config.n_init).map(|_| rng.random()).collect()
}

/// Sufficient statistics (in the centred coordinates of `data`, restarts batched `[B·K]`) of
/// each seed's starting responsibilities from `config.init_params`: one-hot k-means labels,
/// row-normalised uniform random rows, or 1 on the K rows chosen by k-means++ seeding or
/// uniformly (`random_from_data`; those statistics are `n_k = 1` and the chosen row's
/// features, built directly from the rows).
pub fn initial_stats(
    config: &GaussianMixtureConfig,
    data: &ChunkedData<'_>,
    layout: &Layout,
    seeds: &[u64],
) -> Result<SufficientStats> {
    match config.init_params {
        InitMethod::Kmeans => kmeans_stats(config, data, layout, seeds),
        InitMethod::Random => random_stats(data, layout, seeds),
        InitMethod::KMeansPlusPlus | InitMethod::RandomFromData => {
            let idx = point_indices(config, data, seeds)?;
            let (k, b) = (layout.k, seeds.len());
            let flat: Vec<usize> = idx.into_iter().flatten().collect();
            let rows = data.centred().select(&flat)?;
            let moments = match data.form() {
                // Around the chosen rows themselves: zero first and second moments.
                EstepForm::Whitened => {
                    let d = layout.d;
                    let r = b * layout.cov.rows_per_model(k);
                    Moments::Shifted {
                        s1: rows.zeros_like(),
                        s2: UpperBlocks::zeros(r, d, &layout.device, layout.dtype),
                        shift: rows,
                    }
                }
                _ => Moments::Quadratic(data.features_of(rows)),
            };
            let zeros = Tensor::zeros([b], (&layout.device, layout.dtype));
            Ok(SufficientStats {
                nk: Tensor::ones([b * k], (&layout.device, layout.dtype)),
                moments,
                log_likelihood: zeros.clone(),
                weighted_log_density: zeros,
                n_samples: data.total_weight(),
            })
        }
    }
}

/// Sufficient statistics of given responsibilities `resp` (row-major `N×K'`, one restart;
/// `K' = resp.len() / N`, so a column of ones gives the moments of the whole data), chunk by
/// chunk, on `layout`'s device: the responsibilities-to-statistics step of an initialisation.
pub fn stats_from_responsibilities(
    data: &ChunkedData<'_>,
    layout: &Layout,
    resp: &[f64],
) -> Result<SufficientStats> {
    let k = resp.len() / data.n_rows().max(1);
    let stats = pass_of(data).reduce(
        |start, len| {
            let r = resp[start * k..(start + len) * k].to_vec();
            let r = tensor_from_f64(r, [len, k], &data.device_of(start), layout.dtype);
            data.stats_of(start, len, r, k, None)
        },
        merge_stats,
    )?;
    Ok(stats.expect("rows"))
}

/// Rows per chunk of the initialisation's k-means and k-means++ passes (distances to the
/// `B·K` centres or `B·(2 + ln K)` candidates, their one-hot labels and the rows), from
/// `chunk_size` or the memory budget.
pub fn kmeans_chunk_rows(
    config: &GaussianMixtureConfig,
    n: usize,
    d: usize,
    size: usize,
    max_rows: usize,
) -> Result<usize> {
    let (k, b) = (config.n_components, config.n_init.max(1));
    let trials = 2 + (k as f64).ln().floor() as usize;
    let per_row = (3 * b * k.max(trials) + 2 * d) * size;
    let fixed = 3 * b * k * d * size;
    budget::plan_rows_capped(
        config.chunk_size,
        config.max_memory_bytes,
        per_row,
        fixed,
        n,
        &format!("k-means (D = {d}, K = {k}, {b} restart(s))"),
        max_rows,
    )
}

/// Replaces the starting parameters by the user's `weights_init` / `means_init` /
/// `precisions_init` where given.
fn override_inits(
    config: &GaussianMixtureConfig,
    layout: &Layout,
    centre: &[f64],
    mut starts: Vec<Params>,
) -> Result<Vec<Params>> {
    let k = layout.k;
    if let Some(w) = &config.weights_init {
        starts.iter_mut().for_each(|p| p.weights = w.clone());
    }
    if let Some(m) = &config.means_init {
        let d = layout.d;
        let centred: Vec<f64> = m
            .iter()
            .enumerate()
            .map(|(i, v)| v - centre[i % d])
            .collect();
        starts.iter_mut().for_each(|p| p.means = centred.clone());
    }
    if let Some(prec) = &config.precisions_init {
        let t = CovTensor::from_flat(
            layout.cov,
            prec,
            1,
            k,
            layout.d,
            &layout.device,
            layout.dtype,
        );
        let chol =
            covariance::precision_cholesky_from_precisions(layout.cov, &t, k, 1)?.to_values()?;
        drop(t);
        // Every start but the last gets a copy; the last takes the factors themselves.
        if let Some((last, rest)) = starts.split_last_mut() {
            for p in rest {
                p.precisions_cholesky = chol.clone();
                p.covariances = Values::default();
            }
            last.precisions_cholesky = chol;
            last.covariances = Values::default();
        }
    }
    Ok(starts)
}

/// Statistics of one-hot responsibilities from one k-means run per restart, `[B·K]` batched.
fn kmeans_stats(
    config: &GaussianMixtureConfig,
    data: &ChunkedData<'_>,
    layout: &Layout,
    seeds: &[u64],
) -> Result<SufficientStats> {
    let (k, b) = (layout.k, seeds.len());
    let mut kc = KMeansConfig::new(k);
    let size = layout.dtype.size();
    let cap = data.raw().max_chunk_rows();
    kc.chunk_size = kmeans_chunk_rows(config, data.n_rows(), layout.d, size, cap)?;
    // k-means on the centred (weighted) rows, a chunk at a time; each row's label is its
    // closest final centre, found again chunk by chunk rather than held for every row.
    let (centres, _) = kmeans_centred(&data.centred(), &kc, seeds)?;
    // The shifted form accumulates around each cluster's centre (centred coordinates).
    let shift = centres.clone();
    let centres = PerDevice::new(centres);
    let stats = pass_of(data).reduce(
        |start, len| {
            let x = data.rows(start, len)?;
            let (_, labels) = assign(x.clone(), &centres.on(&x.device()), b, k);
            let resp = one_hot(labels, k, layout.dtype);
            data.stats_of(start, len, resp, k, Some(&shift))
        },
        merge_stats,
    )?;
    Ok(stats.expect("rows"))
}

/// Statistics of row-normalised uniform random responsibilities, one stream per restart.
fn random_stats(data: &ChunkedData<'_>, layout: &Layout, seeds: &[u64]) -> Result<SufficientStats> {
    let (k, b) = (layout.k, seeds.len());
    let mut rngs: Vec<StdRng> = seeds.iter().map(|s| StdRng::seed_from_u64(*s)).collect();
    let mut acc = None;
    // One random stream per restart, drawn in row order: the chunks run one after another.
    pass_of(data).for_each(|start, len| -> Result<()> {
        let mut resp = vec![0.0; len * b * k];
        for (r, rng) in rngs.iter_mut().enumerate() {
            for i in 0..len {
                let row = &mut resp[(i * b + r) * k..(i * b + r + 1) * k];
                row.iter_mut().for_each(|v| *v = rng.random::<f64>());
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
        let resp = tensor_from_f64(resp, [len, b * k], &data.device_of(start), layout.dtype);
        let stats = data.stats_of(start, len, resp, k, None)?;
        acc = Some(SufficientStats::accumulate(acc.take(), stats));
        Ok(())
    })?;
    Ok(acc.expect("rows"))
}

/// A pass over `data`'s chunks.
fn pass_of<'d>(data: &'d ChunkedData<'_>) -> Pass<'d> {
    Pass::over(data.raw(), data.ranges().collect())
}

/// Statistics of some rows merged with those of the rows after them.
fn merge_stats(a: SufficientStats, b: SufficientStats) -> Result<SufficientStats> {
    Ok(SufficientStats::accumulate(Some(a), b))
}

/// Starting parameters when the responsibilities are 1 on K chosen rows (`k-means++`,
/// `random_from_data`): scikit-learn's M-step on them gives means at the rows, weights
/// `(1 + 10·eps)/N` and zero-spread covariances plus `reg_covar`. They are built directly
/// rather than from moments, which would cancel in f32; the tied covariance is the data
/// covariance plus `reg_covar` (a zero-spread shared covariance would be degenerate).
fn point_params(
    config: &GaussianMixtureConfig,
    data: &ChunkedData<'_>,
    layout: &Layout,
    seeds: &[u64],
    eps: f64,
) -> Result<Vec<Params>> {
    let (k, d, n) = (layout.k, layout.d, data.total_weight());
    let reg = config.reg_covar;
    let idx = point_indices(config, data, seeds)?;
    let eye_reg = |scale: f64| -> Vec<f64> {
        (0..d * d)
            .map(|i| if i % (d + 1) == 0 { scale } else { 0.0 })
            .collect()
    };
    let covariances = match layout.cov {
        CovarianceType::Full => (0..k).flat_map(|_| eye_reg(reg)).collect(),
        CovarianceType::Tied => {
            let second = pass_of(data).reduce(
                |start, len| -> Result<_> {
                    let x = data.rows(start, len)?;
                    let xw = match data.weight_column(start, len) {
                        Some(w) => x.clone() * w,
                        None => x.clone(),
                    };
                    Ok(on_device(&xw.transpose().matmul(x), &layout.device))
                },
                |a, b| Ok(accumulate(Some(a), b)),
            )?;
            let second = to_f64(second.expect("rows"))?;
            second
                .iter()
                .zip(eye_reg(reg))
                .map(|(s, r)| s / n + r)
                .collect()
        }
        CovarianceType::Diag => vec![reg; k * d],
        CovarianceType::Spherical => vec![reg; k],
    };
    let flat: Vec<usize> = idx.into_iter().flatten().collect();
    let rows = to_f64(data.centred().select(&flat)?)?;
    let cov_t = CovTensor::from_flat(
        layout.cov,
        &covariances,
        1,
        k,
        d,
        &layout.device,
        layout.dtype,
    );
    let prec = covariance::precision_cholesky(layout.cov, &cov_t, k, 1)?.to_values()?;
    let covariances = Values::from(covariances);
    Ok((0..seeds.len())
        .map(|r| Params {
            weights: vec![(1.0 + 10.0 * eps) / n; k],
            means: rows[r * k * d..(r + 1) * k * d].to_vec(),
            covariances: covariances.clone(),
            precisions_cholesky: prec.clone(),
        })
        .collect())
}

/// The K rows of each restart chosen by k-means++ seeding or uniformly without replacement
/// (`random_from_data`), one random stream per seed.
fn point_indices(
    config: &GaussianMixtureConfig,
    data: &ChunkedData<'_>,
    seeds: &[u64],
) -> Result<Vec<Vec<usize>>> {
    let (k, n) = (config.n_components, data.n_rows());
    let mut rngs: Vec<StdRng> = seeds.iter().map(|s| StdRng::seed_from_u64(*s)).collect();
    Ok(if config.init_params == InitMethod::KMeansPlusPlus {
        let size = data.raw().dtype().size();
        let cap = data.raw().max_chunk_rows();
        let rows = kmeans_chunk_rows(config, n, data.raw().dims()[1], size, cap)?;
        plusplus_indices(&data.centred(), k, &mut rngs, rows)?
    } else {
        match data.weights() {
            // Without replacement, each draw ∝ the weights of the rows not drawn yet.
            Some(w) => rngs
                .iter_mut()
                .map(|r| {
                    sample_weighted(r, n, |i| w[i], k)
                        .map(|idx| idx.into_vec())
                        .map_err(|e| GmmError::invalid_setting("sample_weight", format!("random_from_data needs at least n_components rows of positive weight: {e}")))
                })
                .collect::<Result<_>>()?,
            None => rngs
                .iter_mut()
                .map(|r| sample(r, n, k).into_vec())
                .collect(),
        }
    })
}
