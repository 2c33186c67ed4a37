//! The [`GmmPrior`] module: its parameters, shape accessors and constructors from host values.
//! The numerics live in [`crate::density`] and [`crate::kl`], sampling in [`crate::sample`],
//! conversion from a fitted mixture in [`crate::from_gmm`], checked loading in [`crate::record`].

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};
use mixburn_backend::host::tensor_from_f64;

pub use crate::config::GmmPriorConfig;
pub use crate::error::PriorError;

/// `p(z) = Σ_k softmax(logits)_k N(z | μ_k, diag exp(max(log_var_k, floor)))`.
///
/// The parameters are unconstrained: mixing logits (so `π = softmax(logits)` stays on the
/// simplex and its gradients stay finite as a weight goes to 0), means, and log-variances whose
/// floor is applied when they are used (a clamp: gradients below the floor are zero).
#[derive(Module, Debug)]
pub struct GmmPrior {
    /// Mixing logits `[K]`.
    pub logits: Param<Tensor<1>>,
    /// Means `[K, D]`.
    pub means: Param<Tensor<2>>,
    /// Log-variances `[K, D]` (before the floor).
    pub log_vars: Param<Tensor<2>>,
    /// Floor on the log-variances.
    #[module(skip)]
    pub log_var_floor: f64,
}

impl GmmPrior {
    /// Number of components K.
    pub fn n_components(&self) -> usize {
        self.means.val().dims()[0]
    }
    /// Latent dimension D.
    pub fn latent_dim(&self) -> usize {
        self.means.val().dims()[1]
    }
    /// Float dtype of the parameters (inputs are cast to it).
    pub fn dtype(&self) -> DType {
        self.means.val().dtype()
    }
    /// Device of the parameters.
    pub fn device(&self) -> Device {
        self.means.val().device()
    }
    /// `log π = log_softmax(logits) = logits − logsumexp(logits)`, `[K]`.
    pub fn log_weights(&self) -> Tensor<1> {
        let logits = self.logits.val();
        let k = logits.dims()[0];
        let lse = crate::density::logsumexp_rows(logits.clone().reshape([1, k]));
        logits - lse
    }
    /// `π = softmax(logits)`, `[K]`.
    pub fn weights(&self) -> Tensor<1> {
        self.log_weights().exp()
    }
    /// Floored log-variances `max(log_vars, log_var_floor)`, `[K, D]`.
    pub fn log_variances(&self) -> Tensor<2> {
        self.log_vars.val().clamp_min(self.log_var_floor)
    }

    /// A prior with the given host parameters (row-major f64): `logits` `[K]`, `means` `[K, D]`,
    /// `log_vars` `[K, D]` (before the floor), in `config`'s shape, dtype and floor.
    ///
    /// Returns [`PriorError::Shape`] when a length is not K or K·D, and
    /// [`PriorError::InvalidSetting`] for an invalid config or a non-finite value (a logit of
    /// `−inf` for an empty component is refused: use a large negative finite logit instead).
    pub fn from_parameters(
        logits: &[f64],
        means: &[f64],
        log_vars: &[f64],
        config: &GmmPriorConfig,
        device: &Device,
    ) -> Result<Self, PriorError> {
        config.validate()?;
        let (k, d) = (config.n_components, config.latent_dim);
        for (name, values, want) in [
            ("logits", logits, k),
            ("means", means, k * d),
            ("log_vars", log_vars, k * d),
        ] {
            if values.len() != want {
                return Err(PriorError::Shape(format!(
                    "{name} has {} values but n_components={k}, latent_dim={d} needs {want}; \
                     pass row-major arrays of the config's shape",
                    values.len()
                )));
            }
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(PriorError::invalid_setting(
                    "parameters",
                    format!(
                        "{name}[{bad}] = {} is not finite; every parameter must be a finite number",
                        values[bad]
                    ),
                ));
            }
        }
        let dtype = config.dtype_on(device);
        Ok(Self {
            logits: Param::from_tensor(tensor_from_f64(logits.to_vec(), [k], device, dtype)),
            means: Param::from_tensor(tensor_from_f64(means.to_vec(), [k, d], device, dtype)),
            log_vars: Param::from_tensor(tensor_from_f64(log_vars.to_vec(), [k, d], device, dtype)),
            log_var_floor: config.log_var_floor,
        })
    }
}
