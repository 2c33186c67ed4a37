//! The EM loop shared by all covariance types: restarts run as one batched tensor program
//! (their parameters stacked along the component axis), one fused pass over the rows per
//! iteration (E-step of iteration t and the sufficient statistics of its M-step).

use burn::tensor::Tensor;

use crate::config::GaussianMixtureConfig;
use crate::covariance::CovTensor;
use crate::error::{GmmError, Result};
use crate::estep::{em_pass, ChunkedData, Operand};
use crate::form::EstepForm;
use crate::init::{initial_params, restart_seeds};
use crate::model::GaussianMixture;
use crate::params::{log_weights, Layout, Params, WeightNorm};
use crate::source::{check_finite, FitData};
use crate::values::Values;
use mixburn_backend::backend::Precision;
use mixburn_backend::host::tensor_from_f64;

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
#[derive(Clone, Debug)]
pub(crate) struct Run<P> {
    /// The restart's current parameters.
    pub params: P,
    /// Its lower bound at every iteration.
    pub history: Vec<f64>,
    /// Whether the bound changed by less than `tol` before `max_iter`.
    pub converged: bool,
}

impl<P> Run<P> {
    /// The last lower bound, `−∞` before the first iteration.
    pub fn lower_bound(&self) -> f64 {
        self.history.last().copied().unwrap_or(f64::NEG_INFINITY)
    }
}

/// The state of [`iterate`] between two iterations: the restarts still iterating and those
/// done (with their positions, for the tie rule), and the iterations completed.
#[derive(Clone, Debug)]
pub(crate) struct LoopState<P> {
    active: Vec<(usize, Run<P>)>,
    done: Vec<(usize, Run<P>)>,
    iteration: usize,
}

impl<P> LoopState<P> {
    /// Every restart from `starts`, before the first iteration.
    pub fn new(starts: Vec<P>) -> Self {
        Self {
            active: starts
                .into_iter()
                .map(|params| Run {
                    params,
                    history: vec![],
                    converged: false,
                })
                .enumerate()
                .collect(),
            done: vec![],
            iteration: 0,
        }
    }

    /// The same state with every restart's parameters mapped by `f`.
    fn map<Q>(self, f: impl Fn(P) -> Q) -> LoopState<Q> {
        self.try_map(|p| Ok(f(p)))
            .unwrap_or_else(|_| unreachable!("the mapping cannot fail"))
    }

    /// As [`map`](Self::map), with a mapping that can fail.
    fn try_map<Q>(self, f: impl Fn(P) -> Result<Q>) -> Result<LoopState<Q>> {
        let run = |(id, r): (usize, Run<P>)| -> Result<(usize, Run<Q>)> {
            Ok((
                id,
                Run {
                    params: f(r.params)?,
                    history: r.history,
                    converged: r.converged,
                },
            ))
        };
        Ok(LoopState {
            active: self.active.into_iter().map(run).collect::<Result<_>>()?,
            done: self.done.into_iter().map(run).collect::<Result<_>>()?,
            iteration: self.iteration,
        })
    }
}

/// A restart's parameters inside the EM loop. The initial matrices move to the device for the
/// first pass (no host copy stays beside them); after it the covariances and precision
/// factors stay on the device, in the working dtype, and come to the host only for the fitted
/// model or a checkpoint, still in that dtype ([`Values`]): at network-feature width they are
/// `K·D²` values each, and a second copy, or f64 copies of f32 values, would double them.
#[derive(Clone, Debug)]
struct Current {
    /// Weights and means; also the covariances and factors while `on_device` is `None`.
    params: Params,
    /// This restart's covariances (`None` where only the factors are known, as from
    /// `precisions_init`) and precision factors on the device.
    on_device: Option<(Option<CovTensor>, CovTensor)>,
}

impl Current {
    fn on_host(params: Params) -> Self {
        Self {
            params,
            on_device: None,
        }
    }

    /// Brings the matrices to the host (a no-op when they are there).
    fn bring_to_host(&mut self) -> Result<()> {
        if let Some((covs, prec)) = self.on_device.take() {
            self.params.covariances = match covs {
                Some(covs) => covs.to_values()?,
                None => Values::default(),
            };
            self.params.precisions_cholesky = prec.to_values()?;
        }
        Ok(())
    }

    /// The matrices on the device, moved there first when they are on the host.
    fn on_device(&mut self, layout: &Layout) -> &mut (Option<CovTensor>, CovTensor) {
        let params = &mut self.params;
        self.on_device.get_or_insert_with(|| {
            let covs = std::mem::take(&mut params.covariances);
            let prec = std::mem::take(&mut params.precisions_cholesky);
            let covs = (!covs.is_empty()).then(|| layout.moved_to_device(covs));
            (covs, layout.moved_to_device(prec))
        })
    }

