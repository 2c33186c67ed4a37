//! Batched dense linear algebra written with Burn tensor ops (Burn has no Cholesky, triangular
//! solve or inverse). Every function takes a leading batch dimension `[M, D, D]` and runs the
//! whole batch in one sequence of tensor ops, so K components × B restarts factorise together.
//!
//! These are the only factorisations in the project: the OOD detector and the VAE prior layer
//! call them too.

use burn::tensor::{Device, Int, Tensor};

use crate::error::{GmmError, Result};
use crate::host::{int_tensor, to_f64};

/// Lower Cholesky factors `L` with `L Lᵀ = A` for a batch `A: [M, D, D]` of symmetric matrices.
///
/// Left-looking (Cholesky–Crout) by columns: for `j = 0..D`,
/// `c = A[:, j] − L[:, :j] L[j, :j]ᵀ`, `L[j, j] = √c_j`, `L[i, j] = c_i / L[j, j]` for `i > j`.
/// A matrix that is not positive definite yields NaN or a non-positive diagonal; check with
/// [`first_bad_factor`].
pub fn cholesky(a: Tensor<3>) -> Tensor<3> {
    let [m, d, _] = a.dims();
    let device = a.device();
    let dtype = a.dtype();
    let mut columns: Vec<Tensor<3>> = Vec::with_capacity(d);
    for j in 0..d {
        let mut col = a.clone().slice([0..m, 0..d, j..j + 1]);
        if j > 0 {
            let left = Tensor::cat(columns.clone(), 2); // [M, D, j]
            let row_j = left.clone().slice([0..m, j..j + 1, 0..j]); // [M, 1, j]
            col = col - left.matmul(row_j.swap_dims(1, 2));
        }
        let pivot = col.clone().slice([0..m, j..j + 1, 0..1]).sqrt(); // [M, 1, 1]
                                                                      // Rows above the diagonal are zero in a lower factor.
        let below: Vec<f64> = (0..d).map(|i| if i >= j { 1.0 } else { 0.0 }).collect();
        let mask = crate::host::tensor_from_f64(below, [1, d, 1], &device, dtype);
        columns.push(col.div(pivot) * mask);
    }
    Tensor::cat(columns, 2)
}

/// Inverse `X = L⁻¹` of a batch of lower-triangular matrices `L: [M, D, D]` (forward
/// substitution by rows: `X[i, :] = (e_i − L[i, :i] X[:i, :]) / L[i, i]`).
pub fn lower_triangular_inverse(l: Tensor<3>) -> Tensor<3> {
    let [m, d, _] = l.dims();
    let eye: Tensor<3> = Tensor::<2>::eye(d, &l.device())
        .cast(l.dtype())
        .unsqueeze_dim(0);
    let mut rows: Vec<Tensor<3>> = Vec::with_capacity(d);
    for i in 0..d {
        let mut rhs = eye.clone().slice([0..1, i..i + 1, 0..d]).expand([m, 1, d]);
        if i > 0 {
            let solved = Tensor::cat(rows.clone(), 1); // [M, i, D]
            let l_row = l.clone().slice([0..m, i..i + 1, 0..i]); // [M, 1, i]
            rhs = rhs - l_row.matmul(solved);
        }
        let diag = l.clone().slice([0..m, i..i + 1, i..i + 1]);
        rows.push(rhs.div(diag));
    }
    Tensor::cat(rows, 1)
}

/// Solves `L X = B` for lower-triangular `L: [M, D, D]` and right-hand sides `B: [M, D, R]`.
pub fn solve_lower(l: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    lower_triangular_inverse(l).matmul(b)
}

/// Upper-triangular precision Cholesky factors `U = (L⁻¹)ᵀ` of covariances `Σ = L Lᵀ`, so that
/// `Uᵀ Σ U = I` and `Σ⁻¹ = U Uᵀ` (scikit-learn's `precisions_cholesky_`).
pub fn precision_cholesky(cov: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let l = cholesky(cov);
    let u = lower_triangular_inverse(l.clone()).swap_dims(1, 2);
    (l, u)
}

/// `log |A|` of a batch from its Cholesky factor: `2 Σ_i log L_ii`, shape `[M]`.
pub fn log_det_from_cholesky(l: Tensor<3>) -> Tensor<1> {
    diagonal(l)
        .log()
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        .mul_scalar(2.0)
}

/// The diagonals `[M, D]` of a batch `[M, D, D]`.
pub fn diagonal(a: Tensor<3>) -> Tensor<2> {
    let [m, d, _] = a.dims();
    let device = a.device();
    let idx: Vec<i64> = (0..d).map(|i| (i * d + i) as i64).collect();
    a.reshape([m, d * d])
        .select(1, int_tensor(idx, [d], &device))
}

