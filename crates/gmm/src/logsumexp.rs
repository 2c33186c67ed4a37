//! Log-sum-exp and softmax along one axis: the one implementation, used by the E-step, the
//! scorer and the GMM prior layer.
//!
//! `lse(t) = m + log Σ exp(t − m)` with `m = max t`, so no term overflows; `m` is detached,
//! which makes the gradient of `lse` exactly `softmax(t)` (the max's contribution cancels
//! analytically), and an infinite max is replaced by 0, so that an all-`−inf` row gives `−inf`,
//! not NaN.

use burn::tensor::Tensor;

/// `(m, e, s)` along `dim` (kept, size 1): `m = max t` (detached; 0 where infinite),
/// `e = exp(t − m)`, `s = Σ e`. Then `softmax = e / s` and `lse = m + log s`.
pub fn softmax_parts<const D: usize>(
    t: Tensor<D>,
    dim: usize,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let m = t.clone().max_dim(dim).detach();
    let m = m.clone().mask_fill(m.is_inf(), 0.0);
    let e = (t - m.clone()).exp();
    let s = e.clone().sum_dim(dim);
    (m, e, s)
}

/// `log Σ exp(t)` along `dim` (kept, size 1), computed stably (module docs).
pub fn log_sum_exp<const D: usize>(t: Tensor<D>, dim: usize) -> Tensor<D> {
    let (m, _, s) = softmax_parts(t, dim);
    m + s.log()
}
