//! The fitted detector as a Burn [`Module`]: constant (non-trainable) parameters that score
//! features on the network's own device, inside its forward pass, and save with Burn's record
//! format (`Module::save_file` / `load_file`).
//!
//! Scores use the core's matmul-form distances ([`SharedPrecision`]):
//! `d_c²(z) = (z − μ_c)ᵀ P (z − μ_c)`, and
//! - Mahalanobis (Lee et al. 2018): `score(z) = min_c ½ d_c²(z)`, the negated confidence
//!   `max_c(−½ d_c²)`;
//! - relative (Ren et al. 2021): `score(z) = min_c (d_c²(z) − d_0²(z))` with the background
//!   Gaussian `N(μ₀, Σ₀)` of all training features;
//! - Mahalanobis++ (Müller & Hein 2025): `z ← z / ‖z‖` first.
//!
//! Higher scores mean more out-of-distribution.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use mixburn_gmm::SharedPrecision;

/// Shapes of a [`MahalanobisHead`], to build an empty one that a saved record is loaded into.
#[derive(Config, Debug)]
pub struct MahalanobisHeadConfig {
    /// Feature width D.
    pub n_features: usize,
    /// Rank r of the class precision factor.
    pub rank: usize,
    /// Number of classes C.
    pub n_classes: usize,
    /// Rank of the background precision factor (relative Mahalanobis), if any.
    #[config(default = "None")]
    pub background_rank: Option<usize>,
    /// L2-normalise features first (Mahalanobis++).
    #[config(default = false)]
    pub normalize: bool,
}

impl MahalanobisHeadConfig {
    /// An all-zero head of these shapes on `device` (load a record into it).
    pub fn init(&self, device: &Device) -> MahalanobisHead {
        let d = self.n_features;
        let zeros = |shape: [usize; 2]| constant(Tensor::<2>::zeros(shape, device));
        MahalanobisHead {
            origin: zeros([1, d]),
            factor: zeros([d, self.rank]),
            centres_t: zeros([self.rank, self.n_classes]),
            centres_sq: zeros([1, self.n_classes]),
            background: self.background_rank.map(|r| BackgroundHead {
                origin: zeros([1, d]),
                factor: zeros([d, r]),
            }),
            normalize: self.normalize,
        }
    }
}

fn constant(t: Tensor<2>) -> Param<Tensor<2>> {
    Param::from_tensor(t).set_require_grad(false)
}

/// The background Gaussian of relative Mahalanobis: `d_0²(z) = ‖(z − μ₀) F₀‖²`.
#[derive(Module, Debug)]
pub struct BackgroundHead {
    /// `μ₀`, `[1, D]`.
    pub origin: Param<Tensor<2>>,
    /// `F₀` with `Σ₀⁺ = F₀ F₀ᵀ`, `[D, r₀]`.
    pub factor: Param<Tensor<2>>,
}

/// A fitted Mahalanobis detector as a module (module docs).
#[derive(Module, Debug)]
pub struct MahalanobisHead {
    /// Reference point (the training mean), `[1, D]`.
    pub origin: Param<Tensor<2>>,
    /// Precision factor `F` with `P = F Fᵀ`, `[D, r]`.
    pub factor: Param<Tensor<2>>,
    /// Projected class means `((μ_c − o) F)ᵀ`, `[r, C]`.
    pub centres_t: Param<Tensor<2>>,
    /// Their squared norms, `[1, C]`.
    pub centres_sq: Param<Tensor<2>>,
    /// The background Gaussian (relative Mahalanobis only).
    pub background: Option<BackgroundHead>,
    /// L2-normalise features first (Mahalanobis++).
    #[module(skip)]
    pub normalize: bool,
}

impl MahalanobisHead {
    /// A head from the core's prepared operands (moved to `device`).
    pub fn from_operands(
        class: &SharedPrecision,
        background: Option<&SharedPrecision>,
        normalize: bool,
        device: &Device,
    ) -> Self {
        let c = |t: &Tensor<2>| constant(t.clone().to_device(device));
        Self {
            origin: c(&class.origin),
            factor: c(&class.factor),
            centres_t: c(&class.centres_t),
            centres_sq: c(&class.centres_sq),
            background: background.map(|b| BackgroundHead {
                origin: c(&b.origin),
                factor: c(&b.factor),
            }),
            normalize,
        }
    }

    /// The shapes of this head.
    pub fn config(&self) -> MahalanobisHeadConfig {
        let [d, r] = self.factor.val().dims();
        MahalanobisHeadConfig::new(d, r, self.centres_sq.val().dims()[1])
            .with_background_rank(self.background.as_ref().map(|b| b.factor.val().dims()[1]))
            .with_normalize(self.normalize)
    }

    /// Feature width D.
    pub fn n_features(&self) -> usize {
        self.factor.val().dims()[0]
    }

    fn prepare(&self, z: Tensor<2>) -> Tensor<2> {
        if self.normalize {
            l2_normalize(z)
        } else {
            z
        }
    }

    fn class_operands(&self) -> SharedPrecision {
        SharedPrecision::from_parts(
            self.origin.val(),
            self.factor.val(),
            self.centres_t.val(),
            self.centres_sq.val(),
        )
    }

    /// `d_c²(z)` for features `z: [n, D]` (normalised first for Mahalanobis++), `[n, C]`.
    pub fn sq_distances(&self, z: Tensor<2>) -> Tensor<2> {
        self.class_operands().sq_distances(self.prepare(z))
    }

    /// `d_0²(z)` under the background Gaussian, `[n, 1]` (relative Mahalanobis only).
    pub fn background_sq_distance(&self, z: Tensor<2>) -> Option<Tensor<2>> {
        self.background.as_ref().map(|b| {
            mixburn_gmm::mahalanobis::sq_distance_to(
                self.prepare(z),
                b.origin.val(),
                b.factor.val(),
            )
        })
    }

    /// OOD scores `[n]` (higher = more OOD; module docs).
    pub fn forward(&self, z: Tensor<2>) -> Tensor<1> {
        let n = z.dims()[0];
        let d = self.sq_distances(z.clone());
        let s = match self.background_sq_distance(z) {
            Some(d0) => (d - d0).min_dim(1),
            None => d.min_dim(1).mul_scalar(0.5),
        };
        s.reshape([n])
    }
}

/// `z / max(‖z‖₂, 1e-12)` row-wise.
pub fn l2_normalize(z: Tensor<2>) -> Tensor<2> {
    let norm = z.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    z / norm
}
