//! Per-covariance-type numerics as small pure functions: the quadratic features, the E-step's
//! weight matrix, covariances from sufficient statistics and precision Cholesky factors.
//!
//! Batched layouts (B restarts, K components, D features, `T' = quad_width(D)`):
//!
//! | type      | covariances / precision Cholesky | quadratic features `F(x)`      | `T'`       |
//! |-----------|----------------------------------|--------------------------------|------------|
//! | full      | `[B·K, D, D]`                    | `x_i x_j`, `i ≤ j`             | D(D+1)/2   |
//! | tied      | `[B, D, D]`                      | `x_i x_j`, `i ≤ j`             | D(D+1)/2   |
//! | diag      | `[B·K, D]`                       | `x_d²`                         | D          |
//! | spherical | `[B·K, 1]`                       | `‖x‖²`                         | 1          |
//!
//! With `G(x) = [F(x), x, 1]`, every type's weighted log-density is one GEMM:
//! `log π_k + log N(x | μ_k, Σ_k) = G(x) A_k`, where `A_k = [−½ w(P_k); P_k μ_k; c_k]`,
//! `w(P)` packs the precision so that `F(x)·w(P) = xᵀPx`, and
//! `c_k = −½ D log 2π − ½ μ_kᵀ P_k μ_k + Σ log diag U_k + log π_k`.
//! The M-step's moments (and `n_k`, from the constant column) are the transposed GEMM `Rᵀ G`
//! with the responsibilities `R`.
//!
//! Full and tied covariances also have the whitened form ([`crate::form`]):
//! [`whitened_operands`] for the E-step and [`covariances_from_scatter`] for the M-step from
//! scatters around a per-component shift. The denoising floor, the regularisation and the
//! precision factors ([`precision_cholesky`], one batched Cholesky) are shared by both forms.

use mixburn_backend::spelling::unknown;
use std::borrow::Cow;
use std::ops::Range;
use std::str::FromStr;

use burn::tensor::{DType, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{GmmError, Result};
use crate::linalg;
use crate::stats::UpperBlocks;
use crate::values::Values;
use mixburn_backend::host::{tensor_from_f64, tensor_from_f64_slice, to_f64};

/// The form of the component covariances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CovarianceType {
    /// Each component has its own general covariance matrix.
    #[default]
    Full,
    /// All components share one general covariance matrix.
    Tied,
    /// Each component has its own diagonal covariance matrix.
    Diag,
    /// Each component has its own single variance.
    Spherical,
}

mixburn_backend::spellings!(CovarianceType {
    Full => ["full"],
    Tied => ["tied"],
    Diag => ["diag"],
    Spherical => ["spherical"],
});

impl FromStr for CovarianceType {
    type Err = GmmError;
    fn from_str(s: &str) -> Result<Self> {
        CovarianceType::from_spelling(s).ok_or_else(|| {
            GmmError::invalid_setting(
                "covariance_type",
                unknown("covariance type", s, CovarianceType::SPELLINGS),
            )
        })
    }
}

impl CovarianceType {
    /// Number of values of one model's covariance (or precision) array.
    pub fn param_len(self, k: usize, d: usize) -> usize {
        match self {
            CovarianceType::Full => k * d * d,
            CovarianceType::Tied => d * d,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        }
    }

    /// The array shape of one model's covariances (scikit-learn's `covariances_` shape).
    pub fn param_shape(self, k: usize, d: usize) -> Vec<usize> {
        match self {
            CovarianceType::Full => vec![k, d, d],
            CovarianceType::Tied => vec![d, d],
            CovarianceType::Diag => vec![k, d],
            CovarianceType::Spherical => vec![k],
        }
    }

