//! Gaussian mixtures at network-feature width (issue 11), on every backend this build has:
//! the quadratic and whitened forms of the E-step agree (EM and the variational mixture, full
//! and tied; f64 to 1e-10, f32 to 1e-4 relative); scikit-learn parity at D = 64 and 256; an
//! f32 fit at D = 512 that the quadratic form loses and the whitened form completes, reaching
//! scikit-learn's f32 log-likelihood; chunk rows follow the memory budget without changing
//! results; a budget too small for one row names the smallest that works; the M-step's
//! covariances, written from the scatter's blocks, are the formula on the full scatter.

use mixburn_backend::host::{tensor_from_f64, to_f64};
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::covariance::{covariances_from_scatter, whitened_operands_in_blocks, CovTensor};
use mixburn_gmm::estep::whitened_log_density;
use mixburn_gmm::form::{blocks_of, cost, PassShape};
use mixburn_gmm::stats::{Moments, ShiftedScatter, SufficientStats, UpperBlocks};
use mixburn_gmm::Mixture;
use mixburn_gmm::{
    fit, fit_bayesian, BayesianGaussianMixtureConfig, CovarianceType, EstepForm, FitData,
    GaussianMixture, GaussianMixtureConfig, GmmError, InitMethod, Precision,
};
use mixburn_tests::{fixture, flat, targets, wide_data, Report};

const FORMS: [EstepForm; 2] = [EstepForm::Quadratic, EstepForm::Whitened];

fn tensor(values: Vec<f64>, n: usize, d: usize, device: &Device, p: Precision) -> Tensor<2> {
    tensor_from_f64(values, [n, d], device, p.dtype())
}

/// A reproducible stream of values uniform in [−½, ½) (xorshift64 from `seed`).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut rng = seed;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

/// Tolerance of products and sums formed in two orders (blocked or not, gathered or not).
fn product_tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-12,
        Precision::F32 => 1e-5,
    }
}

/// Tolerance of the two forms' agreement.
fn form_tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-10,
        Precision::F32 => 1e-4,
    }
}

/// Weights, means, covariances and precision factors with the components sorted by their
/// means' first coordinate (tied: one shared matrix).
fn canonical(m: &GaussianMixture, d: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let k = m.n_components;
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&i, &j| m.means()[i * d].total_cmp(&m.means()[j * d]));
    let per = |v: &[f64], len: usize| -> Vec<f64> {
        if v.len() == k * len {
            order
                .iter()
                .flat_map(|&c| v[c * len..(c + 1) * len].to_vec())
                .collect()
        } else {
            v.to_vec()
        }
    };
    (
        per(m.weights(), 1),
        per(m.means(), d),
        per(&m.covariances().to_f64(), d * d),
        per(&m.precisions_cholesky().to_f64(), d * d),
    )
}

#[test]
fn blocked_triangular_products_equal_the_full_gemms() {
    // The whitened form skips the blocks below the diagonal from D = 256 on; here the same
    // code runs at D = 11 in 1 (the plain GEMMs), 2, 3 and 11 column blocks.
    let (d, k, b, n) = (11, 3, 2, 37);
    let mut next = uniform(0x9e37_79b9_7f4a_7c15);
    let x: Vec<f64> = (0..n * d).map(|_| 3.0 * next()).collect();
    let means: Vec<f64> = (0..b * k * d).map(|_| next()).collect();
    let log_weights: Vec<f64> = (0..b * k).map(|_| -1.0 + 0.1 * next()).collect();
    // Upper-triangular factors with positive diagonals: B·K (full) or B (tied).
    let factor = |count: usize, next: &mut dyn FnMut() -> f64| -> Vec<f64> {
        (0..count * d * d)
            .map(|i| {
                let (r, c) = (i % (d * d) / d, i % d);
                match r.cmp(&c) {
                    std::cmp::Ordering::Less => next(),
                    std::cmp::Ordering::Equal => 1.0 + next().abs(),
                    std::cmp::Ordering::Greater => 0.0,
                }
            })
            .collect()
    };
    let full_u = factor(b * k, &mut next);
    let tied_u = factor(b, &mut next);
    let resp: Vec<f64> = (0..b * k * n).map(|_| 0.5 + next()).collect();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tol = product_tol(precision);
        let t = |v: &[f64]| tensor_from_f64(v.to_vec(), [v.len()], &device, precision.dtype());
        for (cov, u, r) in [
            (CovarianceType::Full, &full_u, b * k),
            (CovarianceType::Tied, &tied_u, b),
        ] {
            let prec = CovTensor::Matrices(t(u).reshape([r, d, d]));
            let density = |m: usize| {
                let w = whitened_operands_in_blocks(
                    cov,
                    &prec,
                    t(&means).reshape([b * k, d]),
                    t(&log_weights).reshape([b * k]),
                    k,
                    &blocks_of(d, m),
                );
                to_f64(whitened_log_density(&w, t(&x).reshape([n, d]))).unwrap()
            };
            let one = density(1);
            for m in [2, 3, d] {
                report.close(
                    &format!("{backend}/{precision}/{cov} log-densities, {m} blocks"),
                    &density(m),
                    &one,
                    tol,
                );
            }
        }
        // The scatter's upper blocks, mirrored, are the full product.
        let z = t(&x).reshape([1, n, d]).repeat_dim(0, b * k);
        let a = z.clone() * t(&resp).reshape([b * k, n, 1]);
        let scatter = |m: usize| {
            to_f64(
                UpperBlocks::product(a.clone(), z.clone(), &blocks_of(d, m))
                    .to_symmetric()
                    .reshape([b * k * d * d]),
            )
            .unwrap()
        };
        let full = to_f64(
            a.clone()
                .swap_dims(1, 2)
                .matmul(z.clone())
                .reshape([b * k * d * d]),
        )
        .unwrap();
        for m in [1, 2, 3, d] {
            report.close(
                &format!("{backend}/{precision} scatter, {m} blocks"),
                &scatter(m),
                &full,
                tol,
            );
        }
    }
    report.finish();
}

