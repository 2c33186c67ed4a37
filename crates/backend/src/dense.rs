//! A fully connected layer's products at the machine's speed: `y = act(x·W + b)` as one
//! operation with its own backward pass, a Burn backend extension ([`DenseOps`]).
//!
//! | tensor | shape | |
//! |---|---|---|
//! | `x` | `[N, in]` | rows |
//! | `W` | `[in, out]` | weights |
//! | `b` | `[out]` | bias |
//! | `y` | `[N, out]` | `act(x·W + b)`, `act` the identity or ReLU |
//!
//! Backward, with `δ = ∂L/∂y ⊙ [y > 0]` under ReLU (`∂L/∂y` without):
//! `∂L/∂x = δ·Wᵀ`, `∂L/∂W = xᵀ·δ`, `∂L/∂b = Σ_rows δ`.
//!
//! Why an extension: Burn's autodiff runs this as a product, a broadcast add and an activation
//! forward and a product per operand, a reduction and a mask backward, each a pass over memory;
//! and burn-flex hands every product to the `gemm` crate on all cores at once, which on the
//! layer shapes of a network at batch 100 runs at 0.4–0.75× OpenBLAS on the 2-core machine
//! (`gemm-bench`: `vade_dw_*`, `vade_dx_*`). On flex, f32 and f64, this module:
//! - computes `x·W + b` in one `gemm` call per block, the block's bias written first and
//!   accumulated into, and applies the ReLU in place to the block (on the block's thread,
//!   while it is in that core's cache);
//! - splits a product into single-threaded `gemm` calls on column (or row) blocks of the
//!   output, one per thread ([`product`]): 0.84× → 1.0–1.1× OpenBLAS on the same shapes; the
//!   blocks run on [`crate::team`] (the caller and spinning workers, no wake-up per product)
//!   when the caller is outside rayon's pool, else on rayon's pool;
//! - takes transposed operands (`xᵀ`, `Wᵀ`) as strided views, never copied;
//! - in the backward pass, runs `xᵀ·δ` and `δ·Wᵀ` in one region
//!   ([`DenseOps::product_pair`]): both products' blocks, claimed in turn by the threads, so
//!   that no thread waits for the other product's slower shape (`k = 100` against `k = 2000`).
//!
//! Every other backend and dtype runs Burn's own operations (the trait's default bodies), and
//! [`dense`] calls the extension only on flex: the extension is not registered elsewhere.
//! [`product`] is also the core's 2-D product in its chunked passes (the E-step's `G·A` and
//! `x·U` blocks, the M-step's `rᵀG` and `rᵀx`, the OOD distances, k-means): 0.89× the wall
//! time of `score` at D = 512 against Burn's `matmul` (`benches/results/core_products_split.md`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::{Device, Shape, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// The dense layer as one backend operation, and the plain product it is built on.
#[backend_extension(Flex: cfg(feature = "flex"), Autodiff)]
pub trait DenseOps: Backend {
    /// `act(x·W + b)` for `x: [N, in]`, `W: [in, out]`, `b: [out]`; `relu` picks the ReLU.
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        dense_reference::<Self>(x, weight, bias, relu)
    }

    /// `lhs·rhs` for 2-D operands (either may be a transposed view).
    fn product(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// `(a·b, c·d)`, two independent 2-D products (the backward pass's `xᵀ·δ` and `δ·Wᵀ`):
    /// on flex, side by side on the pool's two halves when both are large.
    fn product_pair(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        (Self::product(a, b), Self::product(c, d))
    }
}

/// The layer by Burn's own operations (every backend but flex, and flex's other dtypes).
fn dense_reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    relu: bool,
) -> FloatTensor<B> {
    let out = bias.shape()[0];
    let y = B::float_add(
        B::float_matmul(x, weight),
        B::float_reshape(bias, Shape::new([1, out])),
    );
    if relu {
        B::relu(y)
    } else {
        y
    }
}

/// `act(x·W + b)` on `x: [N, in]` (the module docs): one extension call on flex, Burn's
/// operations elsewhere; differentiable wherever `x`, `W` or `b` carries autodiff.
pub fn dense(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>, relu: bool) -> Tensor<2> {
    let on = extension_on(&x.device());
    let (x, w, b) = (
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    );
    Tensor::from_dispatch(if on {
        <Dispatch as DenseOps>::dense(x, w, b, relu)
    } else {
        dense_reference::<Dispatch>(x, w, b, relu)
    })
}

