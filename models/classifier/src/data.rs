//! Host-side image sets: class subsets, batches, synthetic noise and the image transforms
//! that make far-OOD sets from in-distribution images.

use burn::tensor::{DType, Device, Int, Tensor};
use mixburn_backend::host;
use mixburn_data::MnistSplit;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ClassifierError, Result};
use crate::model::{IMAGE_SIDE, PIXELS};

/// Flat 28×28 grey images with pixels in [0, 1] and their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Row-major pixels, `len() == PIXELS * labels.len()`.
    pub pixels: Vec<f64>,
    /// One label per image (`-1` for images without a class, e.g. noise).
    pub labels: Vec<i64>,
}

impl ImageSet {
    /// An image set from pixels and labels, checked for size and for values in [0, 1].
    pub fn new(pixels: Vec<f64>, labels: Vec<i64>) -> Result<Self> {
        if pixels.len() != labels.len() * PIXELS {
            return Err(ClassifierError::InvalidInput(format!(
                "{} pixel values for {} labels; expected {} ({}×{} images)",
                pixels.len(),
                labels.len(),
                labels.len() * PIXELS,
                IMAGE_SIDE,
                IMAGE_SIDE
            )));
        }
        if let Some(i) = pixels
            .iter()
            .position(|v| !v.is_finite() || !(0.0..=1.0).contains(v))
        {
            return Err(ClassifierError::InvalidInput(format!(
                "pixel {} of image {} is {}; pixels must be finite and in [0, 1] (divide 8-bit images by 255)",
                i % PIXELS,
                i / PIXELS,
                pixels[i]
            )));
        }
        Ok(Self { pixels, labels })
    }

