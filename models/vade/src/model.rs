//! The VaDE network: an MLP encoder `q(z|x) = N(μ̃, diag σ̃²)`, an MLP decoder with Bernoulli
//! outputs `p(x|z) = Π_j Bern(x_j | sigmoid(logit_j(z)))`, and the Gaussian-mixture prior
//! [`GmmPrior`] `p(z) = Σ_k π_k N(z | μ_k, diag σ_k²)`.

use burn::config::Config;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};
use mixburn_backend::dense::dense;
use mixburn_gmm::Precision;
use mixburn_prior::{GmmPrior, GmmPriorConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::VadeError;

/// Largest number of weights (encoder, decoder and prior) a configuration may ask for:
/// 2^30, 4 GiB in f32.
pub const MAX_PARAMETERS: usize = 1 << 30;

/// Architecture and training schedule of a VaDE run (Jiang et al. 2017; defaults follow the
/// reference code slim1017/VaDE for MNIST).
#[derive(Config, Debug, PartialEq)]
pub struct VadeConfig {
    /// Input size (784 for 28×28 images).
    #[config(default = 784)]
    pub input_dim: usize,
    /// Hidden layer sizes of the encoder; the decoder mirrors them (default 500, 500, 2000).
    #[config(default = "vec![500, 500, 2000]")]
    pub hidden: Vec<usize>,
    /// Latent dimension D.
    #[config(default = 10)]
    pub latent_dim: usize,
    /// Mixture components K (clusters).
    #[config(default = 10)]
    pub n_components: usize,
    /// Autoencoder pre-training epochs M (reconstruction only, `z = μ̃`).
    #[config(default = 50)]
    pub pretrain_epochs: usize,
    /// Joint (ELBO) training epochs N.
    #[config(default = 300)]
    pub epochs: usize,
    /// Mini-batch size.
    #[config(default = 100)]
    pub batch_size: usize,
    /// Adam learning rate of the encoder and decoder in joint training.
    #[config(default = 0.002)]
    pub lr: f64,
    /// Adam learning rate of the prior's parameters (logits, means, log-variances).
    #[config(default = 0.002)]
    pub prior_lr: f64,
    /// Adam learning rate of the autoencoder pre-training (constant).
    #[config(default = 0.001)]
    pub pretrain_lr: f64,
    /// Learning rates are multiplied by this factor every `lr_decay_every` joint epochs.
    #[config(default = 0.9)]
    pub lr_decay: f64,
    /// Epochs between learning-rate decays.
    #[config(default = 10)]
    pub lr_decay_every: usize,
    /// Floor of the decayed learning rates (a rate that starts below it stays constant).
    #[config(default = 0.0002)]
    pub lr_floor: f64,
    /// Adam's ε. The reference code uses Keras' Adam with ε = 1e-4 (Burn's default is 1e-5).
    #[config(default = 1e-4)]
    pub adam_epsilon: f64,
    /// Restarts of the diagonal GMM fitted on the encoder means after pre-training.
    #[config(default = 3)]
    pub gmm_n_init: usize,
    /// Floor of the prior's log-variances.
    #[config(default = -10.0)]
    pub log_var_floor: f64,
    /// Seed of the weight initialisation, shuffling, noise and the GMM fit.
    #[config(default = 0)]
    pub seed: u64,
    /// Evaluate ACC/NMI/ARI every this many joint epochs (0: only at the end).
    #[config(default = 10)]
    pub eval_every: usize,
    /// Write a checkpoint every this many epochs (the last epoch of each phase always is).
    #[config(default = 1)]
    pub checkpoint_every: usize,
    /// Read the per-batch losses back (and check them for NaN/inf) every this many batches.
    #[config(default = 10)]
    pub loss_readback_every: usize,
    /// Rows per chunk when encoding the whole data set for the GMM fit and evaluation.
    #[config(default = 5000)]
    pub eval_chunk: usize,
}

impl VadeConfig {
    /// Checks every setting against the data width `input_dim`.
    pub fn validate(&self) -> Result<(), VadeError> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(VadeError::invalid_setting(field, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("input_dim", self.input_dim)?;
        positive("latent_dim", self.latent_dim)?;
        positive("n_components", self.n_components)?;
        positive("batch_size", self.batch_size)?;
        positive("lr_decay_every", self.lr_decay_every)?;
        positive("gmm_n_init", self.gmm_n_init)?;
        positive("checkpoint_every", self.checkpoint_every)?;
        positive("loss_readback_every", self.loss_readback_every)?;
        positive("eval_chunk", self.eval_chunk)?;
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(VadeError::invalid_setting(
                "hidden",
                format!(
                    "{:?}: give at least one hidden layer, each of size ≥ 1 (e.g. 500,500,2000)",
                    self.hidden
                ),
            ));
        }
        // Sizes come from options and from run files: bound the network before allocating it.
        let mut widths = vec![self.input_dim];
        widths.extend(&self.hidden);
        widths.push(2 * self.latent_dim.min(usize::MAX / 2));
        let n_weights = widths
            .windows(2)
            .try_fold(0usize, |acc, w| {
                w[0].checked_add(1)?.checked_mul(w[1])?.checked_add(acc)
            })
            .and_then(|enc| enc.checked_mul(2))
            .and_then(|both| {
                self.n_components
                    .checked_mul(self.latent_dim)?
                    .checked_mul(2)?
                    .checked_add(both)
            });
        match n_weights {
            Some(n) if n <= MAX_PARAMETERS => {}
            _ => {
                return Err(VadeError::invalid_setting(
                    "hidden",
                    format!(
                        "input {}, hidden {:?}, latent {} and {} components make a network of \
                         more than {MAX_PARAMETERS} weights; use smaller layers",
                        self.input_dim, self.hidden, self.latent_dim, self.n_components
                    ),
                ))
            }
        }
        for (field, v) in [
            ("lr", self.lr),
            ("prior_lr", self.prior_lr),
            ("pretrain_lr", self.pretrain_lr),
            ("adam_epsilon", self.adam_epsilon),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(VadeError::invalid_setting(
                    field,
                    format!("{v}: must be > 0"),
                ));
            }
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(VadeError::invalid_setting(
                "lr_decay",
                format!("{}: must be in (0, 1]", self.lr_decay),
            ));
        }
        if !(self.lr_floor.is_finite() && self.lr_floor >= 0.0) {
            return Err(VadeError::invalid_setting(
                "lr_floor",
                format!("{}: must be ≥ 0", self.lr_floor),
            ));
        }
        if !self.log_var_floor.is_finite() {
            return Err(VadeError::invalid_setting(
                "log_var_floor",
                "must be finite",
            ));
        }
        Ok(())
    }

    /// The prior's configuration: K, D, log-variance floor, seed and `precision`.
    pub fn prior_config(&self, precision: Precision) -> GmmPriorConfig {
        GmmPriorConfig::new(self.n_components, self.latent_dim)
            .with_log_var_floor(self.log_var_floor)
            .with_seed(self.seed)
            .with_dtype(Some(precision))
    }

    /// The learning rate of joint epoch `epoch` (0-based) for a base rate `base`:
    /// `max(base · decay^⌊epoch / every⌋, min(floor, base))`.
    pub fn decayed(&self, base: f64, epoch: usize) -> f64 {
        let steps = (epoch / self.lr_decay_every) as i32;
        (base * self.lr_decay.powi(steps)).max(self.lr_floor.min(base))
    }

    /// A VaDE model with Glorot-uniform weights (Keras' default, seeded by `seed`), zero
    /// biases and the prior of [`GmmPriorConfig::init`], in `precision` on `device`.
    pub fn init(&self, device: &Device, precision: Precision) -> Result<Vade, VadeError> {
        self.validate()?;
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x5641_4445_494e_4954);
        let dtype = precision.dtype();
        let mut dense = |i: usize, o: usize| Dense::glorot(i, o, &mut rng, device, dtype);
        let mut widths = vec![self.input_dim];
        widths.extend(&self.hidden);
        let enc_hidden = widths.windows(2).map(|w| dense(w[0], w[1])).collect();
        let last = *widths.last().unwrap_or(&self.input_dim);
        let head = dense(last, 2 * self.latent_dim);
        let mut rev: Vec<usize> = vec![self.latent_dim];
        rev.extend(self.hidden.iter().rev());
        let dec_hidden = rev.windows(2).map(|w| dense(w[0], w[1])).collect();
        let out = dense(*rev.last().unwrap_or(&self.latent_dim), self.input_dim);
        let prior = self.prior_config(precision).try_init(device)?;
        Ok(Vade {
            encoder: Encoder {
                hidden: enc_hidden,
                head,
                latent_dim: self.latent_dim,
            },
            decoder: Decoder {
                hidden: dec_hidden,
                out,
            },
            prior,
        })
    }
}

