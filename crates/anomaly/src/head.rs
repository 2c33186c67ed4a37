//! The fitted detector as a Burn [`Module`]: constant (non-trainable) parameters that turn
//! features `x: [N, D]` into anomaly scores `[N]` inside a network's forward pass, on any
//! backend, differentiable where the backend has autodiff (the gradient with respect to `x`
//! is `Σ_k r_k(x) Λ_k (x − μ_k)`).
//!
//! `score(x) = −log p(x) = −logsumexp_k ℓ_k(x)`, with the mixture's weighted log-densities
//! `ℓ_k(x) = c_k + log det P_k − (D/2) log 2π − ½ ‖(x − μ_k) P_k‖²`
//! ([`mixburn_gmm::Mixture`]: `c_k` is `log π_k`, or the variational mixture's constant). Rows
//! and means are centred on the mixture's mean `o = Σ_k π_k μ_k` first, so f32 does not
//! cancel on data far from the origin.
//!
//! The parameters are the core's E-step operands of the centred mixture, and the forward
//! pass is the core's log-density (`mixburn_gmm::covariance`, `mixburn_gmm::estep`): no form
//! of its own.
//!
//! | covariance | `operand` | `ℓ(y)`, `y = x − o` |
//! |---|---|---|
//! | full, tied | per column block of [`triangular_blocks`] the factors and the centres `μ_k P_k`, then `c: [1, K]` | [`whitened_log_density_of`]: `c_k − ½‖y P_k − μ_k P_k‖²` |
//! | diag, spherical | `A: [T' + D + 1, K]` ([`estep_operands`]) | `[F(y), y, 1] · A` ([`diagonal_features`]) |
//!
//! Full and tied covariances form `[n, K, w]` per column block, for row pieces with
//! `n·K·(D + 1) ≤` [`GROUP_ELEMENTS`], so memory is bounded for any batch.

use std::borrow::Cow;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};
use mixburn_backend::dense::product;
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::covariance::{
    diagonal_features, estep_operands, whitened_operands, CovTensor, CovarianceType, Packing,
    WhiteningBlock,
};
use mixburn_gmm::estep::whitened_log_density_of;
use mixburn_gmm::form::triangular_blocks;
use mixburn_gmm::Mixture;

/// Largest `n·K·(D + 1)` intermediate of the full and tied forms (elements).
pub const GROUP_ELEMENTS: usize = 1 << 24;

/// Shapes of an [`AnomalyHead`], to build an empty one that a saved record is loaded into.
#[derive(Config, Debug)]
pub struct AnomalyHeadConfig {
    /// Feature width D.
    pub n_features: usize,
    /// Components K.
    pub n_components: usize,
    /// Covariance type: `full`, `tied`, `diag` or `spherical`.
    pub covariance_type: String,
}

impl AnomalyHeadConfig {
    /// An all-zero head of these shapes on `device` (load a record into it).
    pub fn init(&self, device: &Device) -> mixburn_gmm::Result<AnomalyHead> {
        let cov: CovarianceType = self.covariance_type.parse()?;
        let (k, d) = (self.n_components, self.n_features);
        let zeros = |shape: [usize; 2]| constant(Tensor::<2>::zeros(shape, device));
        Ok(AnomalyHead {
            centre: zeros([1, d]),
            operand: operand_shapes(cov, k, d).into_iter().map(zeros).collect(),
            covariance_type: cov,
        })
    }
}

/// The operand's tensors' shapes (module docs).
fn operand_shapes(cov: CovarianceType, k: usize, d: usize) -> Vec<[usize; 2]> {
    match cov {
        CovarianceType::Full | CovarianceType::Tied => {
            let tied = cov == CovarianceType::Tied;
            let mut shapes: Vec<[usize; 2]> = triangular_blocks(d)
                .into_iter()
                .flat_map(|cols| {
                    let w = cols.len();
                    let factors = if tied {
                        [cols.end, w]
                    } else {
                        [1 + cols.end, k * w]
                    };
                    [factors, [k, w]]
                })
                .collect();
            shapes.push([1, k]);
            shapes
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            vec![[cov.quad_width(d) + d + 1, k]]
        }
    }
}

fn constant(t: Tensor<2>) -> Param<Tensor<2>> {
    Param::from_tensor(t).set_require_grad(false)
}

/// A fitted anomaly detector's mixture as a module (module docs).
#[derive(Module, Debug)]
pub struct AnomalyHead {
    /// The centre `o = Σ_k π_k μ_k`, `[1, D]`.
    pub centre: Param<Tensor<2>>,
    /// The core's E-step operand of the mixture centred on `o` (module docs).
    pub operand: Vec<Param<Tensor<2>>>,
    /// Covariance type.
    #[module(skip)]
    pub covariance_type: CovarianceType,
}