#[test]
fn covariances_written_from_the_scatter_blocks_are_the_formula_on_the_full_scatter() {
    // The M-step writes each block row of the scatter (and its mirror image) into the
    // covariances and frees it; here D = 13 in 1, 2, 3 and 13 column blocks, against the
    // formula on the full scatter on the host in f64. Coordinate 0 equals its shift in every
    // row: its variance is zero, so its row and column are zero and its diagonal `reg_covar`.
    let (d, k, b, n) = (13, 3, 2, 41);
    let mut next = uniform(0x2545_f491_4f6c_dd1d);
    let shift: Vec<f64> = (0..b * k * d)
        .map(|i| if i % d == 0 { 0.75 } else { next() })
        .collect();
    let x: Vec<f64> = (0..n * d)
        .map(|i| if i % d == 0 { 0.75 } else { 2.0 * next() })
        .collect();
    let resp: Vec<f64> = (0..n * b * k).map(|_| 0.5 + next()).collect(); // [n, B·K]
    let (reg, eps) = (1e-3, 1e-9);
    // z_nk = x_n − s_k, the scatter and first moments per component, on the host.
    let z = |j: usize, i: usize| -> Vec<f64> {
        (0..d).map(|c| x[i * d + c] - shift[j * d + c]).collect()
    };
    let mut nk = vec![0.0; b * k];
    let mut s1 = vec![0.0; b * k * d];
    let mut s2 = vec![0.0; b * k * d * d];
    for j in 0..b * k {
        for i in 0..n {
            let (r, zi) = (resp[i * b * k + j], z(j, i));
            nk[j] += r;
            for p in 0..d {
                s1[j * d + p] += r * zi[p];
                for q in 0..d {
                    s2[(j * d + p) * d + q] += r * zi[p] * zi[q];
                }
            }
        }
    }
    let delta = |j: usize, p: usize| s1[j * d + p] / nk[j];
    let reg_at = |p: usize, q: usize| if p == q { reg } else { 0.0 };
    let want_full: Vec<f64> = (0..b * k * d * d)
        .map(|i| {
            let (j, p, q) = (i / (d * d), i % (d * d) / d, i % d);
            let zero = p == 0 || q == 0;
            let v = s2[i] / nk[j] - delta(j, p) * delta(j, q);
            (if zero { 0.0 } else { v }) + reg_at(p, q)
        })
        .collect();
    let want_tied: Vec<f64> = (0..b * d * d)
        .map(|i| {
            let (r, p, q) = (i / (d * d), i % (d * d) / d, i % d);
            let comps = r * k..(r + 1) * k;
            let mass: f64 = nk[comps.clone()].iter().sum();
            let second: f64 = comps.clone().map(|j| s2[(j * d + p) * d + q]).sum::<f64>() / mass;
            let between: f64 = comps
                .map(|j| nk[j] * delta(j, p) * delta(j, q))
                .sum::<f64>()
                / mass;
            let zero = p == 0 || q == 0;
            (if zero { 0.0 } else { second - between }) + reg_at(p, q)
        })
        .collect();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tol = product_tol(precision);
        let t = |v: &[f64], [rows, cols]: [usize; 2]| {
            tensor(v.to_vec(), rows, cols, &device, precision)
        };
        let zt = t(&x, [n, d]).reshape([1, n, d]).repeat_dim(0, b * k)
            - t(&shift, [b * k, d]).reshape([b * k, 1, d]);
        let rt = t(&resp, [n, b * k]).transpose().reshape([b * k, n, 1]);
        for (cov, want) in [
            (CovarianceType::Full, &want_full),
            (CovarianceType::Tied, &want_tied),
        ] {
            for m in [1, 2, 3, d] {
                let (a, zz) = match cov {
                    CovarianceType::Full => (zt.clone() * rt.clone(), zt.clone()),
                    _ => (
                        (zt.clone() * rt.clone()).reshape([b, k * n, d]),
                        zt.clone().reshape([b, k * n, d]),
                    ),
                };
                let blocks = UpperBlocks::product(a, zz, &blocks_of(d, m));
                let (_, covs) = covariances_from_scatter(
                    cov,
                    t(&nk, [1, b * k]).reshape([b * k]),
                    t(&shift, [b * k, d]),
                    t(&s1, [b * k, d]),
                    blocks,
                    k,
                    reg,
                    eps,
                );
                let got = covs.to_flat().unwrap();
                let name = format!("{backend}/{precision}/{cov} covariances, {m} blocks");
                report.close(&name, &got, want, tol);
                let mirrored = (0..got.len()).all(|i| {
                    let (j, p, q) = (i / (d * d), i % (d * d) / d, i % d);
                    got[i] == got[(j * d + q) * d + p]
                });
                report.check(&format!("{name}: exactly symmetric"), mirrored);
                let stored = |v: f64| match precision {
                    Precision::F32 => v as f32 as f64,
                    Precision::F64 => v,
                };
                let zeroed = (0..got.len()).all(|i| {
                    let (p, q) = (i % (d * d) / d, i % d);
                    (p != 0 && q != 0) || got[i] == stored(reg_at(p, q))
                });
                report.check(&format!("{name}: the zero-variance coordinate"), zeroed);
            }
        }
    }
    report.finish();
}

