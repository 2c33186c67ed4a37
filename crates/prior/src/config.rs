//! [`GmmPriorConfig`]: the prior's shape, log-variance floor, seed and dtype, checked in one place
//! ([`GmmPriorConfig::validate`]) before any tensor is built.

use burn::config::Config;
use burn::tensor::{DType, Device};
use mixburn_gmm::Precision;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::PriorError;
use crate::prior::GmmPrior;

/// Configuration of a [`GmmPrior`].
#[derive(Config, Debug)]
pub struct GmmPriorConfig {
    /// Number of mixture components K.
    pub n_components: usize,
    /// Latent dimension D.
    pub latent_dim: usize,
    /// Floor on the log-variances (default −10, i.e. σ² ≥ e⁻¹⁰ ≈ 4.5e-5). The prior uses
    /// `max(log_var, floor)`: a hard clamp, so a log-variance below the floor has gradient zero
    /// and stays where it is until the optimiser moves it back through other terms.
    #[config(default = -10.0)]
    pub log_var_floor: f64,
    /// Seed of the host RNG that draws the initial means (default 0).
    #[config(default = 0)]
    pub seed: u64,
    /// Float type of the parameters; `None` (the default) takes the device's default float type.
    #[config(default = "None")]
    pub dtype: Option<Precision>,
}

impl GmmPriorConfig {
    /// Checks `n_components ≥ 1`, `latent_dim ≥ 1` and a finite `log_var_floor`.
    pub fn validate(&self) -> Result<(), PriorError> {
        if self.n_components == 0 {
            return Err(PriorError::invalid_setting(
                "n_components",
                "n_components must be >= 1; give the prior at least one component",
            ));
        }
        if self.latent_dim == 0 {
            return Err(PriorError::invalid_setting(
                "latent_dim",
                "latent_dim must be >= 1; set it to the encoder's latent size",
            ));
        }
        if !self.log_var_floor.is_finite() {
            return Err(PriorError::invalid_setting(
                "log_var_floor",
                format!(
                    "log_var_floor is {}; use a finite value such as the default -10",
                    self.log_var_floor
                ),
            ));
        }
        Ok(())
    }

    /// The float dtype the parameters are created in on `device`: `dtype` when set, otherwise
    /// the device's default float type.
    pub fn dtype_on(&self, device: &Device) -> DType {
        match self.dtype {
            Some(p) => p.dtype(),
            None => device.settings().float_dtype.into(),
        }
    }

    /// A prior with uniform weights (logits 0), means drawn from N(0, I) with a host
    /// `StdRng` seeded by `seed`, and unit variances (log-variances 0).
    ///
    /// # Panics
    ///
    /// When the configuration is invalid (see [`validate`](Self::validate)); use
    /// [`try_init`](Self::try_init) to get the error instead.
    pub fn init(&self, device: &Device) -> GmmPrior {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("GmmPriorConfig::init: {e}"))
    }

    /// [`init`](Self::init) returning an error for an invalid configuration.
    pub fn try_init(&self, device: &Device) -> Result<GmmPrior, PriorError> {
        self.validate()?;
        let (k, d) = (self.n_components, self.latent_dim);
        let mut rng = StdRng::seed_from_u64(self.seed);
        let means: Vec<f64> = (0..k * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        GmmPrior::from_parameters(&vec![0.0; k], &means, &vec![0.0; k * d], self, device)
    }
}