    /// Human-readable shape, for error messages.
    pub fn shape_doc(self) -> &'static str {
        match self {
            CovarianceType::Full => "shape (n_components, n_features, n_features)",
            CovarianceType::Tied => "shape (n_features, n_features)",
            CovarianceType::Diag => "shape (n_components, n_features)",
            CovarianceType::Spherical => "shape (n_components,)",
        }
    }

    /// Number of free covariance parameters: full `K·D(D+1)/2`, tied `D(D+1)/2`, diag `K·D`,
    /// spherical `K`.
    pub fn n_cov_parameters(self, k: usize, d: usize) -> usize {
        match self {
            CovarianceType::Full => k * d * (d + 1) / 2,
            CovarianceType::Tied => d * (d + 1) / 2,
            CovarianceType::Diag => k * d,
            CovarianceType::Spherical => k,
        }
    }

    /// Width `T'` of the quadratic features `F(x)`.
    pub fn quad_width(self, d: usize) -> usize {
        match self {
            CovarianceType::Full | CovarianceType::Tied => d * (d + 1) / 2,
            CovarianceType::Diag => d,
            CovarianceType::Spherical => 1,
        }
    }

    /// Number of covariance "rows" each restart holds in the batched layout (tied: 1, else K).
    pub fn rows_per_model(self, k: usize) -> usize {
        match self {
            CovarianceType::Tied => 1,
            _ => k,
        }
    }

    fn is_matrix(self) -> bool {
        matches!(self, CovarianceType::Full | CovarianceType::Tied)
    }

    /// The first matrix (0-based) of a full/tied parameter array that is not symmetric.
    pub fn first_asymmetric(self, p: &[f64], k: usize, d: usize) -> Option<usize> {
        if !self.is_matrix() {
            return None;
        }
        let m = if self == CovarianceType::Full { k } else { 1 };
        (0..m).find(|&c| {
            let a = &p[c * d * d..(c + 1) * d * d];
            (0..d).any(|i| {
                (0..i).any(|j| {
                    let (x, y) = (a[i * d + j], a[j * d + i]);
                    (x - y).abs() > 1e-8 * (1.0 + x.abs().max(y.abs()))
                })
            })
        })
    }
}

/// Index tensors that pack/unpack symmetric matrices, built once per fit on its device: full
/// and tied covariances only (`O(D²)` entries); diagonal and spherical ones hold a one-entry
/// placeholder (they never pack), so that their fits stay `O(K·D)` in memory at any width.
#[derive(Clone, Debug)]
pub struct Packing {
    /// Flat `[D·D]` positions of the packed upper triangle, length `D(D+1)/2`.
    pub packed: Tensor<1, Int>,
    /// Packed position of each flat `[D·D]` entry.
    pub unpack: Tensor<1, Int>,
    /// `1` on the diagonal, `2` off it: `Σ_{i≤j} coef_ij P_ij x_i x_j = xᵀPx`.
    pub coef: Tensor<2>,
    /// `packed` on the other devices holding rows (shards), moved there once.
    packed_on: crate::source::PerDevice<Tensor<1, Int>>,
}

impl Packing {
    /// Index tensors for `d` features of covariance type `cov` on `device` in `dtype` (a
    /// one-entry placeholder for diagonal and spherical covariances, which never pack).
    pub fn new(
        cov: CovarianceType,
        d: usize,
        device: &burn::tensor::Device,
        dtype: burn::tensor::DType,
    ) -> Self {
        let d = match cov {
            CovarianceType::Full | CovarianceType::Tied => d,
            CovarianceType::Diag | CovarianceType::Spherical => 1,
        };
        let coef: Vec<f64> = linalg::upper_indices(d)
            .map(|(i, j)| if i == j { 1.0 } else { 2.0 })
            .collect();
        let t = coef.len();
        let packed = linalg::packed_index(d, device);
        Self {
            packed_on: crate::source::PerDevice::new(packed.clone()),
            packed,
            unpack: linalg::unpack_index(d, device),
            coef: tensor_from_f64(coef, [1, t], device, dtype),
        }
    }

    /// `packed` on `device` (a shard's device: moved there once).
    pub fn packed_on(&self, device: &burn::tensor::Device) -> Tensor<1, Int> {
        self.packed_on.on(device)
    }
}

/// The quadratic features `F(x)` of a chunk `x: [n, D]` (see the module table), `[n, T']`.
pub fn quad_features(cov: CovarianceType, x: Tensor<2>, packing: &Packing) -> Tensor<2> {
    let [n, d] = x.dims();
    match cov {
        CovarianceType::Full | CovarianceType::Tied => {
            let idx = packing.packed_on(&x.device());
            let outer = x.clone().unsqueeze_dim::<3>(2) * x.unsqueeze_dim::<3>(1);
            outer.reshape([n, d * d]).select(1, idx)
        }
        CovarianceType::Diag => diagonal_features(false, x),
        CovarianceType::Spherical => diagonal_features(true, x),
    }
}