impl AnomalyHead {
    /// The head of a fitted mixture on `device`, in `dtype`: the core's operands of the
    /// mixture centred on its mean (an error where the device cannot give them back to be laid
    /// out as a record loads them: a lost remote device).
    pub fn from_mixture(
        m: &dyn Mixture,
        device: &Device,
        dtype: DType,
    ) -> mixburn_gmm::Result<Self> {
        let (cov, k, d) = (m.covariance_type(), m.n_components(), m.n_features());
        let p = m.params();
        let mut centre = p.mixture_mean(d);
        // The centre as the device holds it, so that the means below are relative to the
        // very point the rows are centred on (in f32 the rounding of a centre 1000 away from
        // the origin would otherwise shift every row by up to 3e-5).
        if dtype != DType::F64 {
            centre.iter_mut().for_each(|o| *o = *o as f32 as f64);
        }
        let means: Vec<f64> = p
            .means
            .iter()
            .enumerate()
            .map(|(i, m)| m - centre[i % d])
            .collect();
        let means = tensor_from_f64(means, [k, d], device, dtype);
        let log_weights = tensor_from_f64(m.log_weights(), [k], device, dtype);
        let prec = CovTensor::from_values(
            cov,
            Cow::Borrowed(&p.precisions_cholesky),
            1,
            k,
            d,
            device,
            dtype,
        );
        let operand = match cov {
            CovarianceType::Full | CovarianceType::Tied => {
                let w = whitened_operands(cov, &prec, means, log_weights, k);
                let mut parts: Vec<Tensor<2>> = w
                    .blocks
                    .into_iter()
                    .flat_map(|b| [b.factors, b.centres])
                    .collect();
                parts.push(w.constants);
                parts
            }
            CovarianceType::Diag | CovarianceType::Spherical => {
                let packing = Packing::new(cov, d, device, dtype);
                vec![estep_operands(cov, &prec, means, log_weights, k, &packing)]
            }
        };
        // Each part laid out contiguously, as a record loads it (the core returns some as
        // transposed views, which the product would sum in another order).
        let contiguous = |t: Tensor<2>| -> mixburn_gmm::Result<Param<Tensor<2>>> {
            let dims = t.dims();
            Ok(constant(tensor_from_f64(to_f64(t)?, dims, device, dtype)))
        };
        Ok(Self {
            centre: constant(tensor_from_f64(centre, [1, d], device, dtype)),
            operand: operand
                .into_iter()
                .map(contiguous)
                .collect::<mixburn_gmm::Result<_>>()?,
            covariance_type: cov,
        })
    }

    /// The shapes of this head.
    pub fn config(&self) -> AnomalyHeadConfig {
        AnomalyHeadConfig::new(
            self.n_features(),
            self.n_components(),
            self.covariance_type.to_string(),
        )
    }

    /// Feature width D.
    pub fn n_features(&self) -> usize {
        self.centre.val().dims()[1]
    }

    /// Components K.
    pub fn n_components(&self) -> usize {
        self.operand.last().map_or(0, |t| t.val().dims()[1])
    }

    /// Weighted log-densities `ℓ_k(x)`, `[N, K]` (module docs).
    pub fn weighted_log_prob(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let k = self.n_components();
        let y = x - self.centre.val();
        match self.covariance_type {
            cov @ (CovarianceType::Full | CovarianceType::Tied) => {
                let (blocks, constants) = self.whitening(d);
                let piece = (GROUP_ELEMENTS / (k * (d + 1)).max(1)).clamp(1, n.max(1));
                let tied = cov == CovarianceType::Tied;
                let parts: Vec<Tensor<2>> = (0..n)
                    .step_by(piece)
                    .map(|s| {
                        let rows = y.clone().narrow(0, s, piece.min(n - s));
                        whitened_log_density_of(&blocks, &constants, k, tied, rows)
                    })
                    .collect();
                if parts.is_empty() {
                    Tensor::zeros([0, k], (&y.device(), y.dtype()))
                } else {
                    Tensor::cat(parts, 0)
                }
            }
            cov @ (CovarianceType::Diag | CovarianceType::Spherical) => {
                let ones = Tensor::<2>::ones([n, 1], (&y.device(), y.dtype()));
                let spherical = cov == CovarianceType::Spherical;
                let g = Tensor::cat(vec![diagonal_features(spherical, y.clone()), y, ones], 1);
                product(g, self.operand[0].val())
            }
        }
    }

    /// The whitening's column blocks and constants from the operand (module docs).
    fn whitening(&self, d: usize) -> (Vec<WhiteningBlock>, Tensor<2>) {
        let blocks = triangular_blocks(d)
            .into_iter()
            .zip(self.operand.chunks(2))
            .map(|(cols, pair)| WhiteningBlock {
                depth: cols.end,
                factors: pair[0].val(),
                centres: pair[1].val(),
            })
            .collect();
        let constants = self.operand.last().expect("the constants").val();
        (blocks, constants)
    }

    /// `log p(x) = logsumexp_k ℓ_k(x)`, `[N]`.
    pub fn log_prob(&self, x: Tensor<2>) -> Tensor<1> {
        let n = x.dims()[0];
        let w = self.weighted_log_prob(x);
        let m = w.clone().max_dim(1).detach();
        (m.clone() + (w - m).exp().sum_dim(1).log()).reshape([n])
    }

    /// Anomaly scores `−log p(x)`, `[N]`, higher = more anomalous (module docs).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<1> {
        self.log_prob(x).neg()
    }
}