    /// The precision factors for one pass, on the device. The covariances are dropped: the
    /// E-step does not read them, and the M-step after the pass forms the next ones (the
    /// restart then holds only its factors, as one from `precisions_init` does). With `take`
    /// the factors leave the restart too (the operand holds them, [`pass_factors`]).
    fn factors_for_pass(&mut self, layout: &Layout, take: bool) -> CovTensor {
        let (covs, prec) = self.on_device(layout);
        *covs = None;
        let prec = prec.clone();
        if take {
            self.on_device = None;
        }
        prec
    }

    /// The parameters with their matrices on the host.
    fn into_params(mut self) -> Result<Params> {
        self.bring_to_host()?;
        Ok(self.params)
    }

    /// Frees the matrices, wherever they are: after a pass has succeeded (a pass that fails on
    /// a worker leaves them for the checkpoint), before the M-step forms the next ones, so
    /// that the old are not held beside the new.
    fn release(&mut self) {
        self.on_device = None;
        self.params.covariances = Values::default();
        self.params.precisions_cholesky = Values::default();
    }
}

/// The restarts' precision factors stacked on the device for one pass, the initial ones moved
/// there first ([`Current::factors_for_pass`]). At network-feature width they are `K·D²`
/// values per restart. In the whitened form the operand's blocks are the factors rearranged
/// ([`crate::estep::Operand::factors`]), so the factors leave the restarts and the pass holds
/// them once; a pass that fails gives them back ([`restore_factors`]) for the checkpoint.
fn pass_factors(current: &mut [&mut Current], layout: &Layout) -> CovTensor {
    let take = layout.form == EstepForm::Whitened;
    let factors = current
        .iter_mut()
        .map(|c| c.factors_for_pass(layout, take))
        .collect();
    CovTensor::cat(factors)
}

/// Gives each restart its precision factors back from the operand of a failed pass (a no-op
/// where the restarts kept them, [`pass_factors`]).
fn restore_factors(current: &mut [&mut Current], op: &Operand) {
    if current.iter().all(|c| c.on_device.is_some()) {
        return;
    }
    if let Some(CovTensor::Matrices(all)) = op.factors() {
        let per = all.dims()[0] / current.len().max(1);
        for (i, c) in current.iter_mut().enumerate() {
            let mine = all.clone().narrow(0, i * per, per);
            c.on_device = Some((None, CovTensor::Matrices(mine)));
        }
    }
}

/// The iteration loop shared by every mixture estimator (EM, the variational mixture): the
/// restarts start from `starts`; each iteration `step` takes the active restarts' parameters
/// (one batched pass over the rows; it may move out or free what it no longer needs of them:
/// at network-feature width their matrices are `K·D²` values each) and returns each one's
/// next parameters with its lower bound; a restart whose bound changed by less than `tol`
/// leaves the batch. Returns the restart with the highest final bound (ties: the earliest,
/// scikit-learn's rule).
pub(crate) fn iterate<P>(
    starts: Vec<P>,
    max_iter: usize,
    tol: f64,
    step: impl FnMut(&mut [&mut P]) -> Result<Vec<(P, f64)>>,
) -> Result<Run<P>> {
    iterate_from(LoopState::new(starts), max_iter, tol, step, &mut None)
}

/// [`iterate`] from a state (a fit resumed after a worker failed). When `step` fails because
/// of a worker, the state after the last completed iteration is left in `failed`, so that the
/// fit can continue from there on other workers and reach the same result.
pub(crate) fn iterate_from<P>(
    state: LoopState<P>,
    max_iter: usize,
    tol: f64,
    mut step: impl FnMut(&mut [&mut P]) -> Result<Vec<(P, f64)>>,
    failed: &mut Option<LoopState<P>>,
) -> Result<Run<P>> {
    let LoopState {
        mut active,
        mut done,
        iteration,
    } = state;
    for it in iteration..max_iter {
        if active.is_empty() {
            break;
        }
        let mut refs: Vec<&mut P> = active.iter_mut().map(|(_, r)| &mut r.params).collect();
        let next = match step(&mut refs) {
            Ok(next) => next,
            // A worker's failure names the iteration it failed in, and leaves the state.
            Err(GmmError::Worker { worker, reason, .. }) => {
                *failed = Some(LoopState {
                    active,
                    done,
                    iteration: it,
                });
                return Err(GmmError::Worker {
                    worker,
                    iteration: Some(it + 1),
                    reason,
                });
            }
            Err(e) => return Err(e),
        };
        let bounds: Vec<f64> = next.iter().map(|(_, lb)| *lb).collect();
        crate::progress::iteration(it + 1, &bounds);
        let mut still = vec![];
        for ((id, mut run), (params, lb)) in active.into_iter().zip(next) {
            let change = lb - run.lower_bound();
            run.history.push(lb);
            run.params = params;
            if change.abs() < tol {
                run.converged = true;
                done.push((id, run));
            } else {
                still.push((id, run));
            }
        }
        active = still;
    }
    done.extend(active);
    done.sort_by_key(|(id, _)| *id);
    let mut best: Option<Run<P>> = None;
    for (_, run) in done {
        if best
            .as_ref()
            .is_none_or(|b| run.lower_bound() > b.lower_bound())
        {
            best = Some(run);
        }
    }
    best.ok_or_else(|| GmmError::invalid_setting("n_init", "at least one restart is needed"))
}