/// The quadratic features of diagonal (`x²`, `[n, D]`) or `spherical` (`Σ_j x_j²`, `[n, 1]`)
/// covariances, which need no [`Packing`].
pub fn diagonal_features(spherical: bool, x: Tensor<2>) -> Tensor<2> {
    let squares = x.square();
    if spherical {
        squares.sum_dim(1)
    } else {
        squares
    }
}

/// Batched covariances or precision Cholesky factors in the layout of the module table.
#[derive(Clone, Debug)]
pub enum CovTensor {
    /// Full `[B·K, D, D]` or tied `[B, D, D]`.
    Matrices(Tensor<3>),
    /// Diag `[B·K, D]` or spherical `[B·K, 1]`.
    Vectors(Tensor<2>),
}

impl CovTensor {
    /// Builds the batched layout from the concatenated per-model flat arrays of `b` models.
    pub fn from_flat(
        cov: CovarianceType,
        flat: &[f64],
        b: usize,
        k: usize,
        d: usize,
        device: &burn::tensor::Device,
        dtype: burn::tensor::DType,
    ) -> Self {
        Self::shaped(
            cov,
            b * cov.rows_per_model(k),
            d,
            |shape| tensor_from_f64_slice(flat, shape, device, dtype),
            |shape| tensor_from_f64_slice(flat, shape, device, dtype),
        )
    }

    /// As [`from_flat`](Self::from_flat) from [`Values`]: f32 values go to an f32 device
    /// without an f64 copy, and owned ones become the tensor's buffer without any copy.
    pub fn from_values(
        cov: CovarianceType,
        values: Cow<'_, Values>,
        b: usize,
        k: usize,
        d: usize,
        device: &burn::tensor::Device,
        dtype: DType,
    ) -> Self {
        let len = values.len();
        let flat: Tensor<1> = match values {
            Cow::Owned(Values::F32(v)) if dtype == DType::F32 => {
                Tensor::from_data(burn::tensor::TensorData::new(v, [len]), (device, dtype))
            }
            values => values.to_tensor([len], device, dtype),
        };
        Self::shaped(
            cov,
            b * cov.rows_per_model(k),
            d,
            |shape| flat.clone().reshape(shape),
            |shape| flat.clone().reshape(shape),
        )
    }

    /// `rows` matrices `[rows, D, D]` or vectors `[rows, D]` / `[rows, 1]` for `cov`, made by
    /// `matrices` or `vectors` from the shape.
    fn shaped(
        cov: CovarianceType,
        rows: usize,
        d: usize,
        matrices: impl FnOnce([usize; 3]) -> Tensor<3>,
        vectors: impl FnOnce([usize; 2]) -> Tensor<2>,
    ) -> Self {
        match cov {
            CovarianceType::Full | CovarianceType::Tied => {
                CovTensor::Matrices(matrices([rows, d, d]))
            }
            CovarianceType::Diag => CovTensor::Vectors(vectors([rows, d])),
            CovarianceType::Spherical => CovTensor::Vectors(vectors([rows, 1])),
        }
    }

    /// Rows `start..start + len` of the batch (one restart's block).
    pub fn rows(&self, start: usize, len: usize) -> Self {
        match self {
            CovTensor::Matrices(t) => CovTensor::Matrices(t.clone().narrow(0, start, len)),
            CovTensor::Vectors(t) => CovTensor::Vectors(t.clone().narrow(0, start, len)),
        }
    }

    /// The batches of `parts` (all of one variant) one after another.
    pub fn cat(parts: Vec<Self>) -> Self {
        if parts.len() == 1 {
            return parts.into_iter().next().expect("one part");
        }
        let (mut matrices, mut vectors) = (Vec::new(), Vec::new());
        for part in parts {
            match part {
                CovTensor::Matrices(t) => matrices.push(t),
                CovTensor::Vectors(t) => vectors.push(t),
            }
        }
        if vectors.is_empty() {
            CovTensor::Matrices(Tensor::cat(matrices, 0))
        } else {
            CovTensor::Vectors(Tensor::cat(vectors, 0))
        }
    }

    /// Row-major values; model `b`'s block is `[b·param_len, (b+1)·param_len)`.
    pub fn to_flat(self) -> Result<Vec<f64>> {
        match self {
            CovTensor::Matrices(t) => Ok(to_f64(t)?),
            CovTensor::Vectors(t) => Ok(to_f64(t)?),
        }
    }