/// A fully connected layer `y = x W + b` with `W` of shape `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense {
    /// Weights `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// Bias `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    /// Glorot-uniform weights `U(−l, l)`, `l = sqrt(6 / (in + out))`, and zero bias.
    fn glorot(i: usize, o: usize, rng: &mut StdRng, device: &Device, dtype: DType) -> Self {
        let limit = (6.0 / (i + o) as f64).sqrt();
        let w: Vec<f64> = (0..i * o)
            .map(|_| rng.random_range(-limit..limit))
            .collect();
        let weight = Tensor::from_data(TensorData::new(w, [i, o]), (device, dtype));
        let bias = Tensor::from_data(TensorData::new(vec![0.0f64; o], [o]), (device, dtype));
        Dense {
            weight: Param::from_tensor(weight),
            bias: Param::from_tensor(bias),
        }
    }

    /// `x W + b` for `x` of shape `[N, in]` (one operation with its own backward pass:
    /// `mixburn_backend::dense`).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        dense(x, self.weight.val(), self.bias.val(), false)
    }

    /// `ReLU(x W + b)`, the hidden layers' step, as one operation.
    pub fn forward_relu(&self, x: Tensor<2>) -> Tensor<2> {
        dense(x, self.weight.val(), self.bias.val(), true)
    }
}

