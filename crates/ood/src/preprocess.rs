//! Input pre-processing of Lee et al. (2018): move each input a small signed-gradient step
//! towards its closest class before scoring it, which separates ID from OOD inputs better
//! because ID inputs respond more to the step.
//!
//! For an input `x`, features `f(x)` of one layer and the fitted detector's class distances
//! `d_c²`:
//!
//! - `ĉ = argmin_c d_c²(f(x))` (held fixed, not differentiated);
//! - `loss(x) = ½ d_ĉ²(f(x))`, i.e. `−g_ĉ` with Lee's confidence `g_c = −½ d_c²`;
//! - `x̃ = x − ε · sign(∇ₓ loss) / σ`, with `σ` the optional per-channel input normalisation
//!   std (Lee's code divides by it so that `ε` is in units of raw pixels when `x` is
//!   normalised), channel = dimension 1 of `x`;
//!
//! then `x̃` is scored (features `f(x̃)`, detector score) as usual. `ε` is a hyper-parameter:
//! Lee et al. search [`EPSILON_GRID`] = {0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01}, picking it
//! on validation samples (OOD ones for the original method; pseudo-OOD ones made from ID
//! inputs, e.g. FGSM-perturbed, for the variant that needs no OOD data).
//!
//! The network is any closure `forward: Fn(Tensor<D>) -> Tensor<2>` of plain tensor
//! operations (a Burn module's forward, with or without autodiff parameters); the gradient
//! is taken on the autodiff version of `x`'s device. The batch loss is the sum of the
//! per-sample losses, so each sample's gradient is its own (for networks without
//! cross-sample operations such as training-mode batch norm).

use burn::tensor::{Shape, Tensor, TensorData};

use crate::error::{OodError, Result};
use crate::head::MahalanobisHead;

/// The noise magnitudes Lee et al. (2018) search for input pre-processing.
pub const EPSILON_GRID: [f64; 7] = [0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01];

/// `min_c d_c²(z)` for features `z: [n, D]`, `[n]`: twice the Mahalanobis score, the
/// quantity pre-processing decreases.
pub fn closest_sq_distance(head: &MahalanobisHead, z: Tensor<2>) -> Tensor<1> {
    let n = z.dims()[0];
    head.sq_distances(z).min_dim(1).reshape([n])
}

fn check_input<const D: usize>(x: &Tensor<D>, head: &MahalanobisHead, z: &Tensor<2>) -> Result<()> {
    let n = x.dims()[0];
    let [nz, d] = z.dims();
    if n == 0 {
        return Err(OodError::Empty { what: "the inputs" });
    }
    if nz != n {
        return Err(OodError::InvalidSetting {
            name: "forward",
            reason: format!(
                "the network maps {n} inputs to {nz} feature rows; it must give one row per input"
            ),
        });
    }
    if d != head.n_features() {
        return Err(OodError::WidthMismatch {
            expected: head.n_features(),
            got: d,
        });
    }
    Ok(())
}

/// The gradient `∇ₓ Σ_i ½ d_ĉᵢ²(f(x_i))` (module docs), same shape and dtype as `x`,
/// without autodiff.
pub fn closest_class_gradient<const D: usize, F>(
    x: Tensor<D>,
    forward: F,
    head: &MahalanobisHead,
) -> Result<Tensor<D>>
where
    F: Fn(Tensor<D>) -> Tensor<2>,
{
    let leaf = x.without_autodiff().autodiff().require_grad();
    let z = forward(leaf.clone());
    check_input(&leaf, head, &z)?;
    let n = z.dims()[0];
    let d2 = head.sq_distances(z);
    let closest = d2.clone().detach().argmin(1); // [n, 1]
    let loss = d2.gather(1, closest).sum().mul_scalar(0.5);
    let grads = loss.backward();
    leaf.grad(&grads).ok_or_else(|| OodError::InvalidSetting {
        name: "forward",
        reason: format!(
            "the features of the {n} inputs do not depend on them; pass the network's forward pass over its input"
        ),
    })
}

/// `σ` as a tensor broadcastable against `x` (`[1, C, 1, …]`), or `None` for no scaling.
fn channel_scale<const D: usize>(x: &Tensor<D>, input_std: &[f64]) -> Result<Option<Tensor<D>>> {
    if input_std.is_empty() {
        return Ok(None);
    }
    if let Some(s) = input_std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(OodError::InvalidSetting {
            name: "input_std",
            reason: format!("standard deviations must be positive numbers, got {s}"),
        });
    }
    let dims = x.dims();
    let mut shape = [1usize; D];
    if input_std.len() > 1 {
        if D < 2 || dims[1] != input_std.len() {
            return Err(OodError::InvalidSetting {
                name: "input_std",
                reason: format!(
                    "{} values for inputs of shape {dims:?}; pass one value, or one per channel (dimension 1)",
                    input_std.len()
                ),
            });
        }
        shape[1] = input_std.len();
    }
    let data = TensorData::new(input_std.to_vec(), Shape::from(shape));
    Ok(Some(Tensor::from_data(data, (&x.device(), x.dtype()))))
}