    /// As [`to_flat`](Self::to_flat), in the tensor's precision: an f32 tensor's values come
    /// back as f32 without a copy ([`Values`]).
    pub fn to_values(self) -> Result<Values> {
        match self {
            CovTensor::Matrices(t) => Values::read(t),
            CovTensor::Vectors(t) => Values::read(t),
        }
    }
}

/// Maps the batch row of a failed factorisation to the error naming its component.
fn ill_defined(cov: CovarianceType, row: usize, k: usize, b: usize) -> GmmError {
    let per = cov.rows_per_model(k);
    let (restart, component) = (row / per, row % per);
    GmmError::IllDefinedCovariance {
        component,
        restart: if b > 1 {
            format!(" (restart {restart})")
        } else {
            String::new()
        },
    }
}

/// Precision Cholesky factors of covariances: full/tied `U = chol(Σ)⁻ᵀ`, diag/spherical
/// `1/√σ²`. Errors name the first component whose covariance is not positive definite.
pub fn precision_cholesky(
    cov: CovarianceType,
    covariances: &CovTensor,
    k: usize,
    b: usize,
) -> Result<CovTensor> {
    match covariances {
        CovTensor::Matrices(c) => {
            let (u, bad) = linalg::precision_cholesky(c.clone())?;
            if let Some(row) = bad {
                return Err(ill_defined(cov, row, k, b));
            }
            Ok(CovTensor::Matrices(u))
        }
        CovTensor::Vectors(v) => {
            let cols = v.dims()[1];
            let values = to_f64(v.clone())?;
            if let Some(i) = values.iter().position(|x| !(x.is_finite() && *x > 0.0)) {
                return Err(ill_defined(cov, i / cols, k, b));
            }
            Ok(CovTensor::Vectors(v.clone().sqrt().recip()))
        }
    }
}

/// Precision Cholesky factors from precisions, as scikit-learn does for `precisions_init`:
/// full/tied the lower factor `chol(P)`, diag/spherical `√p`.
pub fn precision_cholesky_from_precisions(
    cov: CovarianceType,
    precisions: &CovTensor,
    k: usize,
    b: usize,
) -> Result<CovTensor> {
    match precisions {
        CovTensor::Matrices(p) => {
            let l = linalg::cholesky(p.clone())?;
            if let Some(row) = linalg::first_bad_factor(l.clone())? {
                return Err(ill_defined(cov, row, k, b));
            }
            Ok(CovTensor::Matrices(l))
        }
        CovTensor::Vectors(v) => Ok(CovTensor::Vectors(v.clone().sqrt())),
    }
}

/// The E-step's GEMM operand for `b` restarts, `A: [T' + D + 1, B·K]` with
/// `G(x) A = log π_k + log N(x | μ_k, Σ_k)` (module docs). `means: [B·K, D]`,
/// `log_weights: [B·K]`.
pub fn estep_operands(
    cov: CovarianceType,
    prec_chol: &CovTensor,
    means: Tensor<2>,
    log_weights: Tensor<1>,
    k: usize,
    packing: &Packing,
) -> Tensor<2> {
    let [bk, d] = means.dims();
    let b = bk / k;
    let (w, v, half_logdet) = match (cov, prec_chol) {
        (CovarianceType::Full | CovarianceType::Tied, CovTensor::Matrices(u)) => {
            let rows = u.dims()[0];
            let p = u.clone().matmul(u.clone().swap_dims(1, 2)); // [rows, D, D]
            let w = p
                .clone()
                .reshape([rows, d * d])
                .select(1, packing.packed.clone())
                * packing.coef.clone(); // [rows, T]
            let half_logdet = linalg::diagonal(u.clone()).log().sum_dim(1); // [rows, 1]
            if cov == CovarianceType::Full {
                let v = p
                    .matmul(means.clone().unsqueeze_dim::<3>(2))
                    .reshape([bk, d]);
                (w, v, half_logdet)
            } else {
                let t = w.dims()[1];
                let v = means.clone().reshape([b, k, d]).matmul(p).reshape([bk, d]);
                let w = w.unsqueeze_dim::<3>(1).expand([b, k, t]).reshape([bk, t]);
                let half_logdet = half_logdet
                    .unsqueeze_dim::<3>(1)
                    .expand([b, k, 1])
                    .reshape([bk, 1]);
                (w, v, half_logdet)
            }
        }
        (_, CovTensor::Vectors(u)) => {
            let p = u.clone().square(); // [BK, D] or [BK, 1]
            let v = means.clone() * p.clone();
            let half_logdet = if cov == CovarianceType::Spherical {
                u.clone().log().mul_scalar(d as f64)
            } else {
                u.clone().log().sum_dim(1)
            };
            (p, v, half_logdet)
        }
        _ => unreachable!("covariance layout always matches its type"),
    };
    let mahal_const = (means * v.clone()).sum_dim(1); // μᵀPμ, [BK, 1]
    let c = half_logdet - mahal_const.mul_scalar(0.5) + log_weights.unsqueeze_dim::<2>(1)
        - (0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln());
    Tensor::cat(vec![w.mul_scalar(-0.5), v, c], 1).transpose() // [T'+D+1, BK]
}

