//! Binary cross-entropy with logits, summed over each row, as one operation with its own
//! backward pass: a Burn backend extension ([`BceOps`]).
//!
//! | tensor | shape | |
//! |---|---|---|
//! | `l` | `[N, D]` | logits |
//! | `x` | `[N, D]` | targets in `[0, 1]` |
//! | `s` | `[N]` | `s_i = Σ_j max(l_ij, 0) − x_ij l_ij + log(1 + e^{−|l_ij|})` |
//!
//! (`= −Σ_j [x_ij log σ(l_ij) + (1 − x_ij) log(1 − σ(l_ij))]`, without overflow.) Backward,
//! for the upstream gradient `g: [N]`: `∂L/∂l_ij = g_i (σ(l_ij) − x_ij)`,
//! `∂L/∂x_ij = −g_i l_ij`.
//!
//! Why an extension: by Burn's operations the loss is eight element-wise passes over `[N, D]`
//! forward and about as many backward, each allocating its output. On flex (f32, f64) this
//! module makes one pass that writes the row sums and `σ(l) − x` (what the backward needs),
//! rows split over the team's threads ([`crate::team`]), and the backward is one product with `g`. Every other
//! backend and dtype runs Burn's operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use crate::dense::extension_on;

/// The loss as one backend operation (module docs).
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait BceOps: Backend {
    /// The row sums `s: [N]` of the loss of logits `l: [N, D]` against targets `x: [N, D]`.
    fn bce_with_logits(logits: FloatTensor<Self>, targets: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::bce_parts(logits, targets).0
    }

    /// The row sums and `σ(l) − x: [N, D]`, the backward pass's factor.
    fn bce_parts(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        bce_parts_reference::<Self>(logits, targets)
    }
}

/// The row sums by Burn's operations.
fn bce_reference<B: Backend>(l: FloatTensor<B>, x: FloatTensor<B>) -> FloatTensor<B> {
    let n = l.shape()[0];
    let softplus = B::float_add(
        B::relu(l.clone()),
        B::float_log1p(B::float_exp(B::float_neg(B::float_abs(l.clone())))),
    );
    let terms = B::float_sub(softplus, B::float_mul(x, l));
    B::float_reshape(B::float_sum_dim(terms, 1), Shape::new([n]))
}

/// The row sums and `σ(l) − x` by Burn's operations.
fn bce_parts_reference<B: Backend>(
    l: FloatTensor<B>,
    x: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let sums = bce_reference::<B>(l.clone(), x.clone());
    (sums, B::float_sub(B::sigmoid(l), x))
}

/// The row sums `[N]` of the binary cross-entropy of logits `l: [N, D]` against targets
/// `x: [N, D]` (module docs): one extension call on flex, Burn's operations elsewhere;
/// differentiable in both.
pub fn bce_with_logits(logits: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
    let on = extension_on(&logits.device());
    let (l, x) = (logits.into_dispatch(), x.into_dispatch());
    Tensor::from_dispatch(if on {
        <Dispatch as BceOps>::bce_with_logits(l, x)
    } else {
        bce_reference::<Dispatch>(l, x)
    })
}

/// The backward step (module docs); its state: `σ(l) − x` and `l`.
#[derive(Debug)]
struct BceBackward;

impl<B: Backend + BceOps> Backward<B, 2> for BceBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_l, node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (d, l) = ops.state;
        let n = grad.shape()[0];
        let g = B::float_reshape(grad, Shape::new([n, 1]));
        if let Some(node) = node_x {
            let dx = B::float_neg(B::float_mul(l, g.clone()));
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_l {
            grads.register::<B>(node.id, B::float_mul(d, g));
        }
    }
}

