//! The fitted detector as a Burn [`Module`]: constant (non-trainable) parameters that turn
//! features `x: [N, D]` into anomaly scores `[N]` inside a network's forward pass, on any
//! backend, differentiable where the backend has autodiff (the gradient with respect to `x`
//! is `Σ_k r_k(x) Λ_k (x − μ_k)`).
//!
//! `score(x) = −log p(x) = −logsumexp_k ℓ_k(x)`, with the mixture's weighted log-densities
//! `ℓ_k(x) = c_k + log det P_k − (D/2) log 2π − ½ ‖(x − μ_k) P_k‖²`
//! ([`mixburn_gmm::Mixture`]: `c_k` is `log π_k`, or the variational mixture's constant). Rows
//! and means are centred on the mixture's mean `o = Σ_k π_k μ_k` first, so f32 does not
//! cancel on data far from the origin. The squared distances use scikit-learn's forms:
//!
//! | covariance | `factor` | `offset` | `‖(x − μ_k) P_k‖²`, `y = x − o` |
//! |---|---|---|---|
//! | full | `[D, K·D]`, the `P_k` side by side | `[1, K·D]`, `(μ_k − o) P_k` | `‖y P_k − (μ_k − o) P_k‖²` |
//! | tied | `[D, D]`, `P` | `[K, D]`, `(μ_k − o) P` | `‖y P − (μ_k − o) P‖²` |
//! | diag | `[D, K]`, `λ_kd = p_kd²` | `[D, K]`, `λ_kd (μ_kd − o_d)` | `y² λ_k − 2 y·(λ_k (μ_k − o)) + Σ_d λ_kd (μ_kd − o_d)²` |
//! | spherical | `[1, K]`, `λ_k = p_k²` | `[D, K]`, `λ_k (μ_k − o)` | `λ_k ‖y‖² − 2 y·(λ_k (μ_k − o)) + λ_k ‖μ_k − o‖²` |
//!
//! and `log_norm: [1, K]` holds `c_k + log det P_k − (D/2) log 2π` (diag and spherical: minus
//! half their last, constant term). Full and tied covariances form `[N, g, D]` for groups of
//! `g` components with `N·g·D ≤` [`GROUP_ELEMENTS`], so memory is bounded for any K; diag and
//! spherical are GEMMs with `[N, K]` outputs.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor};
use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::covariance::CovarianceType;
use mixburn_gmm::Mixture;

/// Largest `N·g·D` intermediate of the full and tied forms (elements).
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
        let (fs, os) = shapes(cov, k, d);
        let zeros = |shape: [usize; 2]| constant(Tensor::<2>::zeros(shape, device));
        Ok(AnomalyHead {
            centre: zeros([1, d]),
            factor: zeros(fs),
            offset: zeros(os),
            log_norm: zeros([1, k]),
            covariance_type: cov,
        })
    }
}