/// The whitened E-step's operands of `b` restarts (full and tied covariances; see
/// [`crate::form`]): `ℓ_k = c_k − ½‖x U_k − μ_k U_k‖²` with `c_k = log π_k + log det U_k −
/// (D/2) log 2π` (or the given per-component term in place of `log π_k`).
///
/// `U_k` is upper triangular, so the columns are cut into blocks
/// ([`crate::form::triangular_blocks`]) and block `J` of `x U_k` is `x[:, :end_J] U_k[:end_J, J]`:
/// the rows of `U` below a block's end are zero and take no flops.
#[derive(Clone, Debug)]
pub struct Whitening {
    /// Per column block, the precision-Cholesky factors' block side by side.
    pub blocks: Vec<WhiteningBlock>,
    /// `c_k`, `[1, B·K]`.
    pub constants: Tensor<2>,
    /// The means `μ_k`, `[B·K, D]`: the M-step's scatter accumulates around them.
    pub shift: Tensor<2>,
    /// Components K.
    pub k: usize,
    /// Whether one factor is shared by a restart's components (tied).
    pub tied: bool,
}

/// One column block `[start, end)` of the whitening: `x[:, :end] F` is the block of
/// `x U_r` for every factor `r` (tied), `[1, x[:, :end]] F` the block of `(x − μ_k) U_k` for
/// every component (full: the centres are folded into the GEMM as a first row).
#[derive(Clone, Debug)]
pub struct WhiteningBlock {
    /// The columns of `x` the block needs, `end` (the rows of `U` below are zero in these
    /// columns).
    pub depth: usize,
    /// The factors' rows `0..end` and columns `[start, end)` side by side, `[end, R·w]`
    /// (`R = B` tied; `w = end − start`); full: `[1 + end, B·K·w]`, the first row
    /// `−μ_k U_k` in these columns.
    pub factors: Tensor<2>,
    /// `μ_k U_k` in these columns, `[B·K, w]`.
    pub centres: Tensor<2>,
}

impl Whitening {
    /// The precision-Cholesky factors `[R, D, D]` the blocks were made from, exactly: the
    /// blocks hold every entry on and above the diagonal, and those below are zero.
    pub fn factors(&self) -> Tensor<3> {
        let [bk, d] = self.shift.dims();
        let r = if self.tied { bk / self.k } else { bk };
        let parts = self
            .blocks
            .iter()
            .map(|b| {
                let end = b.depth;
                let w = b.factors.dims()[1] / r;
                let f = if self.tied {
                    b.factors.clone()
                } else {
                    b.factors.clone().narrow(0, 1, end)
                };
                let f = f.reshape([end, r, w]).swap_dims(0, 1);
                if end < d {
                    let below =
                        mixburn_backend::host::zeros([r, d - end, w], &f.device(), f.dtype());
                    Tensor::cat(vec![f, below], 1)
                } else {
                    f
                }
            })
            .collect();
        Tensor::cat(parts, 2)
    }

    /// The same operands on `device` (a shard's).
    pub fn to_device(&self, device: &burn::tensor::Device) -> Self {
        use crate::source::on_device;
        Self {
            blocks: self
                .blocks
                .iter()
                .map(|b| WhiteningBlock {
                    depth: b.depth,
                    factors: on_device(&b.factors, device),
                    centres: on_device(&b.centres, device),
                })
                .collect(),
            constants: on_device(&self.constants, device),
            shift: on_device(&self.shift, device),
            k: self.k,
            tied: self.tied,
        }
    }
}