/// `lhs·rhs` for 2-D tensors: the split product on flex (module docs), Burn's `matmul`
/// elsewhere; differentiable through Burn's own matmul where an operand carries autodiff.
pub fn product(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    if extension_on(&lhs.device()) && !lhs.is_autodiff() && !rhs.is_autodiff() {
        Tensor::from_dispatch(<Dispatch as DenseOps>::product(
            lhs.into_dispatch(),
            rhs.into_dispatch(),
        ))
    } else {
        lhs.matmul(rhs)
    }
}

/// Whether the extensions are called on flex: unset (0), on (1), off (2).
static EXTENSION: AtomicU8 = AtomicU8::new(0);

/// Turns the extensions ([`dense`], [`product`], `bce::bce_with_logits`) on or off for the
/// whole process (off: Burn's operations everywhere), for side-by-side timings; the
/// environment's `MIXBURN_DENSE=burn` turns them off at start.
pub fn use_extension(on: bool) {
    EXTENSION.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether `device` is flex (with or without autodiff), where the extensions ([`dense`],
/// [`product`], `bce::bce_with_logits`) are registered, and they are on.
pub fn extension_on(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        let on = match EXTENSION.load(Ordering::Relaxed) {
            0 => {
                let on = std::env::var_os("MIXBURN_DENSE").is_none_or(|v| v != "burn");
                use_extension(on);
                on
            }
            state => state == 1,
        };
        on && device.clone().without_autodiff() == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// The layer's backward step (module docs); its state: `x`, `W` and, under ReLU, `y`.
#[derive(Debug)]
struct DenseBackward;

impl<B: Backend + DenseOps> Backward<B, 3> for DenseBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w, y) = ops.state;
        let delta = match y {
            Some(y) => B::relu_backward(y, grad),
            None => grad,
        };
        if let Some(node) = node_b {
            let out = delta.shape()[1];
            let sum = B::float_sum_dim(delta.clone(), 0);
            grads.register::<B>(node.id, B::float_reshape(sum, Shape::new([out])));
        }
        match (node_w, node_x) {
            (Some(node_w), Some(node_x)) => {
                let (dw, dx) = B::product_pair(
                    B::float_transpose(x),
                    delta.clone(),
                    delta,
                    B::float_transpose(w),
                );
                grads.register::<B>(node_w.id, dw);
                grads.register::<B>(node_x.id, dx);
            }
            (Some(node), None) => {
                let dw = B::product(B::float_transpose(x), delta);
                grads.register::<B>(node.id, dw);
            }
            (None, Some(node)) => {
                grads.register::<B>(node.id, B::product(delta, B::float_transpose(w)));
            }
            (None, None) => {}
        }
    }
}

impl<B: Backend + DenseOps, C: CheckpointStrategy> DenseOps for Autodiff<B, C> {
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let prep = DenseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (x, w, b) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::dense(x.clone(), w.clone(), b, relu);
                prep.finish((x, w, relu.then(|| y.clone())), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dense(x, w, b, relu)),
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    //! The flex implementation: `gemm` on the tensors' host buffers.

    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::Flex;
    use burn::tensor::DType;

    use std::ops::Range;

    use super::{dense_reference, DenseOps};
    use crate::flex_host::{from_vec, Float};
    use crate::team;

    impl DenseOps for Flex {
        fn dense(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
            let plain = x.layout().num_dims() == 2 && weight.layout().num_dims() == 2;
            match x.dtype() {
                DType::F32 if plain => dense_host::<f32>(&x, &weight, Some(&bias), relu),
                DType::F64 if plain => dense_host::<f64>(&x, &weight, Some(&bias), relu),
                _ => dense_reference::<Flex>(x, weight, bias, relu),
            }
        }

        fn product(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
            let plain = lhs.layout().num_dims() == 2 && rhs.layout().num_dims() == 2;
            match lhs.dtype() {
                DType::F32 if plain => dense_host::<f32>(&lhs, &rhs, None, false),
                DType::F64 if plain => dense_host::<f64>(&lhs, &rhs, None, false),
                _ => Flex::float_matmul(lhs, rhs),
            }
        }

