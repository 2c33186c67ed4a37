//! [`fit_bayesian`]: one fit set-up, the starting posterior of every restart, and the
//! iteration loop of [`crate::em`] with the variational M-step.

use super::config::BayesianGaussianMixtureConfig;
use super::model::BayesianGaussianMixture;
use super::posterior::{resolve_priors, responsibility_entropy, variational_m_step};
use crate::em::iterate;
use crate::error::{GmmError, Result};
use crate::estep::{em_pass, ChunkedData};
use crate::init::{initial_stats, restart_seeds, stats_from_responsibilities};
use crate::params::{Layout, Params};
use crate::source::FitData;
use mixburn_backend::backend::Precision;
use mixburn_backend::host::tensor_from_f64;

/// Fits a variational Bayesian Gaussian mixture to `x: [N, D]` on `x`'s device, in `x`'s
/// dtype (scikit-learn's `BayesianGaussianMixture.fit`).
///
/// Each restart starts from the statistics of its starting responsibilities (`resp_init`, or
/// `init_params`) and one variational M-step; each iteration is then one chunked E-step pass
/// under the current posterior, the variational M-step, and the lower bound (`−Σ r log r` of
/// the pass plus [`VariationalParams::lower_bound_terms`](super::posterior::VariationalParams::lower_bound_terms) of the new posterior); a restart
/// stops when the lower bound changes by less than `tol`. The highest final lower bound wins
/// (ties: the earliest restart).
pub fn fit_bayesian<'a>(
    config: &BayesianGaussianMixtureConfig,
    x: impl Into<FitData<'a>>,
) -> Result<BayesianGaussianMixture> {
    let x = x.into();
    let (device, dtype) = (x.rows.device(), x.rows.dtype());
    let prep = x.prepare(config.max_memory_bytes)?;
    let (n, d, centre) = (prep.n, prep.d, prep.centre);
    config.validate(n, d)?;
    let k = config.n_components;
    if n < k {
        return Err(GmmError::TooFewSamples {
            n_samples: n,
            n_components: k,
        });
    }
    if n < 2 {
        return Err(GmmError::invalid_setting(
            "n_samples",
            "a Bayesian Gaussian mixture needs at least 2 rows (the default priors use the data covariance), got 1",
        ));
    }
    let precision = Precision::of(dtype);
    config.shared().check_precision(precision)?;
    // A prior scalar beyond float32's range is an infinity on the device, and the fit then
    // fails with advice about components that does not apply: refuse the setting by name.
    if precision == Precision::F32 {
        let scalars = [
            (
                "weight_concentration_prior",
                config.weight_concentration_prior,
            ),
            ("mean_precision_prior", config.mean_precision_prior),
            ("degrees_of_freedom_prior", config.degrees_of_freedom_prior),
        ];
        let covariance_max = config
            .covariance_prior
            .iter()
            .flatten()
            .fold(0.0_f64, |m, v| m.max(v.abs()));
        let too_large = scalars
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| (name, v)))
            .chain([("covariance_prior", covariance_max)])
            .find(|(_, v)| v.abs() > f64::from(f32::MAX));
        if let Some((name, v)) = too_large {
            return Err(GmmError::invalid_setting(
                name,
                format!(
                    "{v:e} is beyond float32's range (3.4e38); fit in f64 (--dtype f64) or \
                     use a prior in scale with the data"
                ),
            ));
        }
    }
    let eps = precision.eps();
    let cov = config.covariance_type;
    let shared = config.shared();
    let plan = shared.plan_capped(n, d, dtype.size(), x.rows.max_chunk_rows())?;
    let layout = Layout::new(cov, k, d, &device, dtype).with_form(plan.form);
    let centre_t = tensor_from_f64(centre.clone(), [1, d], &device, dtype);
    let data = ChunkedData::new(x.rows, centre_t, plan.chunk_rows, &layout)
        .with_weights(x.sample_weight, prep.total_weight)
        .with_feature_cache(plan.cache_bytes)?
        .with_pooled_scatter()?;
    let priors = resolve_priors(config, &data, &layout, &centre, eps)?;
    let prior_type = config.weight_concentration_prior_type;

    let start = match &config.resp_init {
        Some(resp) => stats_from_responsibilities(&data, &layout, resp)?,
        None => initial_stats(&shared, &data, &layout, &restart_seeds(&shared))?,
    };
    let starts = variational_m_step(&layout, start, &priors, config.reg_covar, eps)?;
    let best = iterate(starts, config.max_iter, config.tol, |posts| {
        let constants: Vec<f64> = posts
            .iter()
            .flat_map(|p| p.estep_constants(prior_type, d))
            .collect();
        // The matrices move into the operand (the M-step forms the next ones): a pass holds
        // the factors once, and not the covariances.
        let mut models: Vec<&mut Params> = posts.iter_mut().map(|p| &mut p.params).collect();
        let op = layout.upload_moving(&mut models, constants);
        let stats = em_pass(&data, &op, k, plan.workers)?;
        drop(op);
        let entropy = responsibility_entropy(&stats)?;
        let next = variational_m_step(&layout, stats, &priors, config.reg_covar, eps)?;
        Ok(next
            .into_iter()
            .zip(entropy)
            .map(|(post, ent)| {
                let lb = -ent + post.lower_bound_terms(cov, prior_type, k, d);
                (post, lb)
            })
            .collect())
    })?;
    let mut priors = priors;
    priors
        .mean_prior
        .iter_mut()
        .zip(&centre)
        .for_each(|(m, c)| *m += c);
    let lower_bound = best.lower_bound();
    let model = BayesianGaussianMixture {
        covariance_type: cov,
        n_components: k,
        n_features: d,
        reg_covar: config.reg_covar,
        precision,
        priors,
        posterior: best.params.shifted(&centre, 1.0),
        converged: best.converged,
        n_iter: best.history.len(),
        lower_bound,
        lower_bounds: best.history,
    };
    model.validate()?;
    Ok(model)
}