/// [`Whitening`] operands from precision-Cholesky factors `[R, D, D]`, means `[B·K, D]` and
/// the per-component term `log_weights: [B·K]`, in the column blocks of
/// [`crate::form::triangular_blocks`].
pub fn whitened_operands(
    cov: CovarianceType,
    prec_chol: &CovTensor,
    means: Tensor<2>,
    log_weights: Tensor<1>,
    k: usize,
) -> Whitening {
    let d = means.dims()[1];
    whitened_operands_in_blocks(
        cov,
        prec_chol,
        means,
        log_weights,
        k,
        &crate::form::triangular_blocks(d),
    )
}

/// As [`whitened_operands`], with the given column blocks (contiguous, covering `0..D`).
pub fn whitened_operands_in_blocks(
    cov: CovarianceType,
    prec_chol: &CovTensor,
    means: Tensor<2>,
    log_weights: Tensor<1>,
    k: usize,
    columns: &[std::ops::Range<usize>],
) -> Whitening {
    let [bk, d] = means.dims();
    let b = bk / k;
    let CovTensor::Matrices(u) = prec_chol else {
        unreachable!("the whitened form is only used for full and tied covariances")
    };
    let r = u.dims()[0];
    let tied = cov == CovarianceType::Tied;
    let half_logdet = linalg::diagonal(u.clone()).log().sum_dim(1).reshape([r]); // log det U
    let (centres, half_logdet) = if tied {
        let c = means
            .clone()
            .reshape([b, k, d])
            .matmul(u.clone())
            .reshape([bk, d]);
        let h = half_logdet.reshape([b, 1]).expand([b, k]).reshape([bk]);
        (c, h)
    } else {
        let c = means
            .clone()
            .unsqueeze_dim::<3>(1)
            .matmul(u.clone())
            .reshape([bk, d]);
        (c, half_logdet)
    };
    let constants = (half_logdet + log_weights)
        .sub_scalar(0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln())
        .reshape([1, bk]);
    let blocks = columns
        .iter()
        .map(|cols| {
            let w = cols.len();
            let block = centres.clone().slice([0..bk, cols.clone()]);
            let factors = u
                .clone()
                .slice([0..r, 0..cols.end, cols.clone()])
                .swap_dims(0, 1)
                .reshape([cols.end, r * w]);
            let factors = if tied {
                factors
            } else {
                // One factor per component: `[1, x] [−μ_k U_k; U_k]` is `(x − μ_k) U_k`.
                Tensor::cat(vec![block.clone().reshape([1, bk * w]).neg(), factors], 0)
            };
            WhiteningBlock {
                depth: cols.end,
                factors,
                centres: block,
            }
        })
        .collect();
    Whitening {
        blocks,
        constants,
        shift: means,
        k,
        tied,
    }
}

/// Relative round-off floor of the raw-moment variance `E[x²] − μ²`: variances below
/// `ROUNDOFF · eps · E[x²]` are indistinguishable from zero and are set to zero (before
/// `reg_covar` is added), as scikit-learn's centred formula would give exactly.
pub const ROUNDOFF: f64 = 16.0;

/// Zeroes the rows and columns of `raw: [M, D, D]` whose diagonal is below the round-off floor
/// of the second moments `second: [M, D, D]`.
fn denoise_matrices(raw: Tensor<3>, second: Tensor<3>, eps: f64) -> Tensor<3> {
    let floor = linalg::diagonal(second).mul_scalar(ROUNDOFF * eps);
    let keep = linalg::diagonal(raw.clone())
        .greater(floor)
        .float()
        .cast(raw.dtype());
    raw * (keep.clone().unsqueeze_dim::<3>(2) * keep.unsqueeze_dim::<3>(1))
}

/// Zeroes the entries of `raw` below the round-off floor of `second` (same shape).
fn denoise_vectors(raw: Tensor<2>, second: Tensor<2>, eps: f64) -> Tensor<2> {
    let keep = raw
        .clone()
        .greater(second.mul_scalar(ROUNDOFF * eps))
        .float()
        .cast(raw.dtype());
    raw * keep
}