#[test]
fn moments_of_the_gathered_nonzero_rows_equal_the_dense_moments_also_added_in_place() {
    // Responsibilities with most entries exactly zero (as at network-feature width), one
    // component with none at all: the sparse scatter skips only zero terms.
    let (d, k, b, n) = (9, 3, 2, 41);
    let x: Vec<f64> = (0..n * d)
        .map(|i| ((i * 37 % 101) as f64) / 17.0 - 2.0)
        .collect();
    let shift: Vec<f64> = (0..b * k * d)
        .map(|i| ((i * 13 % 29) as f64) / 11.0)
        .collect();
    let resp: Vec<f64> = (0..n * b * k)
        .map(|i| {
            let (row, col) = (i / (b * k), i % (b * k));
            if col == 4 || (row + col) % 3 != 0 {
                0.0
            } else {
                0.25 + (i % 7) as f64 / 10.0
            }
        })
        .collect();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tol = product_tol(precision);
        let t = |v: &[f64], shape: [usize; 2]| {
            tensor_from_f64(v.to_vec(), shape, &device, precision.dtype())
        };
        for tied in [false, true] {
            // The moments; with `into`, added to the dense scatter of the same chunk.
            let stats_of = |how: ShiftedScatter, into| {
                SufficientStats::from_shifted_chunk(
                    how,
                    t(&resp, [n, b * k]),
                    t(&x, [n, d]),
                    &t(&shift, [b * k, d]),
                    tied,
                    k,
                    t(&vec![0.0; n * b], [n, b]),
                    into,
                )
                .unwrap()
            };
            let moments = |how: ShiftedScatter, add_to_dense: bool| {
                let into = add_to_dense.then(|| {
                    let mut dense = stats_of(ShiftedScatter::Dense, None);
                    dense.take_scatter().unwrap()
                });
                let stats = stats_of(how, into);
                let Moments::Shifted { s1, s2, .. } = stats.moments else {
                    panic!("shifted moments expected");
                };
                let m = s2.rows[0].dims()[0];
                let mut out = to_f64(s1).unwrap();
                out.extend(to_f64(s2.to_symmetric().reshape([m * d * d])).unwrap());
                out.extend(to_f64(stats.nk).unwrap());
                (out, b * k * d, m * d * d)
            };
            let (dense, s1_len, s2_len) = moments(ShiftedScatter::Dense, false);
            // The same with the scatter counted twice.
            let twice: Vec<f64> = dense
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if (s1_len..s1_len + s2_len).contains(&i) {
                        2.0 * v
                    } else {
                        *v
                    }
                })
                .collect();
            let name = format!("{backend}/{precision} tied={tied}");
            for (how, added, expected) in [
                (ShiftedScatter::Sparse, false, &dense),
                (ShiftedScatter::Auto, false, &dense),
                (ShiftedScatter::Dense, true, &twice),
                (ShiftedScatter::Sparse, true, &twice),
            ] {
                let into = if added {
                    " added into an accumulator"
                } else {
                    ""
                };
                report.close(
                    &format!("{name} {how:?}{into}"),
                    &moments(how, added).0,
                    expected,
                    tol,
                );
            }
        }
    }
    report.finish();
}

#[test]
fn quadratic_and_whitened_forms_agree_for_em() {
    let (n, d, k) = (400, 6, 3);
    let values = wide_data(n, d, k, 1.0);
    let mut report = Report::default();
    for cov in [CovarianceType::Full, CovarianceType::Tied] {
        // From k-means (two batched restarts) and from given parameters.
        let kmeans = GaussianMixtureConfig::new(k)
            .with_covariance_type(cov)
            .with_tol(0.0)
            .with_max_iter(6)
            .with_n_init(2)
            .with_seed(3);
        let given = GaussianMixtureConfig::new(k)
            .with_covariance_type(cov)
            .with_tol(0.0)
            .with_max_iter(6)
            .with_weights_init(vec![1.0 / k as f64; k])
            .with_means_init(values[..k * d].to_vec())
            .with_precisions_init(match cov {
                CovarianceType::Full => (0..k * d * d)
                    .map(|i| f64::from(u8::from(i % (d * d) % (d + 1) == 0)))
                    .collect(),
                _ => (0..d * d)
                    .map(|i| f64::from(u8::from(i % (d + 1) == 0)))
                    .collect(),
            });
        let random = kmeans.clone().with_init_params(InitMethod::RandomFromData);
        for (start, config) in [("kmeans", kmeans), ("given", given), ("random", random)] {
            for (backend, precision, device) in targets() {
                let tag = format!("{cov}/{start}/{backend}/{precision}");
                let tol = form_tol(precision);
                let x = tensor(values.clone(), n, d, &device, precision);
                let [a, b] = FORMS.map(|form| {
                    fit(&config.clone().with_estep_form(form), &x)
                        .unwrap_or_else(|e| panic!("{tag} {form}: {e}"))
                });
                // Batched restarts that reach the same optimum with permuted labels tie up to
                // round-off, so either may win: compare components in a canonical order.
                let (ca, cb) = (canonical(&a, d), canonical(&b, d));
                for (what, x, y) in [
                    ("weights", &cb.0, &ca.0),
                    ("means", &cb.1, &ca.1),
                    ("covariances", &cb.2, &ca.2),
                ] {
                    report.close(&format!("{tag} {what}"), x, y, tol);
                }
                report.close(
                    &format!("{tag} precisions_cholesky"),
                    &cb.3,
                    &ca.3,
                    tol * 10.0,
                );
                report.close(
                    &format!("{tag} lower_bounds"),
                    &b.lower_bounds,
                    &a.lower_bounds,
                    tol,
                );
                // Scoring in either form gives the same per-row values.
                let score =
                    |form| to_f64(a.score_samples_with(&x, 1 << 30, form).unwrap()).unwrap();
                report.close(
                    &format!("{tag} score_samples"),
                    &score(EstepForm::Whitened),
                    &score(EstepForm::Quadratic),
                    tol,
                );
            }
        }
    }
    report.finish();
}

