//! Batched dense linear algebra written with Burn tensor ops (Burn has no Cholesky, triangular
//! solve or inverse). Every function takes a leading batch dimension `[M, D, D]` and runs the
//! whole batch in one sequence of tensor ops, so K components × B restarts factorise together.
//!
//! Every factorisation of the project is here, and every crate calls these: the batched tensor
//! routines ([`cholesky`], [`solve_lower`], [`lower_triangular_inverse`], [`cholesky_blocked`],
//! the pseudo-inverse factor on Burn's SVD), and the two host routines for small f64 matrices,
//! [`host_cholesky`] (with [`host_cholesky_solve`]; the diagonal blocks of [`cholesky_blocked`]
//! and the OOD ensemble's Newton step use it) and [`symmetric_eigen`] (cyclic Jacobi; VaDE's 2-D
//! PCA picture uses it).

use burn::tensor::{Device, Int, Tensor};

use crate::error::{GmmError, Result};
use mixburn_backend::host::{int_tensor, to_f64};

/// Lower Cholesky factors `L` with `L Lᵀ = A` for a batch `A: [M, D, D]` of symmetric matrices.
///
/// Left-looking (Cholesky–Crout) by columns: for `j = 0..D`,
/// `c = A[:, j] − L[:, :j] L[j, :j]ᵀ`, `L[j, j] = √c_j`, `L[i, j] = c_i / L[j, j]` for `i > j`.
/// A matrix that is not positive definite yields NaN or a non-positive diagonal; check with
/// [`first_bad_factor`]. Wider than [`BLOCK`] columns, by blocks
/// ([`cholesky_batched_blocked`]): the column loop copies `O(M·D³)` values.
pub fn cholesky(a: Tensor<3>) -> Result<Tensor<3>> {
    if a.dims()[1] > BLOCK {
        Ok(cholesky_batched_blocked(a, false)?.0)
    } else {
        Ok(cholesky_columns(a))
    }
}