/// `factor` and `offset` shapes of a covariance type (module docs).
fn shapes(cov: CovarianceType, k: usize, d: usize) -> ([usize; 2], [usize; 2]) {
    match cov {
        CovarianceType::Full => ([d, k * d], [1, k * d]),
        CovarianceType::Tied => ([d, d], [k, d]),
        CovarianceType::Diag => ([d, k], [d, k]),
        CovarianceType::Spherical => ([1, k], [d, k]),
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
    /// Precision operand (module docs).
    pub factor: Param<Tensor<2>>,
    /// Projected or scaled means (module docs).
    pub offset: Param<Tensor<2>>,
    /// Per-component constant of `ℓ_k`, `[1, K]`.
    pub log_norm: Param<Tensor<2>>,
    /// Covariance type.
    #[module(skip)]
    pub covariance_type: CovarianceType,
}

impl AnomalyHead {
    /// The head of a fitted mixture on `device`, in `dtype`.
    pub fn from_mixture(m: &dyn Mixture, device: &Device, dtype: DType) -> Self {
        let (cov, k, d) = (m.covariance_type(), m.n_components(), m.n_features());
        let p = m.params();
        let mut centre = vec![0.0; d];
        for (c, w) in p.weights.iter().enumerate() {
            for (j, o) in centre.iter_mut().enumerate() {
                *o += w * p.means[c * d + j];
            }
        }
        // The centre as the device holds it, so that the offsets below are relative to the
        // very point the rows are centred on (in f32 the rounding of a centre 1000 away from
        // the origin would otherwise shift every row by up to 3e-5).
        if dtype != DType::F64 {
            centre.iter_mut().for_each(|o| *o = *o as f32 as f64);
        }
        let mu = |c: usize, j: usize| p.means[c * d + j] - centre[j];
        let pc = p.precisions_cholesky.to_f64();
        let half_log_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut log_norm = m.log_weights();
        let (fs, os) = shapes(cov, k, d);
        let mut factor = vec![0.0; fs[0] * fs[1]];
        let mut offset = vec![0.0; os[0] * os[1]];
        match cov {
            CovarianceType::Full | CovarianceType::Tied => {
                let full = cov == CovarianceType::Full;
                let pk = |c: usize, i: usize, j: usize| {
                    let base = if full { c * d * d } else { 0 };
                    pc[base + i * d + j]
                };
                if full {
                    for c in 0..k {
                        for i in 0..d {
                            for j in 0..d {
                                factor[i * k * d + c * d + j] = pk(c, i, j);
                            }
                        }
                    }
                } else {
                    factor.copy_from_slice(&pc[..d * d]);
                }
                for c in 0..k {
                    for j in 0..d {
                        offset[c * d + j] = (0..d).map(|i| mu(c, i) * pk(c, i, j)).sum::<f64>();
                    }
                    let log_det: f64 = (0..d).map(|j| pk(c, j, j).ln()).sum();
                    log_norm[c] += log_det - half_log_2pi;
                }
            }
            CovarianceType::Diag => {
                for c in 0..k {
                    let mut quad = 0.0;
                    let mut log_det = 0.0;
                    for j in 0..d {
                        let pj = pc[c * d + j];
                        let lambda = pj * pj;
                        factor[j * k + c] = lambda;
                        offset[j * k + c] = lambda * mu(c, j);
                        quad += lambda * mu(c, j) * mu(c, j);
                        log_det += pj.ln();
                    }
                    log_norm[c] += log_det - half_log_2pi - 0.5 * quad;
                }
            }
            CovarianceType::Spherical => {
                for c in 0..k {
                    let lambda = pc[c] * pc[c];
                    factor[c] = lambda;
                    let mut sq = 0.0;
                    for j in 0..d {
                        offset[j * k + c] = lambda * mu(c, j);
                        sq += mu(c, j) * mu(c, j);
                    }
                    log_norm[c] += d as f64 * pc[c].ln() - half_log_2pi - 0.5 * lambda * sq;
                }
            }
        }
        let t = |v: Vec<f64>, s: [usize; 2]| constant(tensor_from_f64(v, s, device, dtype));
        Self {
            centre: t(centre, [1, d]),
            factor: t(factor, fs),
            offset: t(offset, os),
            log_norm: t(log_norm, [1, k]),
            covariance_type: cov,
        }
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
        self.log_norm.val().dims()[1]
    }

    /// Weighted log-densities `ℓ_k(x)`, `[N, K]` (module docs).
    pub fn weighted_log_prob(&self, x: Tensor<2>) -> Tensor<2> {
        let [n, d] = x.dims();
        let k = self.n_components();
        let y = x - self.centre.val();
        let quad = match self.covariance_type {
            CovarianceType::Full | CovarianceType::Tied => {
                let g = (GROUP_ELEMENTS / (n.max(1) * d)).clamp(1, k);
                let tied = self.covariance_type == CovarianceType::Tied;
                let yp = tied.then(|| y.clone().matmul(self.factor.val()));
                let parts: Vec<Tensor<2>> = (0..k)
                    .step_by(g)
                    .map(|s| {
                        let len = g.min(k - s);
                        let diff: Tensor<3> = match &yp {
                            Some(yp) => {
                                let m = self.offset.val().narrow(0, s, len).unsqueeze_dim::<3>(0);
                                yp.clone().unsqueeze_dim::<3>(1) - m
                            }
                            None => {
                                let f = self.factor.val().narrow(1, s * d, len * d);
                                let b = self.offset.val().narrow(1, s * d, len * d);
                                (y.clone().matmul(f) - b).reshape([n, len, d])
                            }
                        };
                        diff.square().sum_dim(2).reshape([n, len])
                    })
                    .collect();
                Tensor::cat(parts, 1).mul_scalar(-0.5)
            }
            CovarianceType::Diag => {
                y.clone()
                    .square()
                    .matmul(self.factor.val())
                    .mul_scalar(-0.5)
                    + y.matmul(self.offset.val())
            }
            CovarianceType::Spherical => {
                let sq = y.clone().square().sum_dim(1); // [N, 1]
                (sq * self.factor.val()).mul_scalar(-0.5) + y.matmul(self.offset.val())
            }
        };
        quad + self.log_norm.val()
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