#[test]
fn quadratic_and_whitened_forms_agree_for_the_variational_mixture() {
    let (n, d, k) = (300, 5, 4);
    let values = wide_data(n, d, k, 1.0);
    let mut report = Report::default();
    for cov in [CovarianceType::Full, CovarianceType::Tied] {
        let config = BayesianGaussianMixtureConfig::new(k)
            .with_covariance_type(cov)
            .with_tol(0.0)
            .with_max_iter(6)
            .with_n_init(2)
            .with_seed(1);
        for (backend, precision, device) in targets() {
            let tag = format!("bayesian {cov}/{backend}/{precision}");
            let tol = form_tol(precision);
            let x = tensor(values.clone(), n, d, &device, precision);
            let [a, b] = FORMS.map(|form| {
                fit_bayesian(&config.clone().with_estep_form(form), &x)
                    .unwrap_or_else(|e| panic!("{tag} {form}: {e}"))
            });
            report.close(&format!("{tag} weights"), b.weights(), a.weights(), tol);
            report.close(&format!("{tag} means"), b.means(), a.means(), tol);
            report.close(
                &format!("{tag} covariances"),
                &b.covariances().to_f64(),
                &a.covariances().to_f64(),
                tol,
            );
            report.close(
                &format!("{tag} lower_bounds"),
                &b.lower_bounds,
                &a.lower_bounds,
                tol,
            );
        }
    }
    report.finish();
}

/// The EM configuration of a `width_parity_d*` fixture case.
fn parity_config(fx: &serde_json::Value, cov: CovarianceType) -> GaussianMixtureConfig {
    let (k, d) = (
        fx["n_components"].as_u64().unwrap() as usize,
        fx["d"].as_u64().unwrap() as usize,
    );
    let eye: Vec<f64> = (0..d * d)
        .map(|i| f64::from(u8::from(i % (d + 1) == 0)))
        .collect();
    let precisions = match cov {
        CovarianceType::Full => eye.repeat(k),
        _ => eye,
    };
    GaussianMixtureConfig::new(k)
        .with_covariance_type(cov)
        .with_tol(0.0)
        .with_reg_covar(fx["reg_covar"].as_f64().unwrap())
        .with_max_iter(fx["max_iter"].as_u64().unwrap() as usize)
        .with_weights_init(vec![1.0 / k as f64; k])
        .with_means_init(flat(&fx["means_init"]))
        .with_precisions_init(precisions)
}

/// Diagonals and leading 8×8 blocks of `m` (K or 1 matrices of D×D), as in the fixture.
fn summary(m: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mats = m.len() / (d * d);
    let diag = (0..mats)
        .flat_map(|c| (0..d).map(move |i| m[c * d * d + i * d + i]))
        .collect();
    let block = (0..mats)
        .flat_map(|c| (0..8).flat_map(move |i| (0..8).map(move |j| m[c * d * d + i * d + j])))
        .collect();
    (diag, block)
}

fn check_wide_parity(name: &str, forms: &[EstepForm]) {
    let fx = fixture(name);
    let (n, d, k) = (
        fx["n"].as_u64().unwrap() as usize,
        fx["d"].as_u64().unwrap() as usize,
        fx["n_components"].as_u64().unwrap() as usize,
    );
    let values = wide_data(n, d, k, fx["centre_scale"].as_f64().unwrap());
    let mut report = Report::default();
    for cov in [CovarianceType::Full, CovarianceType::Tied] {
        let exp = &fx["cases"][cov.to_string()];
        for (backend, precision, device) in targets() {
            let x = tensor(values.clone(), n, d, &device, precision);
            // f32 against a float64 reference: the covariance entries carry f32's rounding
            // of second moments (relative 1e-4 of the largest entry is the f32 tolerance of
            // tests/parity.rs).
            let tol = match precision {
                Precision::F64 => 1e-8,
                Precision::F32 => 1e-3,
            };
            for &form in forms {
                let tag = format!("d{d} {cov}/{form}/{backend}/{precision}");
                let m = fit(&parity_config(&fx, cov).with_estep_form(form), &x)
                    .unwrap_or_else(|e| panic!("{tag}: {e}"));
                report.close(
                    &format!("{tag} weights"),
                    m.weights(),
                    &flat(&exp["weights"]),
                    tol,
                );
                report.close(
                    &format!("{tag} means"),
                    m.means(),
                    &flat(&exp["means"]),
                    tol,
                );
                let (diag, block) = summary(&m.covariances().to_f64(), d);
                report.close(
                    &format!("{tag} cov diag"),
                    &diag,
                    &flat(&exp["covariance_diag"]),
                    tol,
                );
                report.close(
                    &format!("{tag} cov block"),
                    &block,
                    &flat(&exp["covariance_block"]),
                    tol,
                );
                let (pdiag, _) = summary(&m.precisions_cholesky().to_f64(), d);
                report.close(
                    &format!("{tag} precision factor diag"),
                    &pdiag,
                    &flat(&exp["precisions_cholesky_diag"]),
                    tol,
                );
                report.close(
                    &format!("{tag} lower_bounds"),
                    &m.lower_bounds,
                    &flat(&exp["lower_bounds"]),
                    rel_ll_tol(precision),
                );
                let ll = to_f64(m.score_samples_with(&x, 1 << 30, form).unwrap()).unwrap();
                report.close(
                    &format!("{tag} score_samples"),
                    &ll,
                    &flat(&exp["score_samples"]),
                    rel_ll_tol(precision),
                );
                report.close(
                    &format!("{tag} bic"),
                    &[m.bic(&x).unwrap()],
                    &[exp["bic"].as_f64().unwrap()],
                    rel_ll_tol(precision),
                );
            }
        }
    }
    report.finish();
}

