//! Mixture parameters on the host, and the M-step that turns sufficient statistics into them.

use std::borrow::Cow;

use burn::tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::covariance::{self, CovTensor, CovarianceType, Packing};
use crate::error::Result;
use crate::estep::Operand;
use crate::form::{self, EstepForm};
use crate::stats::{Moments, SufficientStats};
use crate::values::Values;
use mixburn_backend::host::{tensor_from_f64, to_f64};

/// One mixture's parameters, row-major (scikit-learn's shapes flattened): weights and means
/// in f64, the `K·D²` matrices as [`Values`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// `π`, length K.
    pub weights: Vec<f64>,
    /// `μ`, K×D.
    pub means: Vec<f64>,
    /// `Σ` in the covariance type's shape (empty when only precisions are known), in the
    /// precision the fit computed it in ([`Values`]).
    pub covariances: Values,
    /// Precision Cholesky factors in the covariance type's shape ([`Values`]).
    pub precisions_cholesky: Values,
}

impl Params {
    /// The same parameters with every mean shifted by `sign · shift` (a length-D vector).
    /// By value: the `K·D²` matrices are moved, not copied.
    pub fn shifted(mut self, shift: &[f64], sign: f64) -> Self {
        let d = shift.len();
        for (i, m) in self.means.iter_mut().enumerate() {
            *m += sign * shift[i % d];
        }
        self
    }

    /// The mixture's mean `o = Σ_k π_k μ_k` over `d` features: the point a scorer centres its
    /// rows on.
    pub fn mixture_mean(&self, d: usize) -> Vec<f64> {
        let mut o = vec![0.0; d];
        for (w, mean) in self.weights.iter().zip(self.means.chunks(d.max(1))) {
            o.iter_mut().zip(mean).for_each(|(o, m)| *o += w * m);
        }
        o
    }
}

/// How the M-step normalises the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightNorm {
    /// `π_k = n_k / Σ_j n_j` (EM iterations).
    Mass,
    /// `π_k = n_k / N` (scikit-learn's initialisation).
    Samples,
}

/// Shapes and settings the M-step needs.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Covariance type.
    pub cov: CovarianceType,
    /// Components K.
    pub k: usize,
    /// Features D.
    pub d: usize,
    /// Device of the computation.
    pub device: Device,
    /// Float dtype of the computation.
    pub dtype: DType,
    /// Pack/unpack indices.
    pub packing: Packing,
    /// Form of the E-step and of the statistics (quadratic or whitened, never auto).
    pub form: EstepForm,
}

impl Layout {
    /// A layout for `k` components of `d` features on `device` in `dtype`.
    pub fn new(cov: CovarianceType, k: usize, d: usize, device: &Device, dtype: DType) -> Self {
        Self {
            cov,
            k,
            d,
            device: device.clone(),
            dtype,
            packing: Packing::new(cov, d, device, dtype),
            form: EstepForm::Quadratic,
        }
    }

    /// The same layout in `form` (diag and spherical stay quadratic; `Auto` means quadratic
    /// here: resolve it with [`crate::form::plan`] first).
    pub fn with_form(mut self, form: EstepForm) -> Self {
        self.form = match form::effective(form, self.cov) {
            EstepForm::Whitened => EstepForm::Whitened,
            _ => EstepForm::Quadratic,
        };
        self
    }

    /// The E-step operand of `models` stacked as restarts, in this layout's form (see
    /// [`crate::covariance`]).
    pub fn upload(&self, models: &[&Params]) -> Operand {
        self.upload_log_weights(models, log_weights(models))
    }

    /// As [`upload`](Self::upload), with the constant column's per-component term given
    /// directly as `log_weights` (`B·K` values, restart-major) instead of `log π_k`; the
    /// models' `weights` are not read. The term need not be a normalised log-weight: the
    /// variational mixture puts `E[log π_k]` and its expected log-determinant terms there.
    pub fn upload_log_weights(&self, models: &[&Params], log_weights: Vec<f64>) -> Operand {
        // One restart's factors are read in place; several are joined first.
        let values = match models {
            [one] => Cow::Borrowed(&one.precisions_cholesky),
            _ => Cow::Owned(Values::concat(
                models.iter().map(|p| &p.precisions_cholesky),
            )),
        };
        let prec = CovTensor::from_values(
            self.cov,
            values,
            models.len(),
            self.k,
            self.d,
            &self.device,
            self.dtype,
        );
        self.upload_with_factors(models, log_weights, prec)
    }

    /// One model's matrices (covariances or precision factors) moved to the device: owned f32
    /// values become the tensor's buffer without a copy ([`CovTensor::from_values`]).
    pub fn moved_to_device(&self, values: Values) -> CovTensor {
        CovTensor::from_values(
            self.cov,
            Cow::Owned(values),
            1,
            self.k,
            self.d,
            &self.device,
            self.dtype,
        )
    }

    /// As [`upload_log_weights`](Self::upload_log_weights), moving the models' matrices out:
    /// their covariances are dropped and their precision factors become the operand's (f32
    /// values without a copy), so that a pass holds them once. For a loop whose M-step forms
    /// the next matrices from the pass (at network-feature width they are `K·D²` values each).
    pub fn upload_moving(&self, models: &mut [&mut Params], log_weights: Vec<f64>) -> Operand {
        let factors = models
            .iter_mut()
            .map(|p| {
                p.covariances = Values::default();
                self.moved_to_device(std::mem::take(&mut p.precisions_cholesky))
            })
            .collect();
        let refs: Vec<&Params> = models.iter().map(|p| &**p).collect();
        self.upload_with_factors(&refs, log_weights, CovTensor::cat(factors))
    }