/// [`cholesky`] by its column loop, at any width.
fn cholesky_columns(a: Tensor<3>) -> Tensor<3> {
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
        let mask = mixburn_backend::host::tensor_from_f64(below, [1, d, 1], &device, dtype);
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
/// `Uᵀ Σ U = I` and `Σ⁻¹ = U Uᵀ` (scikit-learn's `precisions_cholesky_`), and the index of the
/// first matrix that is not numerically positive definite (its factor is NaN). Up to [`BLOCK`]
/// columns by [`cholesky`] and [`lower_triangular_inverse`] (one tensor op sequence per
/// column); wider by the blocks of [`cholesky_batched_blocked`] (GEMMs, about `D³` flops), in
/// one `[M, D, D]` buffer that holds `Lᵀ` and is inverted in place into `U`: beside the
/// covariances the caller keeps, the factorisation holds `U` (`M·D²`) and the diagonal blocks.
pub fn precision_cholesky(cov: Tensor<3>) -> Result<(Tensor<3>, Option<usize>)> {
    if cov.dims()[1] > BLOCK {
        let blocks = BlockFactor::factor(&cov)?;
        drop(cov);
        let bad = blocks.first_bad;
        Ok((blocks.upper_inverse(), bad))
    } else {
        let l = cholesky_columns(cov);
        let bad = first_bad_factor(l.clone())?;
        Ok((lower_triangular_inverse(l).swap_dims(1, 2), bad))
    }
}

/// Lower Cholesky factors `L` and (`with_inverse`) their inverses `L⁻¹` of a batch
/// `A: [M, D, D]`, by blocks of [`BLOCK`] rows and columns, left-looking as
/// [`precision_cholesky`] factorises. The column loop of [`cholesky`] copies `O(M·D³)` values
/// at this width; this runs in `O(D/BLOCK)` batched GEMMs. A matrix that is not numerically
/// positive definite gets NaN from its failing block on (so [`first_bad_factor`] names it),
/// the others are unaffected.
pub fn cholesky_batched_blocked(
    a: Tensor<3>,
    with_inverse: bool,
) -> Result<(Tensor<3>, Option<Tensor<3>>)> {
    let blocks = BlockFactor::factor(&a)?;
    drop(a);
    if with_inverse {
        // `L` from a copy of the buffer, which the inverse then overwrites.
        let l = lower_from(blocks.t.clone(), &blocks.diag);
        Ok((l, Some(blocks.upper_inverse().swap_dims(1, 2))))
    } else {
        Ok((lower_from(blocks.t, &blocks.diag), None))
    }
}

/// The blocked Cholesky factor of a batch `A: [M, D, D]` held as `T = Lᵀ` in one buffer,
/// left-looking (`A` is only read, so the caller's matrices are not copied). For each block
/// row `j` (`j0 = j·BLOCK`, height `b`), the panel
/// `Pᵀ = A[j, j0..] − T[..j0, j]ᵀ T[..j0, j0..]` is one batched GEMM over every block row
/// above, its left `b × b` block is factorised and inverted on the host in f64
/// ([`host_cholesky`]), `L_jj = chol(P₁₁)` and `T[j, j0+b..] = L_jj⁻¹ P₁₂` (`= L[j0+b.., j]ᵀ`).
/// The buffer holds the blocks strictly above the diagonal and zeros; the diagonal blocks are
/// kept beside it. Only the upper triangle is ever written, so the triangular inverse
/// ([`BlockFactor::upper_inverse`]) overwrites `T` with `U = T⁻¹` in place and no `L` is held
/// beside `U`.
struct BlockFactor {
    /// `T = Lᵀ` off the diagonal blocks, zeros elsewhere, `[M, D, D]`.
    t: Tensor<3>,
    /// `L_jj`, `[M, b, b]`.
    diag: Vec<Tensor<3>>,
    /// `L_jj⁻¹`, `[M, b, b]`.
    diag_inv: Vec<Tensor<3>>,
    /// The first matrix whose factorisation failed (a pivot not finite and positive).
    first_bad: Option<usize>,
}

impl BlockFactor {
    fn factor(a: &Tensor<3>) -> Result<Self> {
        let [m, d, _] = a.dims();
        let (device, dtype) = (a.device(), a.dtype());
        let up = |v: Vec<f64>, b: usize| {
            mixburn_backend::host::tensor_from_f64(v, [m, b, b], &device, dtype)
        };
        let mut t: Tensor<3> = mixburn_backend::host::zeros([m, d, d], &device, dtype);
        let mut diag: Vec<Tensor<3>> = Vec::new();
        let mut diag_inv: Vec<Tensor<3>> = Vec::new();
        let mut bad = vec![false; m];
        for j0 in (0..d).step_by(BLOCK) {
            let b = BLOCK.min(d - j0);
            let mut panel = a.clone().slice([0..m, j0..j0 + b, j0..d]);
            if j0 > 0 {
                // Every block row above, [M, j0, D − j0]: T's entries there are all written.
                let above = t.clone().slice([0..m, 0..j0, j0..d]);
                let left = above.clone().slice([0..m, 0..j0, 0..b]).swap_dims(1, 2);
                panel = panel - left.matmul(above);
            }
            let p11 = to_f64(panel.clone().slice([0..m, 0..b, 0..b]))?;
            let (mut l11, mut l11_inv) =
                (Vec::with_capacity(m * b * b), Vec::with_capacity(m * b * b));
            for (i, block) in p11.chunks_exact(b * b).enumerate() {
                match host_cholesky_with_inverse(block, b) {
                    Some((l, inv)) => {
                        l11.extend(l);
                        l11_inv.extend(inv);
                    }
                    None => {
                        bad[i] = true;
                        l11.extend(std::iter::repeat_n(f64::NAN, b * b));
                        l11_inv.extend(std::iter::repeat_n(f64::NAN, b * b));
                    }
                }
            }
            let l11_inv = up(l11_inv, b);
            if j0 + b < d {
                let p12 = panel.slice([0..m, 0..b, b..d - j0]);
                // The views of T are gone (consumed by the product), so this writes in place.
                t = t.slice_assign([0..m, j0..j0 + b, j0 + b..d], l11_inv.clone().matmul(p12));
            }
            diag.push(up(l11, b));
            diag_inv.push(l11_inv);
        }
        Ok(Self {
            t,
            diag,
            diag_inv,
            first_bad: bad.iter().position(|&b| b),
        })
    }

    /// `U = T⁻¹ = (L⁻¹)ᵀ`, upper triangular, by block columns written over `T` in place:
    /// `U_jj = L_jj⁻ᵀ` and `U[..j0, j] = −U[..j0, ..j0] T[..j0, j] L_jj⁻ᵀ`. Column block `j` of
    /// the buffer holds `T[..j0, j]` until this step writes `U`'s there, and its columns to
    /// the left already hold `U[..j0, ..j0]` (zeros below the diagonal).
    fn upper_inverse(self) -> Tensor<3> {
        let mut u = self.t;
        let m = u.dims()[0];
        for (j, inv) in self.diag_inv.into_iter().enumerate() {
            let (j0, b) = (j * BLOCK, inv.dims()[1]);
            let inv_t = inv.swap_dims(1, 2);
            if j0 > 0 {
                let t_col = u.clone().slice([0..m, 0..j0, j0..j0 + b]);
                let above = u.clone().slice([0..m, 0..j0, 0..j0]);
                // The views of U are dropped by the products, so the writes stay in place.
                let block = above.matmul(t_col).matmul(inv_t.clone()).neg();
                u = u.slice_assign([0..m, 0..j0, j0..j0 + b], block);
            }
            u = u.slice_assign([0..m, j0..j0 + b, j0..j0 + b], inv_t);
        }
        u
    }
}

/// `L = Tᵀ` with its diagonal blocks: written into `t` (in place where the buffer is not
/// shared) and transposed as a view.
fn lower_from(mut t: Tensor<3>, diag: &[Tensor<3>]) -> Tensor<3> {
    let m = t.dims()[0];
    for (j, l) in diag.iter().enumerate() {
        let (j0, b) = (j * BLOCK, l.dims()[1]);
        t = t.slice_assign([0..m, j0..j0 + b, j0..j0 + b], l.clone().swap_dims(1, 2));
    }
    t.swap_dims(1, 2)
}

/// `log |A|` of a batch from its Cholesky factor: `2 Σ_i log L_ii`, shape `[M]`.
pub fn log_det_from_cholesky(l: Tensor<3>) -> Tensor<1> {
    diagonal(l)
        .log()
        .sum_dim(1)
        .squeeze_dim::<1>(1)
        .mul_scalar(2.0)
}

/// The symmetric matrices whose upper triangle (diagonal included) is that of `t: [M, D, D]`:
/// `triu(t) + triu(t, 1)ᵀ` (what lies below the diagonal of `t` is ignored).
pub fn symmetric_from_upper(t: Tensor<3>) -> Tensor<3> {
    t.clone().triu(0) + t.triu(1).swap_dims(1, 2)
}

/// Symmetric matrices `[M, D, D]` written block row by block row into one tensor: for each
/// row block `rows` (contiguous from 0 to D, width `w`), its diagonal block `[M, w, w]`
/// (symmetric already) and, when the block is not the last, the rest of its block row
/// `[M, w, D − rows.end]`, which is also written transposed below the diagonal. Each block is
/// dropped once written, so what the caller produces lazily is held one block row at a time
/// beside the result.
pub fn symmetric_from_block_rows(
    m: usize,
    d: usize,
    device: &Device,
    dtype: burn::tensor::DType,
    blocks: impl IntoIterator<Item = (std::ops::Range<usize>, Tensor<3>, Option<Tensor<3>>)>,
) -> Tensor<3> {
    let mut out: Tensor<3> = mixburn_backend::host::zeros([m, d, d], device, dtype);
    for (rows, diag, right) in blocks {
        out = out.slice_assign([0..m, rows.clone(), rows.clone()], diag);
        if let Some(right) = right {
            let rest = rows.end..d;
            out = out.slice_assign([0..m, rows.clone(), rest.clone()], right.clone());
            out = out.slice_assign([0..m, rest, rows], right.swap_dims(1, 2));
        }
    }
    out
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
pub fn upper_indices(d: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..d).flat_map(move |i| (i..d).map(move |j| (i, j)))
}

/// Int tensor of flat indices into a `[D, D]` matrix for each packed upper-triangle entry.
pub fn packed_index(d: usize, device: &Device) -> Tensor<1, Int> {
    let idx: Vec<i64> = upper_indices(d).map(|(i, j)| (i * d + j) as i64).collect();
    let t = idx.len();
    int_tensor(idx, [t], device)
}

/// Int tensor mapping each entry `(i, j)` of a `[D, D]` matrix to its packed position, so that
/// `packed.select(1, unpack_index)` rebuilds the full symmetric matrix.
pub fn unpack_index(d: usize, device: &Device) -> Tensor<1, Int> {
    let mut pos = vec![0i64; d * d];
    for (t, (i, j)) in upper_indices(d).enumerate() {
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
///
/// Fast path (the usual case of a well-conditioned covariance): when `A − τI` is positive
/// definite for `τ = (2·rtol + 4·D·eps) · λ̄`, with `λ̄ ≥ s_max` the smaller of the Gershgorin
/// bound and `‖A‖_F`, no singular value is below the cut-off, so `A⁺ = A⁻¹` exactly and
/// `W = L⁻ᵀ` with `A = L Lᵀ` ([`cholesky_blocked`], GEMMs on the device) gives the same
/// precision as the SVD at a fraction of its cost. Otherwise (rank-deficient or near the
/// cut-off) the SVD above runs.
pub fn symmetric_pinv_factor(a: Tensor<2>, rtol: Option<f64>) -> Result<(Tensor<2>, usize)> {
    pinv_factor(a, rtol, true)
}

/// [`symmetric_pinv_factor`] always by the SVD (no Cholesky fast path): the reference the
/// fast path is checked and benchmarked against.
pub fn symmetric_pinv_factor_by_svd(a: Tensor<2>, rtol: Option<f64>) -> Result<(Tensor<2>, usize)> {
    pinv_factor(a, rtol, false)
}

fn pinv_factor(a: Tensor<2>, rtol: Option<f64>, fast: bool) -> Result<(Tensor<2>, usize)> {
    let [d, d2] = a.dims();
    if d != d2 || d == 0 {
        return Err(GmmError::invalid_setting(
            "matrix",
            format!("pseudo-inverse needs a non-empty square matrix, got {d}x{d2}"),
        ));
    }
    let dtype = a.dtype();
    let device = a.device();
    let eps = mixburn_backend::backend::Precision::of(dtype).eps();
    let rtol = rtol.unwrap_or(d as f64 * eps);
    let host = to_f64(a.detach())?;
    if let Some(i) = host.iter().position(|v| !v.is_finite()) {
        return Err(GmmError::NumericalFailure(format!(
            "the covariance has a non-finite entry at ({}, {}); check the features",
            i / d,
            i % d
        )));
    }
    let diag: Vec<f64> = (0..d).map(|i| host[i * d + i]).collect();
    let max_diag = diag.iter().cloned().fold(0.0_f64, f64::max);
    let live: Vec<usize> = (0..d).filter(|&i| diag[i] > eps * max_diag).collect();
    if live.is_empty() {
        // In float32 the squares of deviations below ~1e-19 underflow to zero: features that
        // vary at that scale give a zero covariance too.
        let cause = match dtype {
            burn::tensor::DType::F32 => {
                "every feature is constant, or the features vary by less than ~1e-19, whose \
                 squares float32 cannot hold: check the features, scale them, or compute in \
                 f64 (--dtype f64)"
            }
            _ => "every feature is constant: check the features or add a ridge",
        };
        return Err(GmmError::NumericalFailure(format!(
            "the covariance is zero ({cause})"
        )));
    }
    let k = live.len();
    let sub: Vec<f64> = live
        .iter()
        .flat_map(|&i| live.iter().map(move |&j| (i, j)))
        .map(|(i, j)| host[i * d + j])
        .collect();
    // The factorisations run in f64 where the device has it.
    let svd_dtype = if device.supports_dtype(burn::tensor::DType::F64) {
        burn::tensor::DType::F64
    } else {
        dtype
    };
    let fast = if fast {
        inverse_factor_if_well_conditioned(&sub, k, rtol, &device, svd_dtype)?
    } else {
        None
    };
    if let Some(w) = fast {
        let w = if k == d {
            w.cast(dtype)
        } else {
            let w = to_f64(w)?;
            let mut full = vec![0.0; d * k];
            for (row, &i) in live.iter().enumerate() {
                full[i * k..(i + 1) * k].copy_from_slice(&w[row * k..(row + 1) * k]);
            }
            mixburn_backend::host::tensor_from_f64(full, [d, k], &device, dtype)
        };
        return Ok((w, k));
    }
    let try_svd = |jitter: f64| {
        let mut m = sub.clone();
        for i in 0..k {
            m[i * k + i] += jitter;
        }
        let t = mixburn_backend::host::tensor_from_f64(m, [k, k], &device, svd_dtype);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            burn::linalg::svd::<2, 1>(t, 200)
        }))
        .ok()
    };
    let trace: f64 = live.iter().map(|&i| diag[i]).sum();
    let scale = rtol * trace / k as f64;
    let (u, s, _vt) = try_svd(1e-3 * scale)
        .or_else(|| try_svd(1e-1 * scale))
        .ok_or_else(|| {
            GmmError::NumericalFailure("the SVD of the covariance did not converge".into())
        })?;
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
        mixburn_backend::host::tensor_from_f64(w, [d, rank], &device, dtype),
        rank,
    ))
}