/// Index of the first matrix in a batch of Cholesky factors whose diagonal is not finite and
/// positive (the matrix was not positive definite), or `None` when all are valid.
pub fn first_bad_factor(l: Tensor<3>) -> Result<Option<usize>> {
    let [m, d, _] = l.dims();
    let diag = to_f64(diagonal(l))?;
    Ok((0..m).find(|&i| {
        diag[i * d..(i + 1) * d]
            .iter()
            .any(|v| !(v.is_finite() && *v > 0.0))
    }))
}

/// Indices `[i·D + j]` of the upper triangle `i ≤ j` (row-major), length `D(D+1)/2`: the order
/// of the packed quadratic features `x_i x_j`.
pub fn upper_indices(d: usize) -> Vec<(usize, usize)> {
    (0..d).flat_map(|i| (i..d).map(move |j| (i, j))).collect()
}

/// Int tensor of flat indices into a `[D, D]` matrix for each packed upper-triangle entry.
pub fn packed_index(d: usize, device: &Device) -> Tensor<1, Int> {
    let idx: Vec<i64> = upper_indices(d)
        .into_iter()
        .map(|(i, j)| (i * d + j) as i64)
        .collect();
    let t = idx.len();
    int_tensor(idx, [t], device)
}

/// Int tensor mapping each entry `(i, j)` of a `[D, D]` matrix to its packed position, so that
/// `packed.select(1, unpack_index)` rebuilds the full symmetric matrix.
pub fn unpack_index(d: usize, device: &Device) -> Tensor<1, Int> {
    let mut pos = vec![0i64; d * d];
    for (t, (i, j)) in upper_indices(d).into_iter().enumerate() {
        pos[i * d + j] = t as i64;
        pos[j * d + i] = t as i64;
    }
    int_tensor(pos, [d * d], device)
}