/// Means and covariances from summed moments: `nk: [B·K]` (already floored by `10·eps`),
/// `s1 = Σ r x: [B·K, D]`, `s2 = Σ r F(x): [B·K, T']`.
///
/// full `Σ_k = S2_k/n_k − μ_k μ_kᵀ + reg·I`; tied `Σ = (Σ_k S2_k − Σ_k n_k μ_k μ_kᵀ)/Σ_k n_k + reg·I`;
/// diag `σ²_k = s2_k/n_k − μ_k² + reg`; spherical `σ²_k = (s2_k/n_k − ‖μ_k‖²)/D + reg`.
/// Variances below the round-off floor ([`ROUNDOFF`]) count as zero, so a collapsed
/// component is singular unless `reg_covar` rescues it, exactly as in scikit-learn.
#[allow(clippy::too_many_arguments)]
pub fn covariances_from_moments(
    cov: CovarianceType,
    nk: Tensor<1>,
    s1: Tensor<2>,
    s2: Tensor<2>,
    k: usize,
    reg_covar: f64,
    eps: f64,
    packing: &Packing,
) -> (Tensor<2>, CovTensor) {
    let [bk, d] = s1.dims();
    let b = bk / k;
    let nk2 = nk.clone().unsqueeze_dim::<2>(1); // [BK, 1]
    let means = s1 / nk2.clone();
    let device = means.device();
    // `reg·I`, built only where the covariances are matrices (O(D²)).
    let reg_eye = || {
        Tensor::<2>::eye(d, &device)
            .cast(means.dtype())
            .unsqueeze_dim::<3>(0)
            .mul_scalar(reg_covar)
    };
    let covs = match cov {
        CovarianceType::Full => {
            let second = (s2 / nk2)
                .select(1, packing.unpack.clone())
                .reshape([bk, d, d]);
            let outer = means.clone().unsqueeze_dim::<3>(2) * means.clone().unsqueeze_dim::<3>(1);
            CovTensor::Matrices(denoise_matrices(second.clone() - outer, second, eps) + reg_eye())
        }
        CovarianceType::Tied => {
            let t = s2.dims()[1];
            let total = s2.reshape([b, k, t]).sum_dim(1).reshape([b, t]);
            let mass = nk.clone().reshape([b, k]).sum_dim(1).reshape([b, 1, 1]);
            let second = total.select(1, packing.unpack.clone()).reshape([b, d, d]) / mass.clone();
            let m3 = means.clone().reshape([b, k, d]);
            let weighted = m3.clone() * nk.reshape([b, k, 1]);
            let between = weighted.swap_dims(1, 2).matmul(m3) / mass; // Σ_k n_k μ_k μ_kᵀ / Σ n_k
            CovTensor::Matrices(denoise_matrices(second.clone() - between, second, eps) + reg_eye())
        }
        CovarianceType::Diag => {
            let second = s2 / nk2;
            let raw = second.clone() - means.clone().square();
            CovTensor::Vectors(denoise_vectors(raw, second, eps) + reg_covar)
        }
        CovarianceType::Spherical => {
            let second = s2 / nk2;
            let raw = second.clone() - means.clone().square().sum_dim(1);
            CovTensor::Vectors(denoise_vectors(raw, second, eps).div_scalar(d as f64) + reg_covar)
        }
    };
    (means, covs)
}

/// A block `(rows, cols)` of a batch of matrices, computed on demand.
type BlockOf = Box<dyn Fn(Range<usize>, Range<usize>) -> Tensor<3>>;