    /// As [`upload_log_weights`](Self::upload_log_weights), with the precision factors of
    /// the stacked models already on the device (`prec`; the models' `precisions_cholesky`
    /// are not read).
    pub fn upload_with_factors(
        &self,
        models: &[&Params],
        log_weights: Vec<f64>,
        prec: CovTensor,
    ) -> Operand {
        let b = models.len();
        let (k, d) = (self.k, self.d);
        let means: Vec<f64> = models
            .iter()
            .flat_map(|p| p.means.iter().copied())
            .collect();
        let means = tensor_from_f64(means, [b * k, d], &self.device, self.dtype);
        let log_w = tensor_from_f64(log_weights, [b * k], &self.device, self.dtype);
        match self.form {
            EstepForm::Whitened => Operand::Whitened(covariance::whitened_operands(
                self.cov, &prec, means, log_w, k,
            )),
            _ => Operand::Quadratic(covariance::estep_operands(
                self.cov,
                &prec,
                means,
                log_w,
                k,
                &self.packing,
            )),
        }
    }

    /// scikit-learn's `_estimate_gaussian_parameters` of every restart's statistics:
    /// `n_k + 10·eps` (`[B·K]`, the floor for empty components), the responsibility means
    /// `x̄_k = Σ_n r_nk x_n / n_k` (`[B·K, D]`) and covariances `S_k` with `reg_covar` on the
    /// diagonal (the covariance type's shape).
    pub fn gaussian_parameters(
        &self,
        stats: SufficientStats,
        reg_covar: f64,
        eps: f64,
    ) -> (Tensor<1>, Tensor<2>, CovTensor) {
        let nk = stats.nk.clone().add_scalar(10.0 * eps);
        let (means, covs) = self.moments_parameters(stats, nk.clone(), reg_covar, eps);
        (nk, means, covs)
    }

    /// Means `[B·K, D]` and covariances (with `reg_covar`) of `stats` with the masses `nk`,
    /// from whichever form the moments are in (taken, so that a scatter's blocks are freed as
    /// the covariances are written).
    pub fn moments_parameters(
        &self,
        stats: SufficientStats,
        nk: Tensor<1>,
        reg_covar: f64,
        eps: f64,
    ) -> (Tensor<2>, CovTensor) {
        match stats.moments {
            Moments::Quadratic(moments) => {
                let [bk, width] = moments.dims();
                let t = width - self.d - 1;
                let s2 = moments.clone().slice([0..bk, 0..t]);
                let s1 = moments.slice([0..bk, t..t + self.d]);
                covariance::covariances_from_moments(
                    self.cov,
                    nk,
                    s1,
                    s2,
                    self.k,
                    reg_covar,
                    eps,
                    &self.packing,
                )
            }
            Moments::Shifted { shift, s1, s2 } => covariance::covariances_from_scatter(
                self.cov, nk, shift, s1, s2, self.k, reg_covar, eps,
            ),
        }
    }

    /// The M-step: parameters of each restart from its statistics, with scikit-learn's
    /// `n_k + 10·eps` floor for empty components. The statistics are taken by value and freed
    /// once the covariances are formed, before the factorisation (at network-feature width
    /// their scatters are `K·D²/2` values per worker).
    pub fn m_step(
        &self,
        stats: SufficientStats,
        reg_covar: f64,
        eps: f64,
        norm: WeightNorm,
    ) -> Result<Vec<Params>> {
        self.m_step_on_device(stats, reg_covar, eps, norm)?
            .into_iter()
            .map(|(mut p, covs, prec)| {
                p.covariances = covs.to_values()?;
                p.precisions_cholesky = prec.to_values()?;
                Ok(p)
            })
            .collect()
    }

    /// As [`m_step`](Self::m_step), with each restart's covariances and precision factors
    /// left on the device in the working dtype (the returned [`Params`] hold the weights and
    /// means only): at network-feature width they are `K·D²` values each, which the EM loop
    /// keeps there until the fit ends.
    pub fn m_step_on_device(
        &self,
        stats: SufficientStats,
        reg_covar: f64,
        eps: f64,
        norm: WeightNorm,
    ) -> Result<Vec<(Params, CovTensor, CovTensor)>> {
        let (k, d) = (self.k, self.d);
        let b = stats.nk.dims()[0] / k;
        let n_samples = stats.n_samples;
        let (nk, means, covs) = self.gaussian_parameters(stats, reg_covar, eps);
        let prec = covariance::precision_cholesky(self.cov, &covs, k, b)?;
        let nk = to_f64(nk)?;
        let means = to_f64(means)?;
        let per = self.cov.rows_per_model(k);
        Ok((0..b)
            .map(|r| {
                let w = &nk[r * k..(r + 1) * k];
                let total = match norm {
                    WeightNorm::Mass => w.iter().sum::<f64>(),
                    WeightNorm::Samples => n_samples,
                };
                let params = Params {
                    weights: w.iter().map(|v| v / total).collect(),
                    means: means[r * k * d..(r + 1) * k * d].to_vec(),
                    covariances: Values::default(),
                    precisions_cholesky: Values::default(),
                };
                let own = |t: &CovTensor| {
                    if b == 1 {
                        t.clone()
                    } else {
                        t.rows(r * per, per)
                    }
                };
                (params, own(&covs), own(&prec))
            })
            .collect())
    }
}

/// `log π` of stacked models, restart-major. A zero weight gives a finite, hugely negative log
/// (an infinity inside a GEMM can turn into NaN on padded lanes).
pub(crate) fn log_weights(models: &[&Params]) -> Vec<f64> {
    models
        .iter()
        .flat_map(|p| p.weights.iter().map(|w| w.ln().max(-1e30)))
        .collect()
}