/// The pre-processed inputs `x̃ = x − ε · sign(∇ₓ ½ d_ĉ²(f(x))) / σ` (module docs), detached
/// and without autodiff, same shape and dtype as `x`. `input_std` is empty (no `σ`), one
/// value, or one per channel (dimension 1). `ε = 0` returns `x` unchanged.
pub fn perturb<const D: usize, F>(
    x: Tensor<D>,
    forward: F,
    head: &MahalanobisHead,
    epsilon: f64,
    input_std: &[f64],
) -> Result<Tensor<D>>
where
    F: Fn(Tensor<D>) -> Tensor<2>,
{
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(OodError::InvalidSetting {
            name: "epsilon",
            reason: format!("the noise magnitude must be finite and >= 0, got {epsilon}"),
        });
    }
    let x = x.without_autodiff();
    let scale = channel_scale(&x, input_std)?;
    if epsilon == 0.0 {
        return Ok(x);
    }
    let step = closest_class_gradient(x.clone(), forward, head)?
        .sign()
        .mul_scalar(epsilon);
    let step = match scale {
        Some(s) => step / s,
        None => step,
    };
    Ok(x - step)
}

/// Pre-processes `x` (see [`perturb`]) and returns the OOD scores of the perturbed inputs,
/// `head.forward(f(x̃))` (higher = more OOD), `[n]`, without autodiff.
pub fn perturbed_scores<const D: usize, F>(
    x: Tensor<D>,
    forward: F,
    head: &MahalanobisHead,
    epsilon: f64,
    input_std: &[f64],
) -> Result<Tensor<1>>
where
    F: Fn(Tensor<D>) -> Tensor<2>,
{
    let xt = perturb(x, &forward, head, epsilon, input_std)?;
    let z = forward(xt.clone());
    check_input(&xt, head, &z)?;
    Ok(head.forward(z).without_autodiff())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{DetectorConfig, MahalanobisDetector};
    use burn::tensor::{DType, Device};
    use mixburn_backend::host::{tensor_from_f64, to_f64};
    use mixburn_gmm::{Backend, Precision};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const IN: usize = 4;
    const OUT: usize = 3;

    /// A tiny fixed network `f(x) = tanh(x W + b)`, `[n, 4] → [n, 3]`.
    fn network(device: &Device, dtype: DType) -> impl Fn(Tensor<2>) -> Tensor<2> {
        let w = tensor_from_f64(
            vec![
                0.9, -0.4, 0.3, //
                0.2, 0.8, -0.5, //
                -0.6, 0.1, 0.7, //
                0.4, 0.5, 0.2,
            ],
            [IN, OUT],
            device,
            dtype,
        );
        let b = tensor_from_f64(vec![0.1, -0.2, 0.05], [1, OUT], device, dtype);
        move |x: Tensor<2>| (x.matmul(w.clone()) + b.clone()).tanh()
    }

    /// Three classes of inputs around different centres, and test inputs between them.
    fn data(device: &Device, dtype: DType) -> (Tensor<2>, Vec<i64>, Tensor<2>) {
        let mut rng = StdRng::seed_from_u64(7);
        let centres = [
            [1.0, 0.0, 0.0, 0.5],
            [-1.0, 1.0, 0.0, 0.0],
            [0.0, -1.0, 1.0, -0.5],
        ];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..90 {
            let c = i % 3;
            for centre in &centres[c] {
                x.push(centre + 0.3 * (rng.random::<f64>() - 0.5));
            }
            y.push(c as i64);
        }
        let test: Vec<f64> = (0..8 * IN)
            .map(|_| 2.0 * rng.random::<f64>() - 1.0)
            .collect();
        (
            tensor_from_f64(x, [90, IN], device, dtype),
            y,
            tensor_from_f64(test, [8, IN], device, dtype),
        )
    }

    fn fitted(
        precision: Precision,
    ) -> (
        Device,
        impl Fn(Tensor<2>) -> Tensor<2>,
        MahalanobisHead,
        Tensor<2>,
    ) {
        let device = Backend::Flex.device_for(precision).unwrap();
        let dtype = precision.dtype();
        let f = network(&device, dtype);
        let (x, y, test) = data(&device, dtype);
        let det = MahalanobisDetector::fit(&DetectorConfig::new(), &f(x), &y).unwrap();
        let head = det.head(&device);
        (device, f, head, test)
    }

    #[test]
    fn gradient_sign_matches_central_finite_differences_of_the_loss() {
        let (_, f, head, test) = fitted(Precision::F64);
        let n = test.dims()[0];
        let c = head.centres_sq.val().dims()[1];
        let d2 = to_f64(head.sq_distances(f(test.clone()))).unwrap();
        let closest: Vec<usize> = (0..n)
            .map(|i| {
                (0..c)
                    .min_by(|&a, &b| d2[i * c + a].total_cmp(&d2[i * c + b]))
                    .unwrap()
            })
            .collect();
        let grad = to_f64(closest_class_gradient(test.clone(), &f, &head).unwrap()).unwrap();
        let x0 = to_f64(test).unwrap();
        let h = 1e-6;
        let loss = |x: Vec<f64>| {
            let device = head.factor.val().device();
            let d2 = to_f64(head.sq_distances(f(tensor_from_f64(x, [n, IN], &device, DType::F64))))
                .unwrap();
            (0..n).map(|i| 0.5 * d2[i * c + closest[i]]).sum::<f64>()
        };
        for k in [0, 5, 10, 19, 31] {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[k] += h;
            down[k] -= h;
            let fd = (loss(up) - loss(down)) / (2.0 * h);
            assert_eq!(
                fd.signum(),
                grad[k].signum(),
                "coordinate {k}: fd {fd}, grad {}",
                grad[k]
            );
            assert!(
                (fd - grad[k]).abs() <= 1e-5 * (1.0 + fd.abs()),
                "coordinate {k}: fd {fd}, grad {}",
                grad[k]
            );
        }
    }

    #[test]
    fn a_small_step_does_not_increase_the_closest_class_distance_f32_and_f64() {
        for precision in [Precision::F32, Precision::F64] {
            let (_, f, head, test) = fitted(precision);
            let before = to_f64(closest_sq_distance(&head, f(test.clone()))).unwrap();
            for eps in [0.0005, 0.001, 0.002] {
                let xt = perturb(test.clone(), &f, &head, eps, &[]).unwrap();
                assert_eq!(xt.dtype(), precision.dtype());
                let moved = to_f64((xt.clone() - test.clone()).abs().max()).unwrap()[0];
                assert!(
                    (moved - eps).abs() < 1e-6,
                    "{precision}: max |x̃ − x| = {moved}, ε = {eps}"
                );
                let after = to_f64(closest_sq_distance(&head, f(xt))).unwrap();
                let tol = if precision == Precision::F32 {
                    1e-4
                } else {
                    1e-12
                };
                for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                    assert!(
                        a <= &(b + tol * b.max(1.0)),
                        "{precision} ε={eps} sample {i}: {a} > {b}"
                    );
                }
                assert!(after.iter().sum::<f64>() < before.iter().sum::<f64>());
            }
        }
    }

    #[test]
    fn per_channel_std_divides_the_step_and_bad_options_are_errors() {
        let (_, f, head, test) = fitted(Precision::F64);
        let plain = to_f64(perturb(test.clone(), &f, &head, 0.01, &[]).unwrap()).unwrap();
        let std = [0.5, 1.0, 2.0, 4.0];
        let scaled = to_f64(perturb(test.clone(), &f, &head, 0.01, &std).unwrap()).unwrap();
        let x0 = to_f64(test.clone()).unwrap();
        for i in 0..x0.len() {
            let s = std[i % IN];
            assert!(((scaled[i] - x0[i]) - (plain[i] - x0[i]) / s).abs() < 1e-12);
        }
        assert_eq!(
            to_f64(perturb(test.clone(), &f, &head, 0.0, &[]).unwrap()).unwrap(),
            x0
        );
        assert!(perturb(test.clone(), &f, &head, -1.0, &[]).is_err());
        assert!(perturb(test.clone(), &f, &head, 0.01, &[1.0, 2.0]).is_err());
        assert!(perturb(test.clone(), &f, &head, 0.01, &[0.0]).is_err());
        let scores =
            to_f64(perturbed_scores(test.clone(), &f, &head, 0.002, &[]).unwrap()).unwrap();
        let direct =
            to_f64(head.forward(f(perturb(test, &f, &head, 0.002, &[]).unwrap()))).unwrap();
        assert_eq!(scores, direct);
    }
}