/// Means and covariances (full or tied) from scatters around a per-component shift `s_k`:
/// `nk: [B·K]` (floored by `10·eps`), `shift: [B·K, D]`, `s1 = Σ_n r_nk (x_n − s_k): [B·K, D]`,
/// `s2 = Σ_n r_nk (x_n − s_k)(x_n − s_k)ᵀ` as its blocks on and above the diagonal, `M = B·K`
/// matrices (full) or `M = B`, each summed over a restart's components (tied).
///
/// With `δ_k = s1_k / n_k`: `μ_k = s_k + δ_k`; full `Σ_k = S2_k/n_k − δ_k δ_kᵀ + reg·I`;
/// tied `Σ = S2/Σ_k n_k − Σ_k n_k δ_k δ_kᵀ/Σ_k n_k + reg·I`. The passes' statistics are
/// centred ([`crate::stats`]: `s_k` is the component's mean, `s1` zero), so nothing is
/// subtracted and f32 keeps the covariance as a per-component centred formula does, however
/// far the mean moved; the same round-off floor as [`covariances_from_moments`] applies.
///
/// The covariances are written block row by block row into one `[M, D, D]` tensor, each
/// block row of `s2` freed once it is written (with its mirror image below the diagonal): at
/// network-feature width this is the M-step's peak, and it holds the scatter's blocks and
/// one `M·D²` buffer rather than full-size copies of each step of the formula.
#[allow(clippy::too_many_arguments)]
pub fn covariances_from_scatter(
    cov: CovarianceType,
    nk: Tensor<1>,
    shift: Tensor<2>,
    s1: Tensor<2>,
    s2: UpperBlocks,
    k: usize,
    reg_covar: f64,
    eps: f64,
) -> (Tensor<2>, CovTensor) {
    let [bk, d] = s1.dims();
    let b = bk / k;
    let offset = s1 / nk.clone().unsqueeze_dim::<2>(1); // δ_k, [BK, D]
    let means = shift + offset.clone();
    let (device, dtype) = (means.device(), means.dtype());
    // The mass each matrix is divided by, [M, 1, 1], and the block (rows, cols) of the term
    // subtracted from S2/mass: δ δᵀ (full) or Σ_k n_k δ_k δ_kᵀ / Σ_k n_k (tied).
    let (mass, between): (Tensor<3>, BlockOf) = match cov {
        CovarianceType::Full => {
            let o = offset.reshape([bk, d, 1]);
            (
                nk.reshape([bk, 1, 1]),
                Box::new(move |r, c| {
                    let rows = o.clone().slice([0..bk, r, 0..1]);
                    let cols = o.clone().slice([0..bk, c, 0..1]).swap_dims(1, 2);
                    rows * cols
                }),
            )
        }
        CovarianceType::Tied => {
            let mass = nk.clone().reshape([b, k]).sum_dim(1).reshape([b, 1, 1]);
            let o3 = offset.reshape([b, k, d]);
            let weighted = o3.clone() * nk.reshape([b, k, 1]);
            let m = mass.clone();
            (
                mass,
                Box::new(move |r, c| {
                    let lead = weighted.clone().slice([0..b, 0..k, r]).swap_dims(1, 2);
                    lead.matmul(o3.clone().slice([0..b, 0..k, c])) / m.clone()
                }),
            )
        }
        _ => unreachable!("the whitened form is only used for full and tied covariances"),
    };
    let m = mass.dims()[0];
    // The diagonal blocks of `raw = S2/mass − between` first: their diagonals and those of
    // `S2/mass` decide which variances are below the round-off floor (`denoise_matrices`).
    let mut raw_diag: Vec<Tensor<3>> = Vec::with_capacity(s2.rows.len());
    let (mut floor, mut variance) = (Vec::new(), Vec::new());
    for (cols, row) in s2.columns.iter().zip(&s2.rows) {
        let w = cols.len();
        let upper = row.clone().slice([0..m, 0..w, 0..w]);
        let second = linalg::symmetric_from_upper(upper) / mass.clone();
        // Mirrored again: tied's `between` block is a GEMM, symmetric only to rounding.
        let raw =
            linalg::symmetric_from_upper(second.clone() - between(cols.clone(), cols.clone()));
        floor.push(linalg::diagonal(second).mul_scalar(ROUNDOFF * eps));
        variance.push(linalg::diagonal(raw.clone()));
        raw_diag.push(raw);
    }
    let keep = Tensor::cat(variance, 1)
        .greater(Tensor::cat(floor, 1))
        .float()
        .cast(dtype); // [M, D]
    let blocks = s2
        .columns
        .into_iter()
        .zip(s2.rows)
        .zip(raw_diag)
        .map(|((cols, row), raw)| {
            let (w, start) = (cols.len(), cols.start);
            let keep_rows = keep
                .clone()
                .slice([0..m, cols.clone()])
                .unsqueeze_dim::<3>(2);
            let reg = Tensor::<2>::eye(w, &device)
                .cast(dtype)
                .unsqueeze_dim::<3>(0)
                .mul_scalar(reg_covar);
            let diag = raw * (keep_rows.clone() * keep_rows.clone().swap_dims(1, 2)) + reg;
            let right = (cols.end < d).then(|| {
                let rest = cols.end..d;
                let off = row.slice([0..m, 0..w, w..d - start]) / mass.clone()
                    - between(cols.clone(), rest.clone());
                let keep_cols = keep.clone().slice([0..m, rest]).unsqueeze_dim::<3>(1);
                off * (keep_rows * keep_cols)
            });
            (cols, diag, right)
        });
    let out = linalg::symmetric_from_block_rows(m, d, &device, dtype, blocks);
    (means, CovTensor::Matrices(out))
}