/// Encoder MLP `x → ReLU layers → (μ̃, log σ̃²)`; the two heads are one `[h, 2D]` layer.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Hidden layers (ReLU).
    pub hidden: Vec<Dense>,
    /// The output layer: columns `0..D` are μ̃, `D..2D` are log σ̃².
    pub head: Dense,
    /// Latent dimension D.
    #[module(skip)]
    pub latent_dim: usize,
}

impl Encoder {
    /// `(μ̃, log σ̃²)`, each `[N, D]`.
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let out = self.head.forward(self.features(x));
        let d = self.latent_dim;
        (out.clone().narrow(1, 0, d), out.narrow(1, d, d))
    }

    /// μ̃ alone, `[N, D]` (the deterministic code used for pre-training, the GMM fit and
    /// prediction).
    pub fn mean(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.features(x);
        let w = self.head.weight.val().narrow(1, 0, self.latent_dim);
        let b = self.head.bias.val().narrow(0, 0, self.latent_dim);
        dense(h, w, b, false)
    }

    fn features(&self, x: Tensor<2>) -> Tensor<2> {
        self.hidden.iter().fold(x, |h, l| l.forward_relu(h))
    }
}

/// Decoder MLP `z → ReLU layers → logits` of the Bernoulli pixel probabilities.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Hidden layers (ReLU), the encoder's sizes in reverse.
    pub hidden: Vec<Dense>,
    /// Output layer (logits).
    pub out: Dense,
}

impl Decoder {
    /// Logits `l` with `p(x_j = 1 | z) = sigmoid(l_j)`, `[N, input_dim]`.
    pub fn logits(&self, z: Tensor<2>) -> Tensor<2> {
        let h = self.hidden.iter().fold(z, |h, l| l.forward_relu(h));
        self.out.forward(h)
    }

    /// Pixel means `sigmoid(l)`, `[N, input_dim]`.
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::sigmoid(self.logits(z))
    }
}

/// The VaDE model: encoder, decoder and Gaussian-mixture prior.
#[derive(Module, Debug)]
pub struct Vade {
    /// `q(z|x)`.
    pub encoder: Encoder,
    /// `p(x|z)`.
    pub decoder: Decoder,
    /// `p(z) = Σ_k π_k N(z | μ_k, diag σ_k²)`.
    pub prior: GmmPrior,
}

/// Per-batch losses: the minimised scalar and its parts, each a `[1]` tensor (means over
/// the batch).
pub struct Loss {
    /// The minimised loss `recon + kl`.
    pub loss: Tensor<1>,
    /// Mean reconstruction term `Σ_j BCE(x_j, l_j)`.
    pub recon: Tensor<1>,
    /// Mean KL term.
    pub kl: Tensor<1>,
}

impl Loss {
    /// `[loss, recon, kl]` as one `[3]` tensor without autodiff (for read-back).
    pub fn stats(&self) -> Tensor<1> {
        Tensor::cat(
            vec![
                self.loss.clone().inner(),
                self.recon.clone().inner(),
                self.kl.clone().inner(),
            ],
            0,
        )
    }
}

/// Binary cross-entropy of targets `x ∈ [0, 1]` under Bernoulli logits `l`, summed over
/// columns, `[N]`: `Σ_j max(l_j, 0) − x_j l_j + log(1 + exp(−|l_j|))`
/// (= `−Σ_j [x_j log σ(l_j) + (1 − x_j) log(1 − σ(l_j))]`, computed without overflow).
/// One operation with its own backward pass (`mixburn_backend::bce`).
pub fn bce_with_logits(logits: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
    mixburn_backend::bce::bce_with_logits(logits, x)
}

/// `KL(N(μ, diag e^{log σ²}) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)`, `[N]`.
pub fn kl_standard_normal(mu: Tensor<2>, log_var: Tensor<2>) -> Tensor<1> {
    (mu.square() + log_var.clone().exp() - log_var)
        .sub_scalar(1.0)
        .sum_dim(1)
        .squeeze_dim(1)
        .mul_scalar(0.5)
}