    /// The images of an MNIST-format split (`mixburn_data::read_mnist_dir`), which must be 28×28.
    pub fn from_split(split: MnistSplit) -> Result<Self> {
        if split.images.cols != PIXELS {
            return Err(ClassifierError::InvalidInput(format!(
                "the images have {} pixels; this network takes {IMAGE_SIDE}×{IMAGE_SIDE} = {PIXELS}",
                split.images.cols
            )));
        }
        Self::new(split.images.data, split.labels)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f64] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Self {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// The first `n` images (all of them when `n ≥ len`).
    pub fn head(&self, n: usize) -> Self {
        let n = n.min(self.len());
        Self {
            pixels: self.pixels[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }

    /// Images `start..` (none when `start ≥ len`).
    pub fn tail(&self, start: usize) -> Self {
        let start = start.min(self.len());
        Self {
            pixels: self.pixels[start * PIXELS..].to_vec(),
            labels: self.labels[start..].to_vec(),
        }
    }

    /// The images whose label is in `classes`, relabelled by position in `classes`
    /// (`classes[j]` becomes `j`), and the images whose label is not (labels kept).
    pub fn split_classes(&self, classes: &[i64]) -> (Self, Self) {
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for (i, l) in self.labels.iter().enumerate() {
            if classes.contains(l) {
                inside.push(i);
            } else {
                outside.push(i);
            }
        }
        let mut id = self.subset(&inside);
        for l in &mut id.labels {
            *l = classes.iter().position(|c| c == l).unwrap_or(0) as i64;
        }
        (id, self.subset(&outside))
    }

    /// Images `indices` as a float tensor `[len, 784]` in `dtype`.
    pub fn batch(&self, indices: &[usize], device: &Device, dtype: DType) -> Tensor<2> {
        let sub = self.subset(indices);
        host::tensor_from_f64(sub.pixels, [indices.len(), PIXELS], device, dtype)
    }

    /// Labels `indices` as an int tensor `[len]`.
    pub fn label_batch(&self, indices: &[usize], device: &Device) -> Tensor<1, Int> {
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        host::int_tensor(labels, [indices.len()], device)
    }

    /// Applies `f` to every image (pixels in, pixels out), keeping the labels.
    pub fn map_images(&self, f: impl Fn(&[f64]) -> Vec<f64>) -> Self {
        let mut pixels = Vec::with_capacity(self.pixels.len());
        for i in 0..self.len() {
            pixels.extend(f(self.image(i)));
        }
        Self {
            pixels,
            labels: self.labels.clone(),
        }
    }
}

/// `n` images of independent uniform pixels `U[0, 1]`, labelled `-1`.
pub fn uniform_noise(n: usize, seed: u64) -> ImageSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let pixels = (0..n * PIXELS).map(|_| rng.random::<f64>()).collect();
    ImageSet {
        pixels,
        labels: vec![-1; n],
    }
}

/// `n` images of independent Gaussian pixels `clip(N(mean, std²), 0, 1)`, labelled `-1`
/// (Box–Muller from a seeded generator).
pub fn gaussian_noise(n: usize, mean: f64, std: f64, seed: u64) -> ImageSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    while pixels.len() < n * PIXELS {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        for z in [r * t.cos(), r * t.sin()] {
            if pixels.len() < n * PIXELS {
                pixels.push((mean + std * z).clamp(0.0, 1.0));
            }
        }
    }
    ImageSet {
        pixels,
        labels: vec![-1; n],
    }
}

/// The photographic negative `1 − x`.
pub fn invert(image: &[f64]) -> Vec<f64> {
    image.iter().map(|v| 1.0 - v).collect()
}

/// The image upside down (rows in reverse order).
pub fn flip_vertical(image: &[f64]) -> Vec<f64> {
    image
        .chunks(IMAGE_SIDE)
        .rev()
        .flat_map(|row| row.iter().copied())
        .collect()
}

/// Gaussian blur with standard deviation `sigma` pixels: a separable kernel
/// `k(t) ∝ exp(−t² / 2σ²)`, `|t| ≤ ⌈3σ⌉`, with the border pixels repeated.
pub fn gaussian_blur(image: &[f64], sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil().max(0.0) as isize;
    let mut kernel: Vec<f64> = (-radius..=radius)
        .map(|t| (-((t * t) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let s = IMAGE_SIDE as isize;
    let clamp = |v: isize| v.clamp(0, s - 1) as usize;
    let pass = |src: &[f64], horizontal: bool| {
        let mut out = vec![0.0; PIXELS];
        for r in 0..s {
            for c in 0..s {
                let mut acc = 0.0;
                for (j, k) in kernel.iter().enumerate() {
                    let t = j as isize - radius;
                    let (rr, cc) = if horizontal {
                        (r as usize, clamp(c + t))
                    } else {
                        (clamp(r + t), c as usize)
                    };
                    acc += k * src[rr * IMAGE_SIDE + cc];
                }
                out[r as usize * IMAGE_SIDE + c as usize] = acc;
            }
        }
        out
    };
    pass(&pass(image, true), false)
}

/// Bilinear resize of a `side×side` image to 28×28 (pixel centres aligned, as
/// `align_corners=False`), for smaller real images such as scikit-learn's 8×8 digits.
pub fn resize_bilinear(image: &[f64], side: usize) -> Result<Vec<f64>> {
    if side == 0 || image.len() != side * side {
        return Err(ClassifierError::InvalidInput(format!(
            "an image of {} pixels is not {side}×{side}",
            image.len()
        )));
    }
    let scale = side as f64 / IMAGE_SIDE as f64;
    let at = |r: usize, c: usize| image[r * side + c];
    let mut out = Vec::with_capacity(PIXELS);
    for r in 0..IMAGE_SIDE {
        let y = ((r as f64 + 0.5) * scale - 0.5).clamp(0.0, (side - 1) as f64);
        let (y0, fy) = (y.floor() as usize, y - y.floor());
        let y1 = (y0 + 1).min(side - 1);
        for c in 0..IMAGE_SIDE {
            let x = ((c as f64 + 0.5) * scale - 0.5).clamp(0.0, (side - 1) as f64);
            let (x0, fx) = (x.floor() as usize, x - x.floor());
            let x1 = (x0 + 1).min(side - 1);
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    Ok(out)
}

/// Reads extra real OOD images from a matrix file (`.npy` or `.csv`, one image a row): rows of
/// 784 pixels, or of `side²` pixels for square images of another side (resized bilinearly to
/// 28×28). Values are rescaled to [0, 1] by the file's maximum when it exceeds 1 (e.g. 0..=16
/// for scikit-learn's digits, 0..=255 for 8-bit images).
pub fn read_extra_images(path: &std::path::Path) -> Result<ImageSet> {
    let m = mixburn_data::read_matrix(path)?;
    mixburn_data::check_finite(&m, path)?;
    let side = (m.cols as f64).sqrt().round() as usize;
    if side * side != m.cols || m.rows == 0 {
        return Err(ClassifierError::InvalidInput(format!(
            "{}: {} rows of {} values; expected square grey images, one per row",
            path.display(),
            m.rows,
            m.cols
        )));
    }
    let (lo, hi) = m
        .data
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    if lo < 0.0 {
        return Err(ClassifierError::InvalidInput(format!(
            "{}: pixel values must be non-negative, found {lo}",
            path.display()
        )));
    }
    let scale = if hi > 1.0 { hi } else { 1.0 };
    let mut pixels = Vec::with_capacity(m.rows * PIXELS);
    for r in 0..m.rows {
        let row: Vec<f64> = m.row(r).iter().map(|v| v / scale).collect();
        if side == IMAGE_SIDE {
            pixels.extend(row);
        } else {
            pixels.extend(resize_bilinear(&row, side)?);
        }
    }
    ImageSet::new(pixels, vec![-1; m.rows])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<f64> {
        (0..PIXELS).map(|i| i as f64 / PIXELS as f64).collect()
    }

    #[test]
    fn flip_twice_is_identity_and_moves_first_row_last() {
        let img = ramp();
        let f = flip_vertical(&img);
        assert_eq!(f[..IMAGE_SIDE], img[PIXELS - IMAGE_SIDE..]);
        assert_eq!(flip_vertical(&f), img);
    }

    #[test]
    fn blur_keeps_constant_images_and_the_mean_of_a_centred_dot() {
        let flat = vec![0.25; PIXELS];
        for (a, b) in gaussian_blur(&flat, 1.5).iter().zip(&flat) {
            assert!((a - b).abs() < 1e-12);
        }
        let mut dot = vec![0.0; PIXELS];
        dot[14 * IMAGE_SIDE + 14] = 1.0;
        let blurred = gaussian_blur(&dot, 1.0);
        let total: f64 = blurred.iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "mass {total}");
        assert!(blurred[14 * IMAGE_SIDE + 14] < 0.2);
    }

    #[test]
    fn resize_of_a_constant_image_is_constant_and_corners_follow_the_source() {
        let img = vec![0.5; 64];
        assert!(resize_bilinear(&img, 8)
            .unwrap()
            .iter()
            .all(|v| (v - 0.5).abs() < 1e-12));
        let mut grad = vec![0.0; 64];
        grad[63] = 1.0;
        let out = resize_bilinear(&grad, 8).unwrap();
        assert_eq!(out[PIXELS - 1], 1.0);
        assert_eq!(out[0], 0.0);
        assert!(resize_bilinear(&img, 7).is_err());
    }

    #[test]
    fn split_classes_relabels_by_position() {
        let set = ImageSet::new(vec![0.0; 4 * PIXELS], vec![3, 7, 5, 3]).unwrap();
        let (id, ood) = set.split_classes(&[5, 3]);
        assert_eq!(id.labels, vec![1, 0, 1]);
        assert_eq!(ood.labels, vec![7]);
        assert!(ImageSet::new(vec![2.0; PIXELS], vec![0]).is_err());
    }

    #[test]
    fn noise_stays_in_the_unit_interval_with_the_asked_moments() {
        let u = uniform_noise(20, 1);
        let mean: f64 = u.pixels.iter().sum::<f64>() / u.pixels.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "uniform mean {mean}");
        let g = gaussian_noise(20, 0.5, 0.1, 2);
        assert!(g.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        let gm: f64 = g.pixels.iter().sum::<f64>() / g.pixels.len() as f64;
        let gv: f64 =
            g.pixels.iter().map(|v| (v - gm).powi(2)).sum::<f64>() / g.pixels.len() as f64;
        assert!((gm - 0.5).abs() < 0.01 && (gv.sqrt() - 0.1).abs() < 0.01);
    }
}
