//! The network: a small CNN for 28×28 grey images whose every block exposes features for
//! Mahalanobis OOD detection.
//!
//! ```text
//! x [N, 784] in [0, 1] ─ normalise ((x − 0.2860) / 0.3530) ─ reshape [N, 1, 28, 28]
//!   conv1 (1 → c1, 3×3) ─ relu ─────────────── h1 [N, c1, 26, 26] ── mean over space → f1 [N, c1]
//!   maxpool 2×2 ─ conv2 (c1 → c2, 3×3) ─ relu ─ h2 [N, c2, 11, 11] ── mean over space → f2 [N, c2]
//!   maxpool 2×2 ─ flatten [N, c2·5·5] ─ linear (→ hidden) ─ relu ──── f3 [N, hidden] (penultimate)
//!   linear (→ C) ──────────────────────────── logits [N, C]
//! ```
//!
//! Convolutional feature maps are averaged over space per channel, as Lee et al. (2018) do
//! for their multi-layer ensemble.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::ClassifierError;

/// Side of the square input images (Fashion-MNIST: 28).
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image, `IMAGE_SIDE²`.
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Mean pixel value of the Fashion-MNIST training images (in [0, 1]).
pub const PIXEL_MEAN: f64 = 0.2860;
/// Standard deviation of the Fashion-MNIST training pixels.
pub const PIXEL_STD: f64 = 0.3530;

/// Configuration of [`Classifier`].
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Number of classes (outputs).
    pub num_classes: usize,
    /// Channels of the first convolution.
    #[config(default = 16)]
    pub conv1_channels: usize,
    /// Channels of the second convolution.
    #[config(default = 32)]
    pub conv2_channels: usize,
    /// Width of the penultimate (fully connected) layer.
    #[config(default = 128)]
    pub hidden: usize,
}

/// Side of the map after conv1 (valid 3×3), pool, conv2 (valid 3×3), pool: 28 → 26 → 13 → 11 → 5.
const FINAL_SIDE: usize = ((IMAGE_SIDE - 2) / 2 - 2) / 2;

impl ClassifierConfig {
    /// Checks the configuration: at least two classes and non-zero widths.
    pub fn validate(&self) -> crate::Result<()> {
        if self.num_classes < 2 {
            return Err(ClassifierError::invalid_setting(
                "num_classes",
                format!(
                    "a classifier needs at least 2 classes, got {}",
                    self.num_classes
                ),
            ));
        }
        for (param, v) in [
            ("conv1_channels", self.conv1_channels),
            ("conv2_channels", self.conv2_channels),
            ("hidden", self.hidden),
        ] {
            if v == 0 {
                return Err(ClassifierError::invalid_setting(
                    param,
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// Initialises a network with random weights (Burn's default initialisers) on `device`.
    /// Use an autodiff device (`device.clone().autodiff()`) to train it.
    pub fn init(&self, device: &Device) -> crate::Result<Classifier> {
        self.validate()?;
        let pool = MaxPool2dConfig::new([2, 2]).init();
        Ok(Classifier {
            conv1: Conv2dConfig::new([1, self.conv1_channels], [3, 3]).init(device),
            conv2: Conv2dConfig::new([self.conv1_channels, self.conv2_channels], [3, 3])
                .init(device),
            pool,
            fc1: LinearConfig::new(self.conv2_channels * FINAL_SIDE * FINAL_SIDE, self.hidden)
                .init(device),
            fc2: LinearConfig::new(self.hidden, self.num_classes).init(device),
        })
    }

    /// Widths of the per-layer features [`Classifier::forward_features`] returns:
    /// `[conv1_channels, conv2_channels, hidden]`.
    pub fn feature_dims(&self) -> Vec<usize> {
        vec![self.conv1_channels, self.conv2_channels, self.hidden]
    }
}

/// The CNN described in the module documentation.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

/// What one forward pass gives: the features of every layer (the penultimate last) and the
/// logits.
#[derive(Debug, Clone)]
pub struct LayerOutputs {
    /// `[f1, f2, f3]`: space-averaged conv1 and conv2 activations, then the penultimate layer.
    pub features: Vec<Tensor<2>>,
    /// Class logits `[N, C]`.
    pub logits: Tensor<2>,
}

/// Number of feature layers [`Classifier::forward_features`] returns.
pub const NUM_LAYERS: usize = 3;

impl Classifier {
    /// Normalised images `[N, 1, 28, 28]` from flat pixels `[N, 784]` in [0, 1].
    fn input(x: Tensor<2>) -> Tensor<4> {
        let [n, _] = x.dims();
        x.sub_scalar(PIXEL_MEAN)
            .div_scalar(PIXEL_STD)
            .reshape([n, 1, IMAGE_SIDE, IMAGE_SIDE])
    }

    fn block1(&self, x: Tensor<2>) -> Tensor<4> {
        relu(self.conv1.forward(Self::input(x)))
    }

    fn block2(&self, h1: Tensor<4>) -> Tensor<4> {
        relu(self.conv2.forward(self.pool.forward(h1)))
    }

    fn block3(&self, h2: Tensor<4>) -> Tensor<2> {
        let pooled = self.pool.forward(h2);
        let [n, c, h, w] = pooled.dims();
        relu(self.fc1.forward(pooled.reshape([n, c * h * w])))
    }

    /// Per-channel spatial mean of a feature map: `f[n, c] = mean_{i,j} h[n, c, i, j]`.
    fn spatial_mean(h: Tensor<4>) -> Tensor<2> {
        let [n, c, hh, ww] = h.dims();
        h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c])
    }

    /// Class logits `[N, C]` of flat images `[N, 784]` with pixels in [0, 1].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h3 = self.block3(self.block2(self.block1(x)));
        self.fc2.forward(h3)
    }

    /// Every layer's features and the logits of flat images `[N, 784]` in [0, 1] (see
    /// [`LayerOutputs`]).
    pub fn forward_features(&self, x: Tensor<2>) -> LayerOutputs {
        let h1 = self.block1(x);
        let h2 = self.block2(h1.clone());
        let h3 = self.block3(h2.clone());
        let logits = self.fc2.forward(h3.clone());
        LayerOutputs {
            features: vec![Self::spatial_mean(h1), Self::spatial_mean(h2), h3],
            logits,
        }
    }

    /// The features of layer `layer` (0-based, `< NUM_LAYERS`) alone, computing only the
    /// blocks up to it; the closure input pre-processing differentiates.
    pub fn layer_features(&self, x: Tensor<2>, layer: usize) -> crate::Result<Tensor<2>> {
        if layer >= NUM_LAYERS {
            return Err(ClassifierError::invalid_setting(
                "layer",
                format!("the network has layers 0..{NUM_LAYERS}, got {layer}"),
            ));
        }
        Ok(self.features_at(x, layer))
    }

    /// [`Classifier::layer_features`] without the check, for closures that must return a
    /// tensor (input pre-processing): layer 0, 1, and any `layer ≥ 2` gives the penultimate
    /// layer.
    pub fn features_at(&self, x: Tensor<2>, layer: usize) -> Tensor<2> {
        let h1 = self.block1(x);
        if layer == 0 {
            return Self::spatial_mean(h1);
        }
        let h2 = self.block2(h1);
        if layer == 1 {
            return Self::spatial_mean(h2);
        }
        self.block3(h2)
    }
}