/// `W = L⁻ᵀ` (`[k, k]`, upper triangular, `W Wᵀ = A⁻¹`) for a symmetric `A` (row-major host
/// values) whose eigenvalues are all above the pseudo-inverse's cut-off, certified by the
/// Cholesky factorisation of `A − τI` (see [`symmetric_pinv_factor`]); `None` when that
/// certificate fails (the caller falls back to the SVD).
fn inverse_factor_if_well_conditioned(
    a: &[f64],
    k: usize,
    rtol: f64,
    device: &Device,
    dtype: burn::tensor::DType,
) -> Result<Option<Tensor<2>>> {
    let gershgorin = (0..k)
        .map(|i| a[i * k..(i + 1) * k].iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0f64, f64::max);
    let frobenius = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let upper = gershgorin.min(frobenius);
    let eps = mixburn_backend::backend::Precision::of(dtype).eps();
    let tau = (2.0 * rtol + 4.0 * k as f64 * eps) * upper;
    let mut shifted = a.to_vec();
    for i in 0..k {
        shifted[i * k + i] -= tau;
    }
    let up = |v: Vec<f64>| mixburn_backend::host::tensor_from_f64(v, [k, k], device, dtype);
    if cholesky_blocked(up(shifted), false)?.is_none() {
        return Ok(None);
    }
    Ok(cholesky_blocked(up(a.to_vec()), true)?
        .map(|(_, inv)| inv.expect("asked for the inverse").transpose()))
}

