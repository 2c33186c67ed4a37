//! The backend extensions (`mixburn_backend::dense`, `mixburn_backend::bce`) equal Burn's own
//! operations — values and every gradient — on every backend and precision this build has:
//! odd shapes, shapes large enough to be split over threads, transposed and sliced operands,
//! NaN inputs, logits far from zero.

use mixburn_backend::bce::bce_with_logits;
use mixburn_backend::dense::{dense, extension_on, product};
use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::burn::tensor::activation::relu;
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::Precision;
use mixburn_tests::{rel_err, targets};

/// Relative tolerance of the extension against Burn's operations (the sums' order differs).
fn tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-12,
        Precision::F32 => 1e-5,
    }
}

/// Deterministic values in [−1, 1) (a Weyl sequence), `n` of them, seeded.
fn values(n: usize, seed: u64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let v = (i as f64 + 1.0) * 0.618_033_988_749_895 + seed as f64 * 0.414_213_562;
            2.0 * v.fract() - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(v: Vec<f64>, dims: [usize; D], dev: &Device, p: Precision) -> Tensor<D> {
    tensor_from_f64(v, dims, dev, p.dtype())
}

/// `relu(x W + b)` (or without ReLU) by Burn's operations.
fn reference(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, with_relu: bool) -> Tensor<2> {
    let y = x.matmul(w) + b.unsqueeze_dim::<2>(0);
    if with_relu {
        relu(y)
    } else {
        y
    }
}

/// How the layer's input and weights are handed over.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Contiguous,
    /// `x` a transposed view of a `[in, N]` tensor, `W` a column slice of a wider one.
    Strided,
}

/// The layer's output and the gradients of `Σ y ⊙ c` (c fixed) with respect to x, W and b,
/// by the extension (`fused`) or by Burn's operations.
fn layer(
    (n, i, o): (usize, usize, usize),
    layout: Layout,
    with_relu: bool,
    fused: bool,
    dev: &Device,
    p: Precision,
) -> [Vec<f64>; 4] {
    let ad = dev.clone().autodiff();
    let x = match layout {
        Layout::Contiguous => tensor(values(n * i, 1), [n, i], &ad, p),
        Layout::Strided => tensor(values(n * i, 1), [i, n], &ad, p).transpose(),
    }
    .require_grad();
    let w_full = match layout {
        Layout::Contiguous => tensor(values(i * o, 2), [i, o], &ad, p),
        Layout::Strided => tensor(values(i * (o + 3), 2), [i, o + 3], &ad, p),
    }
    .require_grad();
    let w = w_full.clone().narrow(1, 0, o);
    let b = tensor(values(o, 3), [o], &ad, p).require_grad();
    let c = tensor(values(n * o, 4), [n, o], &ad, p);
    let y = if fused {
        dense(x.clone(), w, b.clone(), with_relu)
    } else {
        reference(x.clone(), w, b.clone(), with_relu)
    };
    let grads = (y.clone() * c).sum().backward();
    let grad = |t: &Tensor<2>| to_f64(t.grad(&grads).expect("a gradient")).unwrap();
    let gb = to_f64(b.grad(&grads).expect("a bias gradient")).unwrap();
    let gw = grad(&w_full);
    [to_f64(y.inner()).unwrap(), grad(&x), gw, gb]
}