        fn product_pair(
            a: FlexTensor,
            b: FlexTensor,
            c: FlexTensor,
            d: FlexTensor,
        ) -> (FlexTensor, FlexTensor) {
            let plain = [&a, &b, &c, &d]
                .iter()
                .all(|t| t.layout().num_dims() == 2 && t.dtype() == a.dtype());
            let work = |l: &FlexTensor, r: &FlexTensor| {
                let (sl, sr) = (l.layout().shape(), r.layout().shape());
                sl[0].saturating_mul(sl[1]).saturating_mul(sr[1])
            };
            // One region for both when each is worth a thread (half a split product's least).
            let apart = plain
                && team::threads() >= 2
                && work(&a, &b) >= SERIAL_BELOW / 2
                && work(&c, &d) >= SERIAL_BELOW / 2;
            match a.dtype() {
                DType::F32 if apart => side_by_side::<f32>([(&a, &b), (&c, &d)]),
                DType::F64 if apart => side_by_side::<f64>([(&a, &b), (&c, &d)]),
                _ => (Self::product(a, b), Self::product(c, d)),
            }
        }
    }

    /// Two products `l·r` in one region: both products' blocks (each split as a lone product
    /// is), claimed in turn by the team's threads, so that neither thread waits for the other
    /// product's slower shape.
    fn side_by_side<E: Float>(pairs: [(&FlexTensor, &FlexTensor); 2]) -> (FlexTensor, FlexTensor) {
        let [first, second] = pairs.map(|(l, r)| Product::<E>::new(l, r, None, false));
        let parts: Vec<(&Product<E>, Block)> = [&first, &second]
            .into_iter()
            .flat_map(|p| p.plan().into_iter().map(move |block| (p, block)))
            .collect();
        team::for_each(parts.len(), &|i| parts[i].0.run(&parts[i].1));
        (first.finish(), second.finish())
    }

    /// A 2-D operand as `gemm` reads it: base pointer, row stride, column stride (elements).
    struct View<E> {
        ptr: *const E,
        rs: isize,
        cs: isize,
    }
    // SAFETY: a view only reads a buffer that outlives the product's scope.
    unsafe impl<E> Send for View<E> {}
    unsafe impl<E> Sync for View<E> {}

    impl<E> View<E> {
        /// The element at row `i` and column `j`.
        ///
        /// # Safety
        /// `(i, j)` lies inside the viewed matrix.
        unsafe fn at(&self, i: usize, j: usize) -> *const E {
            unsafe { self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
        }

        fn rs(&self) -> isize {
            self.rs
        }

        fn cs(&self) -> isize {
            self.cs
        }
    }

    fn view<E: Float>(t: &FlexTensor) -> View<E> {
        let strides = t.layout().strides();
        let storage: &[E] = t.storage();
        View {
            // SAFETY: the layout's start offset lies inside the storage.
            ptr: unsafe { storage.as_ptr().add(t.layout().start_offset()) },
            rs: strides[0],
            cs: strides[1],
        }
    }

    /// Products below this many multiply-adds run as one single-threaded call.
    const SERIAL_BELOW: usize = 1 << 21;
    /// The least columns (or rows) of the output one thread's block gets.
    const MIN_BLOCK: usize = 64;

    /// `act(a·b + bias)` (no bias: `a·b`) into a new contiguous `[m, n]` tensor, in blocks
    /// on the team's threads.
    fn dense_host<E: Float>(
        a: &FlexTensor,
        b: &FlexTensor,
        bias: Option<&FlexTensor>,
        relu: bool,
    ) -> FlexTensor {
        let product = Product::<E>::new(a, b, bias, relu);
        let blocks = product.plan();
        team::for_each(blocks.len(), &|i| product.run(&blocks[i]));
        product.finish()
    }

    /// Rows × columns of the output that one single-threaded `gemm` call writes.
    type Block = (Range<usize>, Range<usize>);

    /// One product `act(a·b + bias)` being computed: its output buffer (not yet initialised
    /// where no bias was written) and its operands' views.
    struct Product<E> {
        m: usize,
        k: usize,
        n: usize,
        c: SendPtr<E>,
        /// Owns the buffer `c` points into (length set by [`Product::finish`]).
        buffer: Vec<E>,
        /// The `n` bias values each block writes into its rows before its product.
        bias: Option<Vec<E>>,
        relu: bool,
        av: View<E>,
        bv: View<E>,
    }