/// Rows and columns per block of [`cholesky_blocked`].
pub const BLOCK: usize = 128;

/// The lower Cholesky factor `L` (`L Lᵀ = A`) of one symmetric matrix `A: [D, D]` and, when
/// `with_inverse`, `L⁻¹`: [`cholesky_batched_blocked`] of a batch of one. About `D³` flops in
/// GEMMs (`⅔D³` without the inverse). `None` when `A` is not numerically positive definite
/// (a pivot that is not finite and positive).
pub fn cholesky_blocked(
    a: Tensor<2>,
    with_inverse: bool,
) -> Result<Option<(Tensor<2>, Option<Tensor<2>>)>> {
    let d = a.dims()[0];
    let (l, inv) = cholesky_batched_blocked(a.unsqueeze_dim(0), with_inverse)?;
    if first_bad_factor(l.clone())?.is_some() {
        return Ok(None);
    }
    Ok(Some((l.reshape([d, d]), inv.map(|x| x.reshape([d, d])))))
}

/// Lower Cholesky factor `L` (`L Lᵀ = A`) of a small symmetric matrix `A` (row-major `n × n`,
/// host f64), by columns (Cholesky–Crout): `L_jj = √(A_jj − Σ_{p<j} L_jp²)`,
/// `L_ij = (A_ij − Σ_{p<j} L_ip L_jp) / L_jj`. `None` when a pivot is not finite and positive
/// (`A` is not numerically positive definite). The one host factorisation: [`cholesky_blocked`]
/// factorises its diagonal blocks with it, and small host problems (the OOD ensemble's
/// Newton step, a `p × p` Hessian) solve with [`host_cholesky_solve`].
pub fn host_cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let s: f64 = (0..j).map(|p| l[j * n + p] * l[j * n + p]).sum();
        let pivot = a[j * n + j] - s;
        if !(pivot > 0.0 && pivot.is_finite()) {
            return None;
        }
        let ljj = pivot.sqrt();
        l[j * n + j] = ljj;
        for i in j + 1..n {
            let s: f64 = (0..j).map(|p| l[i * n + p] * l[j * n + p]).sum();
            l[i * n + j] = (a[i * n + j] - s) / ljj;
        }
    }
    Some(l)
}

