//! The EM loop shared by all covariance types: restarts run as one batched tensor program
//! (their parameters stacked along the component axis), one fused pass over the rows per
//! iteration (E-step of iteration t and the sufficient statistics of its M-step).

use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::Precision;
use crate::config::GaussianMixtureConfig;
use crate::error::{GmmError, Result};
use crate::estep::{em_pass, ChunkedData};
use crate::host::{tensor_from_f64, to_f64, to_i64};
use crate::init::initial_params;
use crate::model::GaussianMixture;
use crate::params::{Layout, Params, WeightNorm};

/// Checks the shape and finiteness of `x: [N, D]`; returns `(N, D)`.
pub fn validate_data(x: &Tensor<2>) -> Result<(usize, usize)> {
    let [n, d] = x.dims();
    if n == 0 || d == 0 {
        return Err(GmmError::EmptyInput {
            n_samples: n,
            n_features: d,
        });
    }
    let bad = to_i64(x.clone().is_finite().bool_not().any().int())?;
    if bad.first().copied().unwrap_or(0) != 0 {
        let values = to_f64(x.clone())?;
        let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(GmmError::NonFinite {
            row: i / d,
            col: i % d,
            value: values[i],
        });
    }
    Ok((n, d))
}

/// One restart's progress.
struct Run {
    params: Params,
    history: Vec<f64>,
    converged: bool,
}

/// Fits a Gaussian mixture to `x: [N, D]` by EM on `x`'s device, in `x`'s dtype.
pub fn fit(config: &GaussianMixtureConfig, x: &Tensor<2>) -> Result<GaussianMixture> {
    fit_warm(config, x, None)
}

/// As [`fit`]; with `config.warm_start` and a `previous` model, EM starts from the previous
/// parameters (one restart) instead of a fresh initialisation.
pub fn fit_warm(
    config: &GaussianMixtureConfig,
    x: &Tensor<2>,
    previous: Option<&GaussianMixture>,
) -> Result<GaussianMixture> {
    let (n, d) = validate_data(x)?;
    config.validate(d)?;
    let k = config.n_components;
    if n < k {
        return Err(GmmError::TooFewSamples {
            n_samples: n,
            n_components: k,
        });
    }
    let warm = match previous {
        Some(p) if config.warm_start => {
            p.check_compatible(config, d)?;
            Some(p)
        }
        _ => None,
    };
    let device = x.device();
    let dtype = x.dtype();
    let precision = Precision::of(dtype);
    let eps = precision.eps();
    let layout = Layout::new(config.covariance_type, k, d, &device, dtype);
    // Centre once (a D-vector): moments accumulate around the data mean, not the origin.
    let centre = to_f64(x.clone().mean_dim(0))?;
    let centre_t = tensor_from_f64(centre.clone(), [1, d], &device, dtype);
    let data = ChunkedData::new(
        x,
        centre_t,
        config.chunk_size,
        config.covariance_type,
        &layout.packing,
    )
    .with_feature_cache(config.feature_cache_bytes);

    let starts = match warm {
        Some(p) => vec![p.params.shifted(&centre, -1.0)],
        None => {
            let mut rng = match config.seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            };
            let seeds: Vec<u64> = (0..config.n_init).map(|_| rng.random()).collect();
            initial_params(config, &data, &layout, &seeds, &centre, eps)?
        }
    };
    let mut active: Vec<Run> = starts
        .into_iter()
        .map(|params| Run {
            params,
            history: vec![],
            converged: false,
        })
        .collect();
    let mut done: Vec<(usize, Run)> = vec![];
    let mut ids: Vec<usize> = (0..active.len()).collect();
    for _ in 0..config.max_iter {
        let refs: Vec<&Params> = active.iter().map(|r| &r.params).collect();
        let a = layout.upload(&refs);
        let stats = em_pass(&data, &a, k, config.n_threads);
        let lower = stats.mean_log_likelihood()?;
        let next = layout.m_step(&stats, config.reg_covar, eps, WeightNorm::Mass)?;
        let mut still = vec![];
        let mut still_ids = vec![];
        for ((mut run, params), (id, lb)) in
            active.into_iter().zip(next).zip(ids.into_iter().zip(lower))
        {
            let change = lb - run.history.last().copied().unwrap_or(f64::NEG_INFINITY);
            run.history.push(lb);
            run.params = params;
            if change.abs() < config.tol {
                run.converged = true;
                done.push((id, run));
            } else {
                still.push(run);
                still_ids.push(id);
            }
        }
        active = still;
        ids = still_ids;
        if active.is_empty() {
            break;
        }
    }
    done.extend(ids.into_iter().zip(active));
    done.sort_by_key(|(id, _)| *id);
    // Highest final lower bound wins; ties keep the earliest restart (scikit-learn's rule).
    let mut best: Option<Run> = None;
    for (_, run) in done {
        let lb = *run.history.last().expect("max_iter >= 1");
        if best
            .as_ref()
            .is_none_or(|b| lb > *b.history.last().expect("history"))
        {
            best = Some(run);
        }
    }
    let best = best.expect("n_init >= 1");
    Ok(GaussianMixture {
        covariance_type: config.covariance_type,
        n_components: k,
        n_features: d,
        reg_covar: config.reg_covar,
        precision,
        params: best.params.shifted(&centre, 1.0),
        converged: best.converged,
        n_iter: best.history.len(),
        lower_bound: *best.history.last().expect("history"),
        lower_bounds: best.history,
    })
}