/// Log-likelihoods: 1e-8 (f64), 1e-4 (f32) relative.
fn rel_ll_tol(p: Precision) -> f64 {
    match p {
        Precision::F64 => 1e-8,
        Precision::F32 => 1e-4,
    }
}

#[test]
fn parity_with_sklearn_at_d64_in_both_forms() {
    check_wide_parity("width_parity_d64", &FORMS);
}

#[test]
fn parity_with_sklearn_at_d256_in_the_form_chosen_by_cost() {
    // Auto chooses the whitened form here; the quadratic form's agreement with it is
    // `quadratic_and_whitened_forms_agree_*` and the D = 64 case (at D = 256 its features
    // cost 33 000 values a row, too slow for a test on every backend).
    check_wide_parity("width_parity_d256", &[EstepForm::Auto]);
}

/// The configuration of `width_f32_d512.json`: 8 iterations from two data rows with
/// precisions `1/reg_covar · I` (the start `random_from_data` gives).
#[test]
fn f32_fit_at_d512_reaches_sklearn_f32_log_likelihood() {
    let fx = fixture("width_f32_d512");
    let exp = &fx["expected"];
    let (n, d, k) = (
        fx["n"].as_u64().unwrap() as usize,
        fx["d"].as_u64().unwrap() as usize,
        fx["n_components"].as_u64().unwrap() as usize,
    );
    let values = wide_data(n, d, k, fx["centre_scale"].as_f64().unwrap());
    let config = point_start_config(&fx, &values, CovarianceType::Full);
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        if precision != Precision::F32 {
            continue;
        }
        let x = tensor(values.clone(), n, d, &device, precision);
        // The form chosen by cost: whitened at this width.
        let plan = config.plan(n, d, 4).unwrap();
        report.check(
            &format!("auto chose {} at D = 512", plan.form),
            plan.form == EstepForm::Whitened,
        );
        {
            let form = EstepForm::Auto;
            let tag = format!("d512 {form}/{backend}/{precision}");
            let m = fit(&config.clone().with_estep_form(form), &x)
                .unwrap_or_else(|e| panic!("{tag}: {e}"));
            report.close(
                &format!("{tag} lower_bound"),
                &[m.lower_bound],
                &[exp["lower_bound"].as_f64().unwrap()],
                1e-4,
            );
            report.close(
                &format!("{tag} score"),
                &[m.score(&x).unwrap()],
                &[exp["score"].as_f64().unwrap()],
                1e-4,
            );
            report.close(
                &format!("{tag} weights"),
                m.weights(),
                &flat(&exp["weights"]),
                1e-4,
            );
            report.close(
                &format!("{tag} means"),
                m.means(),
                &flat(&exp["means"]),
                1e-4,
            );
        }
    }
    report.finish();
}

#[test]
fn f32_quadratic_form_loses_the_d512_covariance_that_the_whitened_form_keeps() {
    // The reproduction of issue 11's f32 failure at D = 512, on the flex backend: from the
    // same start, two iterations of the quadratic form (moments around the data mean) miss
    // scikit-learn's f32 log-likelihood by far more than 1e-4, the whitened form (scatter
    // around each component's previous mean) reaches it.
    let fx = fixture("width_f32_d512");
    let (n, d, k) = (
        fx["n"].as_u64().unwrap() as usize,
        fx["d"].as_u64().unwrap() as usize,
        fx["n_components"].as_u64().unwrap() as usize,
    );
    let values = wide_data(n, d, k, fx["centre_scale"].as_f64().unwrap());
    let device = mixburn_gmm::Backend::Flex
        .device_for(Precision::F32)
        .unwrap();
    let x = tensor(values.clone(), n, d, &device, Precision::F32);
    let config = point_start_config(&fx, &values, CovarianceType::Full).with_max_iter(2);
    let expected = flat(&fx["expected"]["lower_bounds"])[1];
    let rel = |lb: f64| ((lb - expected) / expected).abs();
    match fit(&config.clone().with_estep_form(EstepForm::Quadratic), &x) {
        Err(e) => assert!(
            matches!(e, GmmError::IllDefinedCovariance { .. }),
            "unexpected error {e}"
        ),
        Ok(m) => assert!(
            rel(m.lower_bound) > 1e-4,
            "the quadratic form now reaches scikit-learn's f32 log-likelihood ({} vs \
             {expected}): update this test",
            m.lower_bound
        ),
    }
    let whitened = fit(&config.with_estep_form(EstepForm::Whitened), &x).unwrap();
    assert!(
        rel(whitened.lower_bound) <= 1e-4,
        "{} vs {expected}",
        whitened.lower_bound
    );
}