impl<B: Backend + BceOps, C: CheckpointStrategy> BceOps for Autodiff<B, C> {
    fn bce_with_logits(logits: FloatTensor<Self>, targets: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = BceBackward
            .prepare::<C>([logits.node(), targets.node()])
            .compute_bound()
            .stateful();
        let (l, x) = (logits.into_primitive(), targets.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let (sums, d) = B::bce_parts(l.clone(), x);
                prep.finish((d, l), sums)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::bce_with_logits(l, x)),
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The flex implementation: one pass over the host buffers, rows split over the team.

    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::DType;

    use super::{bce_parts_reference, BceOps};
    use crate::flex_host::{from_vec, Float};
    use crate::team;

    impl BceOps for Flex {
        fn bce_parts(l: FlexTensor, x: FlexTensor) -> (FlexTensor, FlexTensor) {
            let plain = l.layout().num_dims() == 2 && l.layout().shape() == x.layout().shape();
            match l.dtype() {
                DType::F32 if plain && x.dtype() == DType::F32 => parts::<f32>(&l, &x),
                DType::F64 if plain && x.dtype() == DType::F64 => parts::<f64>(&l, &x),
                _ => bce_parts_reference::<Flex>(l, x),
            }
        }
    }

    /// Rows per part (about 16 k values of a 784-wide image batch).
    const ROWS_PER_TASK: usize = 20;

    fn parts<E: Float>(l: &FlexTensor, x: &FlexTensor) -> (FlexTensor, FlexTensor) {
        let (n, d) = (l.layout().shape()[0], l.layout().shape()[1]);
        let (l, x) = (l.to_contiguous(), x.to_contiguous());
        // Fresh contiguous copies (or contiguous tensors) at offset `start`, n·d values.
        let (ls, xs): (&[E], &[E]) = (
            &l.storage()[l.layout().start_offset()..][..n * d],
            &x.storage()[x.layout().start_offset()..][..n * d],
        );
        let mut sums = vec![E::ZERO; n];
        let mut delta = vec![E::ZERO; n * d];
        let width = d.max(1);
        let tasks = sums
            .chunks_mut(ROWS_PER_TASK)
            .zip(delta.chunks_mut(ROWS_PER_TASK * width))
            .enumerate();
        team::for_each_item(tasks.collect(), &|(task, (sums, delta))| {
            let first = task * ROWS_PER_TASK;
            for (r, (sum, delta)) in sums.iter_mut().zip(delta.chunks_mut(width)).enumerate() {
                let row = (first + r) * d..(first + r + 1) * d;
                if E::dtype() == DType::F32 {
                    // f32, the training path: a branch-free kernel the compiler vectorises.
                    let (l, x) = (&ls[row.clone()], &xs[row]);
                    let (l, x): (&[f32], &[f32]) =
                        (bytemuck::cast_slice(l), bytemuck::cast_slice(x));
                    let acc = f32_rows::row(l, x, bytemuck::cast_slice_mut(delta));
                    *sum = E::from_f64(acc);
                    continue;
                }
                let mut acc = 0.0f64;
                for ((&l, &x), delta) in ls[row.clone()].iter().zip(&xs[row]).zip(delta) {
                    // e = e^{−|l|} ∈ (0, 1]: softplus(l) = max(l, 0) + log1p(e), and
                    // σ(l) = 1 / (1 + e) for l ≥ 0, e / (1 + e) otherwise.
                    let e = (-l.abs()).exp();
                    let positive = if l > E::ZERO { l } else { E::ZERO };
                    acc += (positive - x * l + e.ln_1p()).into();
                    let sigma = if l >= E::ZERO { E::ONE } else { e } / (E::ONE + e);
                    *delta = sigma - x;
                }
                *sum = E::from_f64(acc);
            }
        });
        (from_vec(sums, &[n]), from_vec(delta, &[n, d]))
    }

    mod f32_rows {
        //! One row of the f32 pass without libm calls or branches, in lanes the compiler turns
        //! into vector instructions (the CPU's widest, chosen at run time: `crate::simd`; the
        //! workspace builds for baseline x86-64, where LLVM left the scalar loop scalar):
        //! `e^{−|l|}` by range reduction and a degree-6 polynomial (Cephes' `expf`, ≤ 2 ulp),
        //! `log1p(e) = 2 atanh(e / (2 + e))` by its odd series to `s¹¹` (`s ≤ 1/3`: relative
        //! error below 2·10⁻⁸), the row's sum in f64 per lane.

        const LANES: usize = 16;

        crate::vectorised! {
            /// `(Σ_j bce(l_j, x_j), σ(l) − x)` of one row: the sum (f64), `delta` written.
            pub(super) fn row(l: &[f32], x: &[f32], delta: &mut [f32]) -> f64 {
                let mut acc = [0.0f64; LANES];
                let mut lc = l.chunks_exact(LANES);
                let mut xc = x.chunks_exact(LANES);
                let mut dc = delta.chunks_exact_mut(LANES);
                for ((l, x), d) in (&mut lc).zip(&mut xc).zip(&mut dc) {
                    // Fixed-size arrays: no bounds checks, one vector per lane group.
                    let l: &[f32; LANES] = l.try_into().expect("a chunk of LANES");
                    let x: &[f32; LANES] = x.try_into().expect("a chunk of LANES");
                    let d: &mut [f32; LANES] = d.try_into().expect("a chunk of LANES");
                    let mut loss = [0.0f32; LANES];
                    for i in 0..LANES {
                        (loss[i], d[i]) = element(l[i], x[i]);
                    }
                    for i in 0..LANES {
                        acc[i] += loss[i] as f64;
                    }
                }
                let mut tail = 0.0f64;
                for ((&l, &x), d) in lc
                    .remainder()
                    .iter()
                    .zip(xc.remainder())
                    .zip(dc.into_remainder())
                {
                    let (loss, di) = element(l, x);
                    tail += loss as f64;
                    *d = di;
                }
                acc.iter().sum::<f64>() + tail
            }
        }

        /// `(max(l, 0) − x·l + log1p(e^{−|l|}), σ(l) − x)`.
        #[inline(always)]
        fn element(l: f32, x: f32) -> (f32, f32) {
            let e = exp_nonpositive(-l.abs());
            let positive = if l > 0.0 { l } else { 0.0 };
            let sigma = if l >= 0.0 { 1.0 } else { e } / (1.0 + e);
            (positive - x * l + log1p_unit(e), sigma - x)
        }

        /// `e^t` for `t ≤ 0` (0 below `−87.33`, where f32 leaves its normal range).
        #[inline(always)]
        fn exp_nonpositive(t: f32) -> f32 {
            const LOG2E: f32 = std::f32::consts::LOG2_E;
            const LN2_HI: f32 = 0.693_359_4;
            const LN2_LO: f32 = -2.121_944_4e-4;
            const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
            let under = t < -87.33;
            let t = if under { -87.33 } else { t };
            let k = t * LOG2E + ROUND;
            let n = k - ROUND;
            let r = t - n * LN2_HI - n * LN2_LO;
            let mut p = 1.987_569_1e-4f32;
            p = p * r + 1.398_199_9e-3;
            p = p * r + 8.333_452e-3;
            p = p * r + 4.166_579_6e-2;
            p = p * r + 0.166_666_65;
            p = p * r + 0.5;
            let e = p * r * r + r + 1.0;
            // 2ⁿ from the integer in `k`'s low mantissa bits (`n ∈ [−126, 0]`), without a
            // float-to-int conversion (Rust's saturating `as` keeps the loop scalar).
            let n_bits = (k.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
            let scale = f32::from_bits((n_bits.wrapping_add(127) << 23) as u32);
            if under {
                0.0
            } else {
                e * scale
            }
        }

        /// `log(1 + e)` for `e ∈ [0, 1]`.
        #[inline(always)]
        fn log1p_unit(e: f32) -> f32 {
            let s = e / (2.0 + e);
            let s2 = s * s;
            let mut p = 1.0f32 / 11.0;
            p = p * s2 + 1.0 / 9.0;
            p = p * s2 + 1.0 / 7.0;
            p = p * s2 + 1.0 / 5.0;
            p = p * s2 + 1.0 / 3.0;
            p = p * s2 + 1.0;
            2.0 * s * p
        }

        #[cfg(test)]
        mod tests {
            #[test]
            fn the_kernels_functions_are_within_a_few_ulp_of_libm() {
                let mut worst = (0.0f64, 0.0f64);
                for i in 0..200_000 {
                    let t = -(i as f32) * 0.000_45; // 0 … −90
                    let (got, want) = (super::exp_nonpositive(t) as f64, (t as f64).exp());
                    if want > 1e-37 {
                        worst.0 = worst.0.max((got - want).abs() / want);
                    } else {
                        // At the bottom of f32's normal range (and 0 below it).
                        assert!((got - want).abs() <= 1.2e-38, "{t}: {got} vs {want}");
                    }
                    let e = (i as f32) / 200_000.0;
                    let (got, want) = (super::log1p_unit(e) as f64, (e as f64).ln_1p());
                    if e > 0.0 {
                        worst.1 = worst.1.max((got - want).abs() / want);
                    }
                }
                assert!(worst.0 < 4e-7 && worst.1 < 4e-7, "{worst:?}");
            }

            #[test]
            fn a_row_equals_the_scalar_formula_at_every_length() {
                for len in [0usize, 1, 15, 16, 17, 784] {
                    let l: Vec<f32> = (0..len)
                        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.9)
                        .collect();
                    let x: Vec<f32> = (0..len).map(|i| (i % 7) as f32 / 6.0).collect();
                    let mut delta = vec![0.0f32; len];
                    let sum = super::row(&l, &x, &mut delta);
                    let mut want = 0.0f64;
                    for i in 0..len {
                        let (l, x) = (l[i] as f64, x[i] as f64);
                        want += l.max(0.0) - x * l + (-l.abs()).exp().ln_1p();
                        let sigma = 1.0 / (1.0 + (-l).exp());
                        assert!((delta[i] as f64 - (sigma - x)).abs() < 1e-6, "{len} {i}");
                    }
                    assert!(
                        (sum - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{len}: {sum} vs {want}"
                    );
                }
            }
        }
    }
}
