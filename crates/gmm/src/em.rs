//! The EM loop shared by all covariance types: restarts run as one batched tensor program
//! (their parameters stacked along the component axis), one fused pass over the rows per
//! iteration (E-step of iteration t and the sufficient statistics of its M-step).

use burn::tensor::Tensor;

use crate::backend::Precision;
use crate::config::GaussianMixtureConfig;
use crate::error::{GmmError, Result};
use crate::estep::{em_pass, ChunkedData};
use crate::host::tensor_from_f64;
use crate::init::{initial_params, restart_seeds};
use crate::model::GaussianMixture;
use crate::params::{Layout, WeightNorm};
use crate::source::{check_finite, FitData};

/// Checks the shape and finiteness of `x: [N, D]`; returns `(N, D)`.
pub fn validate_data(x: &Tensor<2>) -> Result<(usize, usize)> {
    let [n, d] = x.dims();
    if n == 0 || d == 0 {
        return Err(GmmError::EmptyInput {
            n_samples: n,
            n_features: d,
        });
    }
    check_finite(x, 0)?;
    Ok((n, d))
}

/// One restart's progress through [`iterate`].
pub(crate) struct Run<P> {
    /// The restart's current parameters.
    pub params: P,
    /// Its lower bound at every iteration.
    pub history: Vec<f64>,
    /// Whether the bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
}

/// The iteration loop shared by every mixture estimator (EM, the variational mixture): the
/// restarts start from `starts`; each iteration `step` takes the active restarts' parameters
/// (one batched pass over the rows) and returns each one's next parameters with its lower
/// bound; a restart whose bound changed by less than `tol` leaves the batch. Returns the
/// restart with the highest final bound (ties: the earliest, scikit-learn's rule).
pub(crate) fn iterate<P>(
    starts: Vec<P>,
    max_iter: usize,
    tol: f64,
    mut step: impl FnMut(&[&P]) -> Result<Vec<(P, f64)>>,
) -> Result<Run<P>> {
    let mut active: Vec<Run<P>> = starts
        .into_iter()
        .map(|params| Run {
            params,
            history: vec![],
            converged: false,
        })
        .collect();
    let mut done: Vec<(usize, Run<P>)> = vec![];
    let mut ids: Vec<usize> = (0..active.len()).collect();
    for it in 0..max_iter {
        let refs: Vec<&P> = active.iter().map(|r| &r.params).collect();
        // A worker's failure names the iteration it failed in.
        let next = step(&refs).map_err(|e| match e {
            GmmError::Worker {
                worker,
                iteration: None,
                reason,
            } => GmmError::Worker {
                worker,
                iteration: Some(it + 1),
                reason,
            },
            e => e,
        })?;
        let bounds: Vec<f64> = next.iter().map(|(_, lb)| *lb).collect();
        crate::progress::iteration(it + 1, &bounds);
        let mut still = vec![];
        let mut still_ids = vec![];
        for ((mut run, (params, lb)), id) in active.into_iter().zip(next).zip(ids) {
            let change = lb - run.history.last().copied().unwrap_or(f64::NEG_INFINITY);
            run.history.push(lb);
            run.params = params;
            if change.abs() < tol {
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
    let mut best: Option<Run<P>> = None;
    for (_, run) in done {
        let lb = run.history.last().copied().unwrap_or(f64::NEG_INFINITY);
        if best
            .as_ref()
            .is_none_or(|b| lb > b.history.last().copied().unwrap_or(f64::NEG_INFINITY))
        {
            best = Some(run);
        }
    }
    best.ok_or_else(|| GmmError::config("n_init", "at least one restart is needed"))
}

/// Fits a Gaussian mixture to `x: [N, D]` by EM on `x`'s device, in `x`'s dtype: a tensor,
/// or any [`FitData`] (rows read from a file a chunk at a time, sample weights).
pub fn fit<'a>(
    config: &GaussianMixtureConfig,
    x: impl Into<FitData<'a>>,
) -> Result<GaussianMixture> {
    fit_warm(config, x, None)
}

/// As [`fit`]; with `config.warm_start` and a `previous` model, EM starts from the previous
/// parameters (one restart) instead of a fresh initialisation.
pub fn fit_warm<'a>(
    config: &GaussianMixtureConfig,
    x: impl Into<FitData<'a>>,
    previous: Option<&GaussianMixture>,
) -> Result<GaussianMixture> {
    let x = x.into();
    let (device, dtype) = (x.rows.device(), x.rows.dtype());
    let prep = x.prepare(config.max_memory_bytes)?;
    let (n, d, centre) = (prep.n, prep.d, prep.centre);
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
    let precision = Precision::of(dtype);
    config.check_precision(precision)?;
    let eps = precision.eps();
    let plan = config.plan(n, d, dtype.size())?;
    let layout = Layout::new(config.covariance_type, k, d, &device, dtype).with_form(plan.form);
    let centre_t = tensor_from_f64(centre.clone(), [1, d], &device, dtype);
    let data = ChunkedData::new(x.rows, centre_t, plan.chunk_rows, &layout)
        .with_weights(x.sample_weight, prep.total_weight)
        .with_feature_cache(plan.cache_bytes)?;

    let starts = match warm {
        Some(p) => vec![p.params.shifted(&centre, -1.0)],
        None => initial_params(config, &data, &layout, &restart_seeds(config), &centre, eps)?,
    };
    let best = iterate(starts, config.max_iter, config.tol, |params| {
        let op = layout.upload(params);
        let stats = em_pass(&data, &op, k, config.n_threads)?;
        let lower = stats.mean_log_likelihood()?;
        let next = layout.m_step(&stats, config.reg_covar, eps, WeightNorm::Mass)?;
        Ok(next.into_iter().zip(lower).collect())
    })?;
    let model = GaussianMixture {
        covariance_type: config.covariance_type,
        n_components: k,
        n_features: d,
        reg_covar: config.reg_covar,
        precision,
        params: best.params.shifted(&centre, 1.0),
        converged: best.converged,
        n_iter: best.history.len(),
        lower_bound: best.history.last().copied().unwrap_or(f64::NEG_INFINITY),
        lower_bounds: best.history,
    };
    model.validate()?;
    Ok(model)
}
