//! Checks of fitted parameters, run at the end of every fit and on every load, so that a
//! model read from a file is held to what a fit produces: sizes within limits (checked before
//! anything is allocated from them), shapes consistent, weights a probability vector, means
//! finite, covariances symmetric with positive diagonals, precision-Cholesky factors finite,
//! upper triangular with positive diagonals and consistent with the covariances.
//!
//! Also the one check that a computed result is finite before it is written
//! ([`ensure_finite`]).

use crate::covariance::CovarianceType;
use crate::error::{GmmError, Result};
use crate::params::Params;
use crate::values::Values;
use mixburn_backend::backend::Precision;

/// The most values one parameter array may hold (2⁴⁰, 8 TiB of f64): larger sizes in a file
/// are refused before any arithmetic or allocation uses them.
pub const MAX_PARAM_VALUES: usize = 1 << 40;

/// Relative tolerance on `Σ π_k = 1`.
const WEIGHT_SUM_TOL: f64 = 1e-6;

fn bad(reason: String) -> GmmError {
    GmmError::ModelFormat(reason)
}

/// `a · b`, refused when it overflows or exceeds [`MAX_PARAM_VALUES`]; `what` names it.
pub fn checked_size(what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .filter(|&n| n <= MAX_PARAM_VALUES)
        .ok_or_else(|| {
            bad(format!(
                "{what} = {} is too large (over {MAX_PARAM_VALUES} values); the file is corrupt or not a mixburn model",
                factors
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(" × ")
            ))
        })
}

/// Checks `n_components ≥ 1`, `n_features ≥ 1` and that the arrays of this covariance type
/// have a size within limits; returns the covariance array's length.
pub fn check_sizes(cov: CovarianceType, k: usize, d: usize) -> Result<usize> {
    if k == 0 || d == 0 {
        return Err(bad(format!(
            "n_components = {k} and n_features = {d}; both must be at least 1"
        )));
    }
    checked_size("n_components × n_features", &[k, d])?;
    match cov {
        CovarianceType::Full => checked_size("n_components × n_features²", &[k, d, d]),
        CovarianceType::Tied => checked_size("n_features²", &[d, d]),
        CovarianceType::Diag => checked_size("n_components × n_features", &[k, d]),
        CovarianceType::Spherical => Ok(k),
    }
}

/// Errors when `values` (named `what`) has not `want` entries.
pub fn check_len(what: &str, values: &[f64], want: usize) -> Result<()> {
    check_count(what, values.len(), want)
}

/// As [`check_len`] for `n` values.
fn check_count(what: &str, n: usize, want: usize) -> Result<()> {
    if n != want {
        return Err(bad(format!("{what} has {n} values, expected {want}")));
    }
    Ok(())
}

/// Errors on the first non-finite value of `values` (named `what`).
pub fn check_finite_values(what: &str, values: &[f64]) -> Result<()> {
    check_finite_iter(what, values.iter().copied())
}

/// As [`check_finite_values`] for values read in order.
fn check_finite_iter(what: &str, values: impl Iterator<Item = f64>) -> Result<()> {
    match values.enumerate().find(|(_, v)| !v.is_finite()) {
        Some((i, v)) => Err(bad(format!(
            "{what} has a non-finite value ({v}) at index {i}"
        ))),
        None => Ok(()),
    }
}

/// Weights: `k` finite, non-negative values summing to 1 (relative tolerance 1e-6).
pub fn check_weights(weights: &[f64], k: usize) -> Result<()> {
    check_len("weights", weights, k)?;
    check_finite_values("weights", weights)?;
    if let Some(i) = weights.iter().position(|&w| w < 0.0) {
        return Err(bad(format!("weight {i} is negative ({})", weights[i])));
    }
    let sum: f64 = weights.iter().sum();
    if (sum - 1.0).abs() > WEIGHT_SUM_TOL {
        return Err(bad(format!(
            "the weights sum to {sum:.6}, not 1; mixture weights are probabilities"
        )));
    }
    Ok(())
}