#[test]
fn chunk_rows_shrink_with_the_budget_and_results_do_not_change() {
    let (n, d, k) = (600, 16, 3);
    let values = wide_data(n, d, k, 1.0);
    let mut report = Report::default();
    for cov in [CovarianceType::Full, CovarianceType::Diag] {
        for form in FORMS {
            let base = GaussianMixtureConfig::new(k)
                .with_covariance_type(cov)
                .with_estep_form(form)
                .with_tol(0.0)
                .with_max_iter(4)
                .with_n_threads(1)
                .with_feature_cache_bytes(0)
                .with_seed(0);
            // Budgets for 600 (all), 150 and 37 rows of f64 per chunk.
            let shape = PassShape {
                cov,
                n,
                d,
                k,
                b: 1,
                workers: 1,
                value_bytes: 8,
            };
            let c = cost(form, &shape);
            let budgets =
                [1usize << 30, 150, 37].map(
                    |rows: usize| {
                        if rows > n {
                            rows
                        } else {
                            c.budget_for(rows)
                        }
                    },
                );
            let rows: Vec<usize> = budgets
                .iter()
                .map(|&b| {
                    base.clone()
                        .with_max_memory_bytes(b)
                        .plan(n, d, 8)
                        .unwrap()
                        .chunk_rows
                })
                .collect();
            report.check(
                &format!("{cov}/{form}: chunk rows {rows:?} are not [600, 150, 37]"),
                rows == [600, 150, 37],
            );
            for (backend, precision, device) in targets() {
                let tag = format!("{cov}/{form}/{backend}/{precision}");
                let x = tensor(values.clone(), n, d, &device, precision);
                let fits: Vec<_> = budgets
                    .iter()
                    .map(|&b| {
                        fit(&base.clone().with_max_memory_bytes(b), &x)
                            .unwrap_or_else(|e| panic!("{tag} budget {b}: {e}"))
                    })
                    .collect();
                for (m, b) in fits.iter().zip(budgets).skip(1) {
                    let tol = form_tol(precision);
                    report.close(&format!("{tag} {b} means"), m.means(), fits[0].means(), tol);
                    report.close(
                        &format!("{tag} {b} covariances"),
                        &m.covariances().to_f64(),
                        &fits[0].covariances().to_f64(),
                        tol,
                    );
                    report.close(
                        &format!("{tag} {b} lower_bounds"),
                        &m.lower_bounds,
                        &fits[0].lower_bounds,
                        tol,
                    );
                }
            }
        }
    }
    report.finish();
}