/// Solves `A x = b` for a small symmetric positive definite `A` (row-major `n × n`, host f64):
/// [`host_cholesky`], then `L y = b` forward and `Lᵀ x = y` backward. `None` when `A` is not
/// numerically positive definite.
pub fn host_cholesky_solve(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let l = host_cholesky(a, n)?;
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    Some(x)
}

/// Eigen-decomposition `A = V Λ Vᵀ` of a small symmetric `d × d` matrix (row-major, host f64)
/// by cyclic Jacobi rotations, until the off-diagonal mass is below `10⁻³⁰` of the total.
/// Returns the eigenvalues (unordered) and `V` (row-major, eigenvectors in columns). The one
/// eigen-solver of the project (VaDE's PCA picture); pseudo-inverses use Burn's SVD instead
/// ([`symmetric_pinv_factor`]).
pub fn symmetric_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// Cholesky factor `L` of a small symmetric matrix and `L⁻¹` (row-major, host f64), or `None`
/// when a pivot is not finite and positive.
fn host_cholesky_with_inverse(a: &[f64], n: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let l = host_cholesky(a, n)?;
    // Forward substitution for the columns of L⁻¹.
    let mut inv = vec![0.0; n * n];
    for c in 0..n {
        for i in c..n {
            let e = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (c..i).map(|p| l[i * n + p] * inv[p * n + c]).sum();
            inv[i * n + c] = (e - s) / l[i * n + i];
        }
    }
    Some((l, inv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mixburn_backend::backend::{Backend, Precision};
    use mixburn_backend::host::tensor_from_f64;

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
        let l = cholesky(a).unwrap();
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
        let l = cholesky(a).unwrap();
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
        let (u, bad) = precision_cholesky(a.clone()).unwrap();
        assert_eq!(bad, None);
        let l = cholesky(a.clone()).unwrap();
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
    fn the_batched_blocked_factorisation_equals_the_column_loop_and_names_a_bad_matrix() {
        // D = 300: two full blocks and a partial one; the middle matrix is indefinite.
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        let d = 300;
        let mut values = Vec::with_capacity(3 * d * d);
        for m in 0..3 {
            for i in 0..d {
                for j in 0..d {
                    let base = 1.0 / (1.0 + (i as f64 - j as f64).abs()); // positive definite
                    let diag = if i == j { 2.0 + (i % 7) as f64 } else { 0.0 };
                    let flip = if m == 1 && i == 250 && j == 250 {
                        -50.0
                    } else {
                        0.0
                    };
                    values.push(base + diag + flip + 0.01 * m as f64);
                }
            }
        }
        let a = tensor_from_f64(values, [3, d, d], &device, Precision::F64.dtype());
        let (l, inv) = cholesky_batched_blocked(a.clone(), true).unwrap();
        let inv = inv.unwrap();
        // The precision factors, written in place, are the inverse transposed; the bad
        // matrix is named from the host blocks.
        let (u, bad) = precision_cholesky(a.clone()).unwrap();
        assert_eq!(bad, Some(1));
        let u_t = to_f64(u.swap_dims(1, 2)).unwrap();
        let loop_l = cholesky_columns(a.clone());
        assert_eq!(
            to_f64(cholesky(a.clone()).unwrap()).unwrap()[..d * d],
            to_f64(l.clone()).unwrap()[..d * d]
        );
        assert_eq!(first_bad_factor(l.clone()).unwrap(), Some(1));
        assert_eq!(first_bad_factor(loop_l.clone()).unwrap(), Some(1));
        let (l, inv, loop_l) = (
            to_f64(l).unwrap(),
            to_f64(inv).unwrap(),
            to_f64(loop_l).unwrap(),
        );
        let loop_inv = to_f64(lower_triangular_inverse(tensor_from_f64(
            loop_l.clone(),
            [3, d, d],
            &device,
            Precision::F64.dtype(),
        )))
        .unwrap();
        for m in [0, 2] {
            let r = m * d * d..(m + 1) * d * d;
            let err = |a: &[f64], b: &[f64]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max)
            };
            assert!(err(&l[r.clone()], &loop_l[r.clone()]) < 1e-12);
            assert!(err(&inv[r.clone()], &loop_inv[r.clone()]) < 1e-12);
            assert!(err(&u_t[r.clone()], &loop_inv[r]) < 1e-12);
        }
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
        assert_eq!(first_bad_factor(cholesky(a).unwrap()).unwrap(), Some(2));
        let a = tensor_from_f64(
            [ok, ok].concat(),
            [2, 2, 2],
            &device,
            Precision::F64.dtype(),
        );
        assert_eq!(first_bad_factor(cholesky(a).unwrap()).unwrap(), None);
    }

    #[test]
    fn blocked_cholesky_and_its_inverse_match_the_definition_across_blocks() {
        let device = Backend::compiled()[0].device_for(Precision::F64).unwrap();
        // A = BᵀB/n + I for a pseudo-random B, D = 300 (three blocks, the last partial).
        let (n, d) = (400, 300);
        let mut state = 1u64;
        let b: Vec<f64> = (0..n * d)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect();
        let bt = tensor_from_f64(b, [n, d], &device, Precision::F64.dtype());
        let a = bt.clone().transpose().matmul(bt).div_scalar(n as f64)
            + Tensor::<2>::eye(d, &device).cast(Precision::F64.dtype());
        let (l, inv) = cholesky_blocked(a.clone(), true).unwrap().unwrap();
        let lv = to_f64(l.clone()).unwrap();
        assert!(
            (0..d).all(|i| (i + 1..d).all(|j| lv[i * d + j] == 0.0)),
            "lower"
        );
        let back = to_f64(l.clone().matmul(l.clone().transpose())).unwrap();
        let av = to_f64(a.clone()).unwrap();
        let err = back
            .iter()
            .zip(&av)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "L Lᵀ − A: {err}");
        let eye = to_f64(inv.unwrap().matmul(l)).unwrap();
        let err = (0..d * d)
            .map(|t| (eye[t] - if t / d == t % d { 1.0 } else { 0.0 }).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "L⁻¹ L − I: {err}");
        // Not positive definite: refused.
        let neg = a.clone()
            - Tensor::<2>::eye(d, &device)
                .cast(Precision::F64.dtype())
                .mul_scalar(10.0);
        assert!(cholesky_blocked(neg, false).unwrap().is_none());
        // The pseudo-inverse factor of a well-conditioned matrix is the inverse's.
        let (w, rank) = symmetric_pinv_factor(a.clone(), None).unwrap();
        assert_eq!(rank, d);
        let p = to_f64(w.clone().matmul(w.transpose()).matmul(a)).unwrap();
        let err = (0..d * d)
            .map(|t| (p[t] - if t / d == t % d { 1.0 } else { 0.0 }).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-10, "W Wᵀ A − I: {err}");
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