/// A symmetric matrix `a` (`d × d`) with positive diagonal and `|a_ij| ≤ √(a_ii a_jj)`
/// (necessary for positive definiteness); `what` names it.
/// The symmetry tolerance is relative: `1e-6` of `√(a_ii a_jj)` in f64, `1e-4` in f32.
pub fn check_covariance_matrix<T: Copy + Into<f64>>(
    what: &str,
    a: &[T],
    d: usize,
    precision: Precision,
) -> Result<()> {
    let a = |i: usize| -> f64 { a[i].into() };
    let sym_tol = match precision {
        Precision::F32 => 1e-4,
        Precision::F64 => 1e-6,
    };
    for i in 0..d {
        let aii = a(i * d + i);
        if aii <= 0.0 {
            return Err(bad(format!(
                "{what} has a non-positive diagonal entry ({aii}) at ({i}, {i})"
            )));
        }
    }
    for i in 0..d {
        for j in 0..i {
            let (x, y) = (a(i * d + j), a(j * d + i));
            let scale = (a(i * d + i) * a(j * d + j)).sqrt();
            if (x - y).abs() > sym_tol * scale {
                return Err(bad(format!(
                    "{what} is not symmetric: ({i}, {j}) = {x} but ({j}, {i}) = {y}"
                )));
            }
            if x.abs() > scale * (1.0 + 1e-6) {
                return Err(bad(format!(
                    "{what} is not positive definite: |({i}, {j})| = {} exceeds √(({i},{i})·({j},{j})) = {scale}",
                    x.abs()
                )));
            }
        }
    }
    Ok(())
}

/// An upper-triangular precision-Cholesky factor `u` (`d × d`) with positive diagonal that
/// whitens the covariance `cov`: `Uᵀ Σ U v ≈ v` for fixed probe vectors `v`, within a
/// tolerance that scales with the condition number, `64·D·eps·‖Σ‖_F·‖U‖_F²` (at least
/// `κ(Σ)·D·eps` times a constant; a factor scaled by any `s ≠ 1` misses it by `|s² − 1|`).
/// Cost `O(D²)` per probe, on the host.
pub fn check_precision_factor<U: Copy + Into<f64>, S: Copy + Into<f64>>(
    what: &str,
    u: &[U],
    cov: &[S],
    d: usize,
    precision: Precision,
) -> Result<()> {
    let (u_all, cov_all) = (u, cov);
    let u = |i: usize| -> f64 { u_all[i].into() };
    let cov = |i: usize| -> f64 { cov_all[i].into() };
    for i in 0..d {
        let uii = u(i * d + i);
        if uii.is_nan() || uii <= 0.0 {
            return Err(bad(format!(
                "{what} has a non-positive diagonal entry ({uii}) at ({i}, {i}); the factor is not invertible"
            )));
        }
        if let Some(j) = (0..i).find(|&j| u(i * d + j) != 0.0) {
            return Err(bad(format!(
                "{what} is not upper triangular: ({i}, {j}) = {}",
                u(i * d + j)
            )));
        }
    }
    let norm2 = |a: &dyn Fn(usize) -> f64| (0..d * d).map(|i| a(i) * a(i)).sum::<f64>();
    let (u2, c2) = (norm2(&u), norm2(&cov));
    if !u2.is_finite() || !c2.is_finite() {
        return Err(bad(format!(
            "{what} or its covariance is too large: its squared norm overflows"
        )));
    }
    let tol = 64.0 * d as f64 * precision.eps() * c2.sqrt() * u2;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..2 {
        let v: Vec<f64> = (0..d)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if state >> 63 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        // y = U v, z = Σ y, w = Uᵀ z.
        let y: Vec<f64> = (0..d)
            .map(|i| (i..d).map(|j| u(i * d + j) * v[j]).sum())
            .collect();
        let z: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|j| cov(i * d + j) * y[j]).sum())
            .collect();
        let mut w = vec![0.0; d];
        for (i, zi) in z.iter().enumerate() {
            for (j, wj) in w.iter_mut().enumerate().skip(i) {
                *wj += u(i * d + j) * zi;
            }
        }
        let err = (w
            .iter()
            .zip(&v)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            / d as f64)
            .sqrt();
        if err.is_nan() || err > tol.max(1e-12) {
            return Err(bad(format!(
                "{what} does not match the covariance: ‖Uᵀ Σ U v − v‖/‖v‖ = {err:e} (tolerance {tol:e}); the factor is not the Cholesky factor of the covariance's inverse"
            )));
        }
    }
    Ok(())
}