#[test]
fn the_dense_layer_equals_burns_operations_in_values_and_gradients() {
    // Odd sizes; one large enough to be split into blocks over the threads (> 2^21 products);
    // a single input and a single output column.
    let shapes = [
        (7, 13, 5),
        (100, 300, 257),
        (1, 1, 1),
        (33, 64, 1),
        (130, 1, 70),
    ];
    for (backend, p, dev) in targets() {
        // The comparison is the extension's own on flex (not Burn's operations twice).
        assert_eq!(
            extension_on(&dev),
            backend.to_string() == "flex",
            "{backend}"
        );
        for shape in shapes {
            for layout in [Layout::Contiguous, Layout::Strided] {
                for with_relu in [false, true] {
                    let got = layer(shape, layout, with_relu, true, &dev, p);
                    let want = layer(shape, layout, with_relu, false, &dev, p);
                    for (what, g, w) in ["y", "dL/dx", "dL/dW", "dL/db"]
                        .iter()
                        .zip(&got)
                        .zip(&want)
                        .map(|((a, b), c)| (a, b, c))
                    {
                        let e = rel_err(g, w);
                        assert!(
                            e <= tol(p),
                            "{backend} {p} {shape:?} {layout:?} relu={with_relu} {what}: {e:e}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_split_product_equals_matmul_on_transposed_and_sliced_operands() {
    for (backend, p, dev) in targets() {
        for (m, k, n) in [(5, 3, 4), (100, 100, 500), (784, 100, 500), (100, 2000, 10)] {
            let a = tensor(values(m * k, 5), [m, k], &dev, p);
            let at = tensor(values(m * k, 5), [k, m], &dev, p).transpose();
            let b = tensor(values(k * n, 6), [k, n], &dev, p);
            let bt = tensor(values(k * (n + 2), 6), [n + 2, k], &dev, p)
                .narrow(0, 1, n)
                .transpose();
            for (name, l, r) in [("plain", &a, &b), ("lhs-t", &at, &b), ("rhs-t", &a, &bt)] {
                let got = to_f64(product(l.clone(), r.clone())).unwrap();
                let want = to_f64(l.clone().matmul(r.clone())).unwrap();
                let e = rel_err(&got, &want);
                assert!(
                    e <= tol(p),
                    "{backend} {p} [{m},{k}]·[{k},{n}] {name}: {e:e}"
                );
            }
        }
    }
}

#[test]
fn the_dense_layer_keeps_nan_as_burns_relu_does_and_runs_without_gradients() {
    for (backend, p, dev) in targets() {
        let mut xv = values(4 * 3, 7);
        xv[4] = f64::NAN; // row 1
        let x = tensor(xv, [4, 3], &dev, p);
        let w = tensor(values(3 * 2, 8), [3, 2], &dev, p);
        let b = tensor(values(2, 9), [2], &dev, p);
        let got = to_f64(dense(x.clone(), w.clone(), b.clone(), true)).unwrap();
        let want = to_f64(reference(x, w, b, true)).unwrap();
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.is_nan(),
                w.is_nan(),
                "{backend} {p} entry {j}: {g} vs {w}"
            );
            assert!(g.is_nan() || (g - w).abs() <= tol(p), "{backend} {p} {j}");
        }
        assert!(
            got[2].is_nan() && got[3].is_nan() && !got[0].is_nan(),
            "{got:?}"
        );
        // On an autodiff device with nothing requiring a gradient: the values alone.
        let ad = dev.clone().autodiff();
        let y = dense(
            tensor(values(6, 1), [2, 3], &ad, p),
            tensor(values(6, 2), [3, 2], &ad, p),
            tensor(values(2, 3), [2], &ad, p),
            false,
        );
        assert_eq!(to_f64(y.inner()).unwrap().len(), 4, "{backend} {p}");
    }
}

/// The BCE row sums and the gradients of `Σ_i s_i c_i` with respect to the logits and the
/// targets, by the extension (`fused`) or by Burn's operations.
fn bce(
    l: &[f64],
    x: &[f64],
    dims: [usize; 2],
    fused: bool,
    dev: &Device,
    p: Precision,
) -> [Vec<f64>; 3] {
    let ad = dev.clone().autodiff();
    let lt = tensor(l.to_vec(), dims, &ad, p).require_grad();
    let xt = tensor(x.to_vec(), dims, &ad, p).require_grad();
    let c = tensor(values(dims[0], 11), [dims[0]], &ad, p);
    let s = if fused {
        bce_with_logits(lt.clone(), xt.clone())
    } else {
        let softplus = relu(lt.clone()) + lt.clone().abs().neg().exp().log1p();
        (softplus - xt.clone() * lt.clone())
            .sum_dim(1)
            .squeeze_dim(1)
    };
    let grads = (s.clone() * c).sum().backward();
    [
        to_f64(s.inner()).unwrap(),
        to_f64(lt.grad(&grads).expect("a logit gradient")).unwrap(),
        to_f64(xt.grad(&grads).expect("a target gradient")).unwrap(),
    ]
}

#[test]
fn bce_with_logits_equals_burns_operations_in_values_and_gradients() {
    for (backend, p, dev) in targets() {
        for (n, d) in [(3, 5), (100, 784), (41, 1)] {
            // Logits up to ±60 (e^{60} overflows neither form), targets in [0, 1].
            let l: Vec<f64> = values(n * d, 12).iter().map(|v| 60.0 * v * v * v).collect();
            let x: Vec<f64> = values(n * d, 13).iter().map(|v| 0.5 + 0.5 * v).collect();
            let got = bce(&l, &x, [n, d], true, &dev, p);
            let want = bce(&l, &x, [n, d], false, &dev, p);
            for (what, g, w) in [
                ("s", &got[0], &want[0]),
                ("dL/dl", &got[1], &want[1]),
                ("dL/dx", &got[2], &want[2]),
            ] {
                let e = rel_err(g, w);
                assert!(e <= 10.0 * tol(p), "{backend} {p} [{n},{d}] {what}: {e:e}");
            }
        }
        // A NaN logit makes its row's sum NaN and no other.
        let mut l = values(6, 14);
        l[4] = f64::NAN;
        let s = to_f64(bce_with_logits(
            tensor(l, [2, 3], &dev, p),
            tensor(vec![0.5; 6], [2, 3], &dev, p),
        ))
        .unwrap();
        assert!(!s[0].is_nan() && s[1].is_nan(), "{backend} {p}: {s:?}");
    }
}