impl Vade {
    /// Latent dimension D.
    pub fn latent_dim(&self) -> usize {
        self.encoder.latent_dim
    }

    /// Number of mixture components K.
    pub fn n_components(&self) -> usize {
        self.prior.n_components()
    }

    /// `z = μ̃ + σ̃ ⊙ ε` (the reparameterisation), with `ε ~ N(0, I)` given, `[N, D]`.
    pub fn reparameterise(mu: Tensor<2>, log_var: Tensor<2>, eps: Tensor<2>) -> Tensor<2> {
        mu + log_var.mul_scalar(0.5).exp() * eps
    }

    /// Pre-training loss: mean over the batch of `Σ_j BCE(x_j, decoder(μ̃(x))_j)`
    /// (an autoencoder on the encoder means; the KL part is zero).
    pub fn pretrain_loss(&self, x: Tensor<2>) -> Loss {
        let mu = self.encoder.mean(x.clone());
        let recon = bce_with_logits(self.decoder.logits(mu), x).mean();
        let kl = recon.clone().zeros_like();
        Loss {
            loss: recon.clone(),
            recon,
            kl,
        }
    }

    /// VaDE's negative ELBO, mean over the batch: `Σ_j BCE(x_j, decoder(z)_j) +
    /// KL_vade(μ̃, log σ̃², γ)` with one sample `z = μ̃ + σ̃ ε` and `γ = q(c | z)` from the prior
    /// (not detached, as in the reference code), both from
    /// [`GmmPrior::kl_vade_from_sample`](mixburn_prior::GmmPrior::kl_vade_from_sample).
    pub fn elbo_loss(&self, x: Tensor<2>, eps: Tensor<2>) -> Loss {
        let (mu, log_var) = self.encoder.forward(x.clone());
        let z = Self::reparameterise(mu.clone(), log_var.clone(), eps);
        let recon = bce_with_logits(self.decoder.logits(z.clone()), x).mean();
        let (kl, _gamma) = self.prior.kl_vade_from_sample(z, mu, log_var);
        let kl = kl.mean();
        Loss {
            loss: recon.clone() + kl.clone(),
            recon,
            kl,
        }
    }

    /// The same VAE with a standard normal prior (the benchmark's baseline):
    /// `Σ_j BCE(x_j, decoder(z)_j) + KL(q(z|x) ‖ N(0, I))`, mean over the batch.
    pub fn standard_normal_loss(&self, x: Tensor<2>, eps: Tensor<2>) -> Loss {
        let (mu, log_var) = self.encoder.forward(x.clone());
        let z = Self::reparameterise(mu.clone(), log_var.clone(), eps);
        let recon = bce_with_logits(self.decoder.logits(z), x).mean();
        let kl = kl_standard_normal(mu, log_var).mean();
        Loss {
            loss: recon.clone() + kl.clone(),
            recon,
            kl,
        }
    }

    /// Encoder means μ̃ of `x` in chunks of `chunk` rows, `[N, D]` (no autodiff).
    pub fn encode_means(&self, x: &Tensor<2>, chunk: usize) -> Tensor<2> {
        let [n, _] = x.dims();
        let parts: Vec<Tensor<2>> = mixburn_backend::host::chunks(n, chunk)
            .map(|(s, len)| {
                self.encoder
                    .mean(x.clone().narrow(0, s, len).without_autodiff())
                    .without_autodiff()
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    /// Predicted clusters `argmax_k γ_k(μ̃(x))` (VaDE's `predict`), `[N]` as i64 values.
    pub fn predict_from_means(&self, mu: Tensor<2>) -> Result<Vec<i64>, VadeError> {
        let [n, _] = mu.dims();
        let labels = self.prior.responsibilities(mu).argmax(1).reshape([n]);
        Ok(mixburn_backend::host::to_i64(labels)?)
    }

    /// Images decoded from `n` samples of prior component `k`, `[n, input_dim]` in [0, 1].
    pub fn sample_component_images(&self, k: usize, n: usize, seed: u64) -> Tensor<2> {
        let z = self.prior.sample_component(k, n, seed);
        self.decoder.forward(z)
    }
}

/// Casts every float parameter of `module` to `dtype` (a no-op for those already in it).
/// Apply it to modules without autodiff (before [`Module::train`]).
pub fn cast_params<M: Module>(module: M, dtype: DType) -> M {
    struct Caster(DType);
    impl ModuleMapper for Caster {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            if param.val().dtype() == dtype {
                param
            } else {
                param.map(|t| t.cast(dtype))
            }
        }
    }
    module.map(&mut Caster(dtype))
}