/// Where an EM fit stopped when a worker failed: every restart's parameters (in the data's own
/// coordinates) and lower bounds after the last completed iteration. [`fit_resuming`] from it
/// on other workers continues the fit and reaches the result the uninterrupted fit would have.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    state: LoopState<Params>,
}

impl Checkpoint {
    /// Iterations completed before the failure.
    pub fn iterations(&self) -> usize {
        self.state.iteration
    }
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
    fit_inner(config, x.into(), previous, None, &mut None)
}

/// As [`fit`], continuing from `resume` (a [`Checkpoint`] of an earlier attempt on the same
/// rows) when given. When a worker fails, the error comes with the checkpoint of the last
/// completed iteration, from which the fit can continue on the remaining workers.
// Returned once per fit attempt: boxing the error would buy nothing.
#[allow(clippy::result_large_err)]
pub fn fit_resuming<'a>(
    config: &GaussianMixtureConfig,
    x: impl Into<FitData<'a>>,
    resume: Option<Checkpoint>,
) -> std::result::Result<GaussianMixture, (GmmError, Option<Checkpoint>)> {
    let mut failed = None;
    fit_inner(config, x.into(), None, resume, &mut failed).map_err(|e| (e, failed))
}

pub(crate) fn fit_inner(
    config: &GaussianMixtureConfig,
    x: FitData<'_>,
    previous: Option<&GaussianMixture>,
    resume: Option<Checkpoint>,
    failed: &mut Option<Checkpoint>,
) -> Result<GaussianMixture> {
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
    let plan = config.plan_capped(n, d, dtype.size(), x.rows.max_chunk_rows())?;
    let layout = Layout::new(config.covariance_type, k, d, &device, dtype).with_form(plan.form);
    let centre_t = tensor_from_f64(centre.clone(), [1, d], &device, dtype);
    let data = ChunkedData::new(x.rows, centre_t, plan.chunk_rows, &layout)
        .with_weights(x.sample_weight, prep.total_weight)
        .with_feature_cache(plan.cache_bytes)?
        .with_pooled_scatter()?;

    let state = match (resume, warm) {
        // A checkpoint holds the parameters in the data's coordinates.
        (Some(c), _) => c.state.map(|p| p.shifted(&centre, -1.0)),
        (None, Some(p)) => LoopState::new(vec![p.params.clone().shifted(&centre, -1.0)]),
        (None, None) => LoopState::new(initial_params(
            config,
            &data,
            &layout,
            &restart_seeds(config),
            &centre,
            eps,
        )?),
    }
    .map(Current::on_host);
    let mut stopped = None;
    let step = |current: &mut [&mut Current]| {
        let prec = pass_factors(current, &layout);
        let refs: Vec<&Params> = current.iter().map(|c| &c.params).collect();
        let op = layout.upload_with_factors(&refs, log_weights(&refs), prec);
        let stats = match em_pass(&data, &op, k, plan.workers) {
            Ok(stats) => stats,
            Err(e) => {
                restore_factors(current, &op);
                return Err(e);
            }
        };
        drop(op);
        current.iter_mut().for_each(|c| c.release());
        let lower = stats.mean_log_likelihood()?;
        let next = layout.m_step_on_device(stats, config.reg_covar, eps, WeightNorm::Mass)?;
        Ok(next
            .into_iter()
            .zip(lower)
            .map(|((params, covs, prec), lb)| {
                let on_device = Some((Some(covs), prec));
                (Current { params, on_device }, lb)
            })
            .collect())
    };
    let best = match iterate_from(state, config.max_iter, config.tol, step, &mut stopped) {
        Ok(best) => best,
        Err(e) => {
            // The checkpoint's matrices come back to the host; if they cannot, there is none.
            *failed = stopped.and_then(|s| {
                let state = s.try_map(|c| Ok(c.into_params()?.shifted(&centre, 1.0)));
                state.ok().map(|state| Checkpoint { state })
            });
            return Err(e);
        }
    };
    let lower_bound = best.lower_bound();
    let model = GaussianMixture {
        covariance_type: config.covariance_type,
        n_components: k,
        n_features: d,
        reg_covar: config.reg_covar,
        precision,
        params: best.params.into_params()?.shifted(&centre, 1.0),
        converged: best.converged,
        n_iter: best.history.len(),
        lower_bound,
        lower_bounds: best.history,
    };
    model.validate()?;
    Ok(model)
}