    impl<E: Float> Product<E> {
        fn new(a: &FlexTensor, b: &FlexTensor, bias: Option<&FlexTensor>, relu: bool) -> Self {
            let (m, k) = (a.layout().shape()[0], a.layout().shape()[1]);
            let n = b.layout().shape()[1];
            // A fresh contiguous copy starts at offset 0 and holds the n values.
            let bias = bias.map(|b| b.to_contiguous().storage::<E>()[..n].to_vec());
            // The output's own buffer, handed to flex without a copy (`from_vec`). The blocks
            // write every value (the bias, then the product into it; or the product alone,
            // without reading the buffer): it is not zeroed first (a memset of the output was
            // 3-4 % of a VaDE step), unless nothing would write it (no bias and `k = 0`).
            let mut buffer = if k > 0 || bias.is_some() {
                Vec::with_capacity(m * n)
            } else {
                vec![E::ZERO; m * n]
            };
            Product {
                m,
                k,
                n,
                c: SendPtr(buffer.as_mut_ptr()),
                buffer,
                bias,
                relu,
                av: view::<E>(a),
                bv: view::<E>(b),
            }
        }

        /// The output's blocks: one when the product is small, else one per thread of the
        /// team over the longer side (at least [`MIN_BLOCK`] wide); none for an empty output.
        fn plan(&self) -> Vec<Block> {
            let (m, k, n) = (self.m, self.k, self.n);
            if m == 0 || n == 0 {
                return Vec::new();
            }
            let long = m.max(n);
            let parts = if m.saturating_mul(n).saturating_mul(k) < SERIAL_BELOW {
                1
            } else {
                team::threads().min(long / MIN_BLOCK).max(1)
            };
            let size = long.div_ceil(parts);
            (0..long)
                .step_by(size)
                .map(|start| {
                    let part = start..(start + size).min(long);
                    if m > n {
                        (part, 0..n)
                    } else {
                        (0..m, part)
                    }
                })
                .collect()
        }

        /// Writes one block of the output (single-threaded): its bias, the product, the ReLU.
        fn run(&self, (rows, cols): &Block) {
            let (k, n) = (self.k, self.n);
            // SAFETY (each use): row `i` of the block lies inside the `[m, n]` output, and only
            // this block writes its `cols.len()` values.
            let row = |i: usize| unsafe { self.c.get().add(i * n + cols.start) };
            if let Some(bias) = &self.bias {
                for i in rows.clone() {
                    // SAFETY: as `row`; the values are uninitialised and written, not read.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            bias[cols.clone()].as_ptr(),
                            row(i),
                            cols.len(),
                        )
                    };
                }
            }
            // SAFETY: `rows × cols` is a block of the `[m, n]` output (row stride n) from
            // `plan`, written by this call alone, and the operands' views cover `[m, k]` and
            // `[k, n]` by their layouts' strides.
            unsafe {
                gemm::gemm(
                    rows.len(),
                    cols.len(),
                    k,
                    self.c.get().add(rows.start * n + cols.start),
                    1,
                    n as isize,
                    self.bias.is_some(),
                    self.av.at(rows.start, 0),
                    self.av.cs(),
                    self.av.rs(),
                    self.bv.at(0, cols.start),
                    self.bv.cs(),
                    self.bv.rs(),
                    E::ONE,
                    E::ONE,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            if self.relu {
                for i in rows.clone() {
                    // SAFETY: as `row`; the product above wrote these values.
                    let values = unsafe { std::slice::from_raw_parts_mut(row(i), cols.len()) };
                    for v in values {
                        // NaN stays NaN (as Burn's relu): only `v <= 0` is cleared. An
                        // unconditional store (a select, vectorised), not a branch on the sign.
                        *v = if *v <= E::ZERO { E::ZERO } else { *v };
                    }
                }
            }
        }

        /// The output tensor, once every block of [`Product::plan`] has run.
        fn finish(self) -> FlexTensor {
            let (m, n, mut c) = (self.m, self.n, self.buffer);
            // SAFETY: the blocks cover the output and wrote each of its `m·n` values (or it
            // was zeroed: no bias and `k = 0`).
            unsafe { c.set_len(m * n) };
            from_vec(c, &[m, n])
        }
    }

    /// The output's base pointer, shared by the blocks (each writes its own block).
    struct SendPtr<E>(*mut E);
    // SAFETY: the blocks write disjoint parts of one buffer that outlives the scope.
    unsafe impl<E> Send for SendPtr<E> {}
    unsafe impl<E> Sync for SendPtr<E> {}
    impl<E> SendPtr<E> {
        fn get(&self) -> *mut E {
            self.0
        }
    }
}
