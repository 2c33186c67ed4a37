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
//! rows split over rayon's threads, and the backward is one product with `g`. Every other
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
    //! The flex implementation: one pass over the host buffers, rows split over rayon.

    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::DType;
    use rayon::prelude::*;

    use super::{bce_parts_reference, BceOps};
    use crate::flex_host::{from_vec, Float};

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

    /// Rows per rayon task (about 16 k values of a 784-wide image batch).
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
        sums.par_chunks_mut(ROWS_PER_TASK)
            .zip(delta.par_chunks_mut(ROWS_PER_TASK * width))
            .enumerate()
            .for_each(|(task, (sums, delta))| {
                let first = task * ROWS_PER_TASK;
                for (r, (sum, delta)) in sums.iter_mut().zip(delta.chunks_mut(width)).enumerate() {
                    let row = (first + r) * d..(first + r + 1) * d;
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
}