#[test]
fn a_budget_too_small_for_one_row_names_the_smallest_that_works() {
    let (n, d, k) = (50, 8, 2);
    let values = wide_data(n, d, k, 1.0);
    for (backend, precision, device) in targets() {
        let x = tensor(values.clone(), n, d, &device, precision);
        let config = GaussianMixtureConfig::new(k)
            .with_seed(0)
            .with_max_iter(3)
            .with_max_memory_bytes(1000);
        let err = fit(&config, &x).unwrap_err();
        let GmmError::MemoryBudget { smallest, .. } = err else {
            panic!("{backend}/{precision}: expected a budget error, got {err}");
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("smallest budget that works is {smallest} bytes")),
            "{text}"
        );
        // That budget works (one row per chunk).
        fit(&config.clone().with_max_memory_bytes(smallest), &x)
            .unwrap_or_else(|e| panic!("{backend}/{precision} at {smallest} bytes: {e}"));
    }
    // Through the CLI: --max-memory 1KiB on fit.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("x.csv");
    let csv: String = values
        .chunks(d)
        .map(|r| {
            r.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    std::fs::write(&input, csv).unwrap();
    let out = dir.path().join("m.json");
    let err = mixburn::run_args([
        "mixburn",
        "fit",
        "--input",
        input.to_str().unwrap(),
        "--components",
        "2",
        "--output",
        out.to_str().unwrap(),
        "--max-memory",
        "1KiB",
    ])
    .unwrap_err();
    assert!(err.contains("smallest budget that works"), "{err}");
    assert!(!out.exists(), "nothing written on failure");
}

#[test]
fn whitening_blocks_give_back_the_factors_they_were_made_from() {
    // The EM loop holds the factors only as the whitened operand's blocks during a pass, and a
    // failed pass takes them back from there for its checkpoint: the round trip is exact.
    let (k, d) = (3, 7);
    for (backend, precision, device) in targets() {
        for cov in [CovarianceType::Full, CovarianceType::Tied] {
            let r = if cov == CovarianceType::Tied {
                2
            } else {
                2 * k
            };
            let upper: Vec<f64> = (0..r * d * d)
                .map(|i| {
                    let (row, col) = (i % (d * d) / d, i % d);
                    if row <= col {
                        // Values that f32 holds exactly.
                        1.0 + ((i * 37) % 11) as f64 / 8.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let u = tensor_from_f64(upper.clone(), [r, d, d], &device, precision.dtype());
            let means = tensor(wide_data(2 * k, d, k, 1.0), 2 * k, d, &device, precision);
            let log_w = tensor_from_f64(vec![0.0; 2 * k], [2 * k], &device, precision.dtype());
            for columns in [blocks_of(d, 1), vec![0..3, 3..5, 5..d]] {
                let w = whitened_operands_in_blocks(
                    cov,
                    &CovTensor::Matrices(u.clone()),
                    means.clone(),
                    log_w.clone(),
                    k,
                    &columns,
                );
                let back = to_f64(w.factors()).unwrap();
                assert_eq!(back, upper, "{backend}/{precision}/{cov}/{columns:?}");
            }
        }
    }
}

/// A tensor's rows whose `rows` panics once, on a pass's worker thread from its `fail_at`-th
/// call on, as a pass does when its worker is lost.
struct LosesAWorker {
    x: Tensor<2>,
    calls: std::sync::atomic::AtomicUsize,
    fail_at: usize,
    lost: std::sync::atomic::AtomicBool,
}

impl mixburn_gmm::RowSource for LosesAWorker {
    fn dims(&self) -> [usize; 2] {
        self.x.dims()
    }
    fn device(&self) -> Device {
        self.x.device()
    }
    fn dtype(&self) -> mixburn_gmm::burn::tensor::DType {
        self.x.dtype()
    }
    fn rows(&self, start: usize, len: usize) -> mixburn_gmm::Result<Tensor<2>> {
        use std::sync::atomic::Ordering::SeqCst;
        let call = self.calls.fetch_add(1, SeqCst);
        // The pass's workers are unnamed threads (the test's own thread is named).
        let on_worker = std::thread::current().name().is_none();
        if call >= self.fail_at && on_worker && !self.lost.swap(true, SeqCst) {
            panic!("the worker was lost");
        }
        Ok(self.x.clone().narrow(0, start, len))
    }
    fn select(&self, idx: &[usize]) -> mixburn_gmm::Result<Tensor<2>> {
        Ok(mixburn_gmm::source::select_rows(&self.x, idx))
    }
}

#[test]
fn a_whitened_fit_that_loses_a_worker_resumes_from_its_checkpoint_to_the_same_result() {
    // During a pass the whitened form holds the precision factors only in its operand; the
    // checkpoint of a failed pass must still carry them, so the resumed fit is the fit.
    let (n, d, k) = (400, 6, 3);
    let values = wide_data(n, d, k, 1.0);
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        for cov in [CovarianceType::Full, CovarianceType::Tied] {
            let config = GaussianMixtureConfig::new(k)
                .with_covariance_type(cov)
                .with_tol(0.0)
                .with_max_iter(12)
                .with_n_init(2)
                .with_seed(5)
                .with_chunk_size(50)
                .with_n_threads(2)
                .with_estep_form(EstepForm::Whitened);
            let x = tensor(values.clone(), n, d, &device, precision);
            let flaky = |fail_at| LosesAWorker {
                x: x.clone(),
                calls: Default::default(),
                fail_at,
                lost: Default::default(),
            };
            // The uninterrupted fit, counting its reads: the last passes read 8 chunks each.
            let counted = flaky(usize::MAX);
            let whole = mixburn_gmm::fit_resuming(&config, FitData::new(&counted), None)
                .unwrap_or_else(|(e, _)| panic!("{e}"));
            let reads = counted.calls.into_inner();
            let flaky = flaky(reads - 4 * 8);
            let (err, checkpoint) = mixburn_gmm::fit_resuming(&config, FitData::new(&flaky), None)
                .expect_err("the worker is lost");
            let tag = format!("{backend}/{precision}/{cov}");
            assert!(matches!(err, GmmError::Worker { .. }), "{tag}: {err}");
            let checkpoint = checkpoint.expect("a checkpoint");
            assert!(checkpoint.iterations() > 0, "{tag}");
            let resumed = mixburn_gmm::fit_resuming(&config, FitData::new(&x), Some(checkpoint))
                .unwrap_or_else(|(e, _)| panic!("{tag}: {e}"));
            // The same fit, read through another source (a resident tensor): round-off apart.
            let tol = form_tol(precision);
            report.close(&tag, &resumed.lower_bounds, &whole.lower_bounds, tol);
            report.close(&tag, resumed.means(), whole.means(), tol);
            for (a, b) in [
                (resumed.covariances(), whole.covariances()),
                (resumed.precisions_cholesky(), whole.precisions_cholesky()),
            ] {
                report.close(&tag, &a.to_f64(), &b.to_f64(), tol);
            }
        }
    }
    report.finish();
}

/// The configuration of a point-start fixture (`width_f32_d512`, `width_f32_point_start_*`)
/// for `cov`: scikit-learn's k-means++ / random-from-data start (one row per component,
/// uniform weights, precisions `precision_scale = 1/reg_covar`), given as explicit initial
/// parameters, `max_iter` iterations with `tol = 0`.
fn point_start_config(
    fx: &serde_json::Value,
    values: &[f64],
    cov: CovarianceType,
) -> GaussianMixtureConfig {
    let (d, k) = (
        fx["d"].as_u64().unwrap() as usize,
        fx["n_components"].as_u64().unwrap() as usize,
    );
    let scale = fx["precision_scale"].as_f64().unwrap();
    let means: Vec<f64> = flat(&fx["mean_rows"])
        .iter()
        .flat_map(|&r| values[r as usize * d..(r as usize + 1) * d].to_vec())
        .collect();
    let eye = |m: usize| -> Vec<f64> {
        (0..m * d * d)
            .map(|i| {
                if i % (d * d) % (d + 1) == 0 {
                    scale
                } else {
                    0.0
                }
            })
            .collect()
    };
    let precisions = match cov {
        CovarianceType::Full => eye(k),
        CovarianceType::Tied => eye(1),
        CovarianceType::Diag => vec![scale; k * d],
        CovarianceType::Spherical => vec![scale; k],
    };
    GaussianMixtureConfig::new(k)
        .with_covariance_type(cov)
        .with_tol(0.0)
        .with_reg_covar(fx["reg_covar"].as_f64().unwrap())
        .with_max_iter(fx["max_iter"].as_u64().unwrap() as usize)
        .with_weights_init(vec![1.0 / k as f64; k])
        .with_means_init(means)
        .with_precisions_init(precisions)
}

/// Issue 27: f32 fits started at single rows (scikit-learn's `k-means++` and
/// `random_from_data` starts), where the first M-step moves every mean by its cluster's whole
/// spread, reach scikit-learn's f32 log-likelihood to 1e-4 for every covariance type, in both
/// E-step forms, at D = 64 and 512.
#[test]
fn f32_fits_started_at_single_rows_reach_sklearn_for_every_covariance_type() {
    let mut report = Report::default();
    for name in ["width_f32_point_start_d64", "width_f32_point_start_d512"] {
        let fx = fixture(name);
        let (n, d, clusters) = (
            fx["n"].as_u64().unwrap() as usize,
            fx["d"].as_u64().unwrap() as usize,
            fx["clusters"].as_u64().unwrap() as usize,
        );
        let values = wide_data(n, d, clusters, fx["centre_scale"].as_f64().unwrap());
        for (backend, precision, device) in targets() {
            if precision != Precision::F32 {
                continue;
            }
            let x = tensor(values.clone(), n, d, &device, precision);
            for &cov in CovarianceType::ALL {
                let exp = &fx["expected"][cov.to_string()];
                let forms: &[EstepForm] = match cov {
                    CovarianceType::Full | CovarianceType::Tied if d <= 64 => &FORMS,
                    _ => &[EstepForm::Auto],
                };
                for &form in forms {
                    let tag = format!("{name} {cov} {form}/{backend}/{precision}");
                    let config = point_start_config(&fx, &values, cov).with_estep_form(form);
                    let m = match fit(&config, &x) {
                        Ok(m) => m,
                        Err(e) => {
                            report.check(&format!("{tag}: {e}"), false);
                            continue;
                        }
                    };
                    report.close(
                        &format!("{tag} lower_bound"),
                        &[m.lower_bound],
                        &[exp["lower_bound"].as_f64().unwrap()],
                        1e-4,
                    );
                    report.close(
                        &format!("{tag} score"),
                        &[m.score(&x).unwrap()],
                        &[exp["score"].as_f64().unwrap()],
                        1e-4,
                    );
                    report.close(
                        &format!("{tag} weights"),
                        m.weights(),
                        &flat(&exp["weights"]),
                        1e-3,
                    );
                }
            }
        }
    }
    report.finish();
}

/// Issue 27: the shifted statistics of a component of a few rows far from the shift (a mean
/// that moves by far more than the component's spread) give its covariance as the centred
/// f64 formula does, to f32 round-off of the covariance itself, however the rows are split
/// into chunks (each chunk centred on its own mean, the parts merged by Chan's update); a
/// component of one row gets exactly `reg_covar·I`.
#[test]
fn shifted_statistics_of_a_far_moved_component_keep_its_covariance_in_f32() {
    let (d, far, reg) = (16usize, 100.0, 1e-6);
    // Component 0: three rows near `far·1`, a small spread; component 1: one row.
    let mut next = uniform(7);
    let rows: Vec<Vec<f64>> = (0..4)
        .map(|i| {
            (0..d)
                .map(|j| {
                    let v = if i < 3 {
                        far + next() * 0.1 * (1 + j % 3) as f64
                    } else {
                        -far + j as f64
                    };
                    v as f32 as f64 // the values the f32 fit holds
                })
                .collect()
        })
        .collect();
    // f64 reference of component 0: the centred scatter of its three rows.
    let mean: Vec<f64> = (0..d)
        .map(|j| rows[..3].iter().map(|r| r[j]).sum::<f64>() / 3.0)
        .collect();
    let reference: Vec<f64> = (0..d * d)
        .map(|ij| {
            let (a, b) = (ij / d, ij % d);
            rows[..3]
                .iter()
                .map(|r| (r[a] - mean[a]) * (r[b] - mean[b]))
                .sum::<f64>()
                / 3.0
        })
        .collect();
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (backend, precision, device) in targets() {
        if precision != Precision::F32 {
            continue;
        }
        // One chunk of all rows, and one chunk per row (every merge a Chan update).
        for bounds in [&[0, 4][..], &[0, 1, 2, 3, 4]] {
            let tag = format!("{backend}/{precision} chunks at {bounds:?}");
            let shift = tensor(vec![0.0; 2 * d], 2, d, &device, precision);
            let mut acc: Option<SufficientStats> = None;
            for part in bounds.windows(2).map(|w| w[0]..w[1]) {
                let x: Vec<f64> = rows[part.clone()].iter().flatten().copied().collect();
                let resp: Vec<f64> = part
                    .clone()
                    .flat_map(|i| if i < 3 { [1.0, 0.0] } else { [0.0, 1.0] })
                    .collect();
                let len = part.len();
                let stats = SufficientStats::from_shifted_chunk(
                    ShiftedScatter::Auto,
                    tensor_from_f64(resp, [len, 2], &device, precision.dtype()),
                    tensor(x, len, d, &device, precision),
                    &shift,
                    false,
                    2,
                    Tensor::zeros([len, 1], (&device, precision.dtype())),
                    acc.as_mut().and_then(SufficientStats::take_scatter),
                )
                .unwrap();
                acc = Some(SufficientStats::accumulate(acc, stats));
            }
            let stats = acc.unwrap();
            let Moments::Shifted { shift, s1, s2 } = stats.moments else {
                panic!("{tag}: shifted moments expected");
            };
            let (means, covs) = covariances_from_scatter(
                CovarianceType::Full,
                stats.nk,
                shift,
                s1,
                s2,
                2,
                reg,
                precision.eps(),
            );
            let means = to_f64(means).unwrap();
            let covs = match covs {
                CovTensor::Matrices(m) => to_f64(m).unwrap(),
                CovTensor::Vectors(_) => panic!("{tag}: matrices expected"),
            };
            for j in 0..d {
                assert!((means[j] - mean[j]).abs() <= 1e-6 * far, "{tag}: mean {j}");
            }
            for ij in 0..d * d {
                let want = reference[ij] + if ij % (d + 1) == 0 { reg } else { 0.0 };
                assert!(
                    (covs[ij] - want).abs() <= 1e-3 * scale,
                    "{tag}: covariance entry {ij}: {} vs {want} (scale {scale:.3e})",
                    covs[ij]
                );
            }
            for ij in 0..d * d {
                let want = if ij % (d + 1) == 0 { reg } else { 0.0 };
                assert_eq!(
                    covs[d * d + ij],
                    want as f32 as f64,
                    "{tag}: one-row component entry {ij}"
                );
            }
        }
    }
}