/// A factor `W: [D, r]` of the Moore–Penrose pseudo-inverse of a symmetric positive
/// semi-definite `A: [D, D]`, `A⁺ = W Wᵀ`, and the numerical rank `r`.
///
/// From the SVD `A = V S Vᵀ` (Burn's `linalg::svd`, in f64 where the device has it; for a PSD matrix the left and
/// right singular vectors agree), `W = V_r diag(s_r^{−½})` over the singular values
/// `s_i > rtol · s_max`. The default `rtol = D · eps(dtype)` is SciPy's `pinvh` default, which
/// Lee et al.'s reference code uses for the tied precision. Coordinates whose diagonal is zero
/// (dead units: `A_ii ≤ eps · max A_jj`) are exactly in the null space and are left out of the
/// SVD (their rows of `W` are zero). The SVD is taken of `A + δI` with
/// `δ = 10⁻³ · rtol · tr(A)/D` (once more with `10⁻¹` should its QR iteration not converge):
/// exact zeros otherwise stall Burn's bidiagonal QR, and `δ` moves every kept singular value by
/// at most a `10⁻³ · rtol` fraction while the null space stays below the cut-off
/// (`s_max ≥ tr(A)/D`).
pub fn symmetric_pinv_factor(a: Tensor<2>, rtol: Option<f64>) -> Result<(Tensor<2>, usize)> {
    let [d, d2] = a.dims();
    if d != d2 || d == 0 {
        return Err(GmmError::config(
            "matrix",
            format!("pseudo-inverse needs a non-empty square matrix, got {d}x{d2}"),
        ));
    }
    let dtype = a.dtype();
    let device = a.device();
    let eps = crate::backend::Precision::of(dtype).eps();
    let rtol = rtol.unwrap_or(d as f64 * eps);
    let host = to_f64(a.detach())?;
    if let Some(i) = host.iter().position(|v| !v.is_finite()) {
        return Err(GmmError::Backend(format!(
            "the covariance has a non-finite entry at ({}, {}); check the features",
            i / d,
            i % d
        )));
    }
    let diag: Vec<f64> = (0..d).map(|i| host[i * d + i]).collect();
    let max_diag = diag.iter().cloned().fold(0.0_f64, f64::max);
    let live: Vec<usize> = (0..d).filter(|&i| diag[i] > eps * max_diag).collect();
    if live.is_empty() {
        return Err(GmmError::Backend(
            "the covariance is zero (every feature is constant); check the features or add a ridge"
                .into(),
        ));
    }
    let k = live.len();
    let sub: Vec<f64> = live
        .iter()
        .flat_map(|&i| live.iter().map(move |&j| (i, j)))
        .map(|(i, j)| host[i * d + j])
        .collect();
    // The SVD runs on the host over the tensor's data; ask for f64 where the device has it.
    let svd_dtype = if device.supports_dtype(burn::tensor::DType::F64) {
        burn::tensor::DType::F64
    } else {
        dtype
    };
    let try_svd = |jitter: f64| {
        let mut m = sub.clone();
        for i in 0..k {
            m[i * k + i] += jitter;
        }
        let t = crate::host::tensor_from_f64(m, [k, k], &device, svd_dtype);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            burn::linalg::svd::<2, 1>(t, 200)
        }))
        .ok()
    };
    let trace: f64 = live.iter().map(|&i| diag[i]).sum();
    let scale = rtol * trace / k as f64;
    let (u, s, _vt) = try_svd(1e-3 * scale)
        .or_else(|| try_svd(1e-1 * scale))
        .ok_or_else(|| GmmError::Backend("the SVD of the covariance did not converge".into()))?;
    let values = to_f64(s)?;
    let u = to_f64(u)?;
    let s_max = values.iter().cloned().fold(0.0_f64, f64::max);
    let rank = values.iter().filter(|&&v| v > rtol * s_max).count();
    let mut w = vec![0.0; d * rank];
    for (row, &i) in live.iter().enumerate() {
        for c in 0..rank {
            w[i * rank + c] = u[row * k + c] / values[c].sqrt();
        }
    }
    Ok((
        crate::host::tensor_from_f64(w, [d, rank], &device, dtype),
        rank,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, Precision};
    use crate::host::tensor_from_f64;

    fn spd_batch(device: &Device, precision: Precision) -> (Tensor<3>, Vec<f64>) {
        // A = Bᵀ B + I for two fixed 3×3 matrices B.
        let b = [
            [1.0, 2.0, 0.5, -1.0, 0.3, 2.0, 0.0, 1.5, -0.7],
            [3.0, 0.1, 0.2, 0.4, 2.0, -0.5, 1.0, 1.0, 1.0],
        ];
        let mut a = vec![];
        for m in b {
            for i in 0..3 {
                for j in 0..3 {
                    let s: f64 = (0..3).map(|r| m[r * 3 + i] * m[r * 3 + j]).sum();
                    a.push(s + if i == j { 1.0 } else { 0.0 });
                }
            }
        }
        (
            tensor_from_f64(a.clone(), [2, 3, 3], device, precision.dtype()),
            a,
        )
    }

    #[test]
    fn cholesky_factor_is_lower_and_reconstructs_the_matrix() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let (a, values) = spd_batch(&device, Precision::F64);
        let l = cholesky(a);
        let lv = to_f64(l.clone()).unwrap();
        for m in 0..2 {
            for i in 0..3 {
                for j in i + 1..3 {
                    assert_eq!(lv[m * 9 + i * 3 + j], 0.0, "upper entry ({i},{j}) of {m}");
                }
            }
        }
        let back = to_f64(l.clone().matmul(l.swap_dims(1, 2))).unwrap();
        for (x, y) in back.iter().zip(&values) {
            assert!((x - y).abs() < 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn triangular_inverse_times_factor_is_identity() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let (a, _) = spd_batch(&device, Precision::F64);
        let l = cholesky(a);
        let prod = to_f64(lower_triangular_inverse(l.clone()).matmul(l)).unwrap();
        for m in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((prod[m * 9 + i * 3 + j] - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn precision_factor_whitens_the_covariance_and_gives_its_log_determinant() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let (a, _) = spd_batch(&device, Precision::F64);
        let (l, u) = precision_cholesky(a.clone());
        // Uᵀ Σ U = I
        let w = to_f64(u.clone().swap_dims(1, 2).matmul(a).matmul(u)).unwrap();
        for m in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((w[m * 9 + i * 3 + j] - want).abs() < 1e-12);
                }
            }
        }
        let logdet = to_f64(log_det_from_cholesky(l)).unwrap();
        assert!(logdet.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn indefinite_matrices_are_reported_by_index() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let ok = [2.0, 0.0, 0.0, 2.0];
        let bad = [1.0, 2.0, 2.0, 1.0]; // eigenvalues 3 and −1
        let a = tensor_from_f64(
            [ok, ok, bad].concat(),
            [3, 2, 2],
            &device,
            Precision::F64.dtype(),
        );
        assert_eq!(first_bad_factor(cholesky(a)).unwrap(), Some(2));
        let a = tensor_from_f64(
            [ok, ok].concat(),
            [2, 2, 2],
            &device,
            Precision::F64.dtype(),
        );
        assert_eq!(first_bad_factor(cholesky(a)).unwrap(), None);
    }

    #[test]
    fn packing_round_trips_a_symmetric_matrix() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let m = [1.0, 2.0, 3.0, 2.0, 4.0, 5.0, 3.0, 5.0, 6.0];
        let t = tensor_from_f64(m.to_vec(), [1, 9], &device, Precision::F64.dtype());
        let packed = t.select(1, packed_index(3, &device));
        assert_eq!(
            to_f64(packed.clone()).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        let back = packed.select(1, unpack_index(3, &device));
        assert_eq!(to_f64(back).unwrap(), m.to_vec());
    }
}