/// Checks one mixture's parameters (module docs) for `k` components of `d` features.
pub fn check_mixture(
    cov: CovarianceType,
    k: usize,
    d: usize,
    p: &Params,
    precision: Precision,
) -> Result<()> {
    let len = check_sizes(cov, k, d)?;
    check_weights(&p.weights, k)?;
    check_len("means", &p.means, k * d)?;
    check_finite_values("means", &p.means)?;
    check_count("covariances", p.covariances.len(), len)?;
    check_finite_iter("covariances", p.covariances.iter())?;
    check_count("precisions_cholesky", p.precisions_cholesky.len(), len)?;
    check_finite_iter("precisions_cholesky", p.precisions_cholesky.iter())?;
    match cov {
        CovarianceType::Full | CovarianceType::Tied => {
            // One matrix at a time, read in its own type: an f32 model is not copied.
            for c in 0..len / (d * d) {
                let r = c * d * d..(c + 1) * d * d;
                let name = |what: &str| match cov {
                    CovarianceType::Tied => format!("the tied {what}"),
                    _ => format!("the {what} of component {c}"),
                };
                let names = (name("covariance"), name("precision-Cholesky factor"));
                match (&p.covariances, &p.precisions_cholesky) {
                    (Values::F32(s), Values::F32(u)) => {
                        pair(&names, &s[r.clone()], &u[r], d, precision)
                    }
                    (Values::F64(s), Values::F64(u)) => {
                        pair(&names, &s[r.clone()], &u[r], d, precision)
                    }
                    (Values::F32(s), Values::F64(u)) => {
                        pair(&names, &s[r.clone()], &u[r], d, precision)
                    }
                    (Values::F64(s), Values::F32(u)) => {
                        pair(&names, &s[r.clone()], &u[r], d, precision)
                    }
                }?;
            }
        }
        CovarianceType::Diag | CovarianceType::Spherical => {
            let tol = 1e3 * precision.eps();
            for (i, (s, u)) in p
                .covariances
                .iter()
                .zip(p.precisions_cholesky.iter())
                .enumerate()
            {
                if s.is_nan() || s <= 0.0 {
                    return Err(bad(format!("covariance value {i} is not positive ({s})")));
                }
                if u.is_nan() || u <= 0.0 {
                    return Err(bad(format!(
                        "precision-Cholesky value {i} is not positive ({u}); the factor is not invertible"
                    )));
                }
                let dev = (u * u * s - 1.0).abs();
                if dev.is_nan() || dev > tol {
                    return Err(bad(format!(
                        "precision-Cholesky value {i} ({u}) does not match its covariance ({s}): u²·σ² = {}, expected 1",
                        u * u * s
                    )));
                }
            }
        }
    }
    Ok(())
}

/// [`check_covariance_matrix`] and [`check_precision_factor`] of one matrix and its factor,
/// `names` theirs.
fn pair<S: Copy + Into<f64>, U: Copy + Into<f64>>(
    names: &(String, String),
    sigma: &[S],
    u: &[U],
    d: usize,
    precision: Precision,
) -> Result<()> {
    check_covariance_matrix(&names.0, sigma, d, precision)?;
    check_precision_factor(&names.1, u, sigma, d, precision)
}

/// Errors when a computed result is not finite: such a value is never written as output.
/// `what` names the result (e.g. "per-sample log-likelihoods").
pub fn ensure_finite(values: &[f64], what: &str) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(GmmError::NonFiniteResult {
            what: what.to_string(),
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd() -> (Vec<f64>, Vec<f64>) {
        // Σ = [[4, 2], [2, 3]]: L = [[2, 0], [1, √2]], U = L⁻ᵀ.
        let s2 = 2f64.sqrt();
        let cov = vec![4.0, 2.0, 2.0, 3.0];
        let u = vec![0.5, -0.5 / s2, 0.0, 1.0 / s2];
        (cov, u)
    }

    #[test]
    fn a_consistent_factor_passes_and_scaled_or_lower_ones_fail() {
        let (cov, u) = spd();
        check_precision_factor("f", &u, &cov, 2, Precision::F64).unwrap();
        let scaled: Vec<f64> = u.iter().map(|v| v * 1.01).collect();
        assert!(check_precision_factor("f", &scaled, &cov, 2, Precision::F32).is_err());
        let mut lower = u.clone();
        lower[2] = 0.1;
        assert!(check_precision_factor("f", &lower, &cov, 2, Precision::F64)
            .unwrap_err()
            .to_string()
            .contains("upper triangular"));
        let huge: Vec<f64> = u.iter().map(|v| v * 1e300).collect();
        assert!(check_precision_factor("f", &huge, &cov, 2, Precision::F64)
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn sizes_that_overflow_are_refused_before_any_arithmetic() {
        assert!(check_sizes(CovarianceType::Full, 1, 1 << 32).is_err());
        assert!(check_sizes(CovarianceType::Diag, 1 << 62, 4).is_err());
        assert!(check_sizes(CovarianceType::Spherical, 1 << 62, 1 << 62).is_err());
        assert!(check_sizes(CovarianceType::Full, 0, 3).is_err());
        assert_eq!(check_sizes(CovarianceType::Tied, 5, 3).unwrap(), 9);
    }

    #[test]
    fn non_finite_results_name_their_position() {
        ensure_finite(&[1.0, 2.0], "scores").unwrap();
        let err = ensure_finite(&[1.0, f64::NAN], "scores").unwrap_err();
        assert!(err.to_string().contains("index 1"), "{err}");
    }
}
