//! Cross-crate tests of the GMM prior layer (`mixburn-prior`):
//! - densities and KL terms against a brute-force f64 host reference (plain loops) on random
//!   parameters, including a component of weight 1e-30, a log-variance below the floor and a
//!   latent far from every component, on every target (1e-10 in f64, 1e-4 in f32);
//! - autodiff gradients (flex f64) of `Σ log p(z)` and of VaDE's `Σ KL` against central finite
//!   differences;
//! - seeded sampling: moments within sampling error, reproducibility;
//! - `from_gmm` against `GaussianMixture::score_samples`, and its shape errors;
//! - save / `load_checked` round trip and shape errors.

use mixburn_gmm::Mixture;
use std::f64::consts::PI;

use mixburn_backend::host::{tensor_from_f64, to_f64, to_i64};
use mixburn_gmm::burn::module::Module;
use mixburn_gmm::burn::tensor::{Device, Tensor};
use mixburn_gmm::{fit, Backend, CovarianceType, GaussianMixtureConfig, Precision};
use mixburn_prior::{GmmPrior, GmmPriorConfig, PriorError};
use mixburn_tests::{targets, Report};

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers (SplitMix64 + Box–Muller), so the tests need no RNG crate.

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
    fn normals(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| scale * self.normal()).collect()
    }
    fn uniforms(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| lo + (hi - lo) * self.uniform()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Brute-force f64 reference: plain loops over samples, components and dimensions.

/// A mixture's parameters on the host: logits `[K]`, means and log-variances (before the floor)
/// `[K·D]`.
#[derive(Clone)]
struct Params {
    k: usize,
    d: usize,
    logits: Vec<f64>,
    means: Vec<f64>,
    log_vars: Vec<f64>,
    floor: f64,
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Params {
    fn log_weights(&self) -> Vec<f64> {
        let lse = logsumexp(&self.logits);
        self.logits.iter().map(|l| l - lse).collect()
    }
    fn log_var(&self, c: usize, j: usize) -> f64 {
        self.log_vars[c * self.d + j].max(self.floor)
    }
    /// `log π_c + log N(z_n | μ_c, σ_c²)`, row-major `[N·K]`.
    fn log_joint(&self, z: &[f64]) -> Vec<f64> {
        let lw = self.log_weights();
        let n = z.len() / self.d;
        let mut out = Vec::with_capacity(n * self.k);
        for i in 0..n {
            for (c, lw_c) in lw.iter().enumerate() {
                let mut s = *lw_c;
                for j in 0..self.d {
                    let lv = self.log_var(c, j);
                    let diff = z[i * self.d + j] - self.means[c * self.d + j];
                    s -= 0.5 * ((2.0 * PI).ln() + lv + diff * diff / lv.exp());
                }
                out.push(s);
            }
        }
        out
    }
    fn log_prob(&self, z: &[f64]) -> Vec<f64> {
        self.log_joint(z).chunks(self.k).map(logsumexp).collect()
    }
    fn responsibilities(&self, z: &[f64]) -> Vec<f64> {
        self.log_joint(z)
            .chunks(self.k)
            .flat_map(|row| {
                let lse = logsumexp(row);
                row.iter().map(move |v| (v - lse).exp()).collect::<Vec<_>>()
            })
            .collect()
    }
    /// VaDE's closed-form KL per sample (`0 log 0 = 0`).
    fn kl_vade(&self, mu: &[f64], log_var: &[f64], gamma: &[f64]) -> Vec<f64> {
        let (k, d) = (self.k, self.d);
        let lw = self.log_weights();
        (0..mu.len() / d)
            .map(|i| {
                let mut kl = 0.0;
                for c in 0..k {
                    let g = gamma[i * k + c];
                    let mut inner = 0.0;
                    for j in 0..d {
                        let lv = self.log_var(c, j);
                        let diff = mu[i * d + j] - self.means[c * d + j];
                        inner += lv + log_var[i * d + j].exp() / lv.exp() + diff * diff / lv.exp();
                    }
                    kl += 0.5 * g * inner - g * lw[c];
                    if g > 0.0 {
                        kl += g * g.ln();
                    }
                }
                for j in 0..d {
                    kl -= 0.5 * (1.0 + log_var[i * d + j]);
                }
                kl
            })
            .collect()
    }
    fn kl_monte_carlo(&self, z: &[f64], mu: &[f64], log_var: &[f64]) -> Vec<f64> {
        let d = self.d;
        let lp = self.log_prob(z);
        (0..z.len() / d)
            .map(|i| {
                let mut lq = 0.0;
                for j in 0..d {
                    let (lv, diff) = (log_var[i * d + j], z[i * d + j] - mu[i * d + j]);
                    lq -= 0.5 * ((2.0 * PI).ln() + lv + diff * diff / lv.exp());
                }
                lq - lp[i]
            })
            .collect()
    }

    fn config(&self, precision: Precision) -> GmmPriorConfig {
        GmmPriorConfig::new(self.k, self.d)
            .with_log_var_floor(self.floor)
            .with_dtype(Some(precision))
    }
    fn prior(&self, device: &Device, precision: Precision) -> GmmPrior {
        GmmPrior::from_parameters(
            &self.logits,
            &self.means,
            &self.log_vars,
            &self.config(precision),
            device,
        )
        .expect("valid parameters")
    }
}

/// K = 4 components in D = 3 with random means and log-variances; component 3 has weight
/// 1e-30 relative to the others and one log-variance (−12) lies below the floor (−10).
fn random_params(seed: u64) -> Params {
    let (k, d) = (4, 3);
    let mut rng = Rng(seed);
    let mut logits = rng.normals(k, 1.0);
    logits[3] = logits[0] + 1e-30f64.ln();
    let means = rng.normals(k * d, 2.0);
    let mut log_vars = rng.uniforms(k * d, -1.0, 1.0);
    log_vars[4] = -12.0;
    Params {
        k,
        d,
        logits,
        means,
        log_vars,
        floor: -10.0,
    }
}

/// N = 8 latents: 7 near the components and the last one at 60 in every dimension, where every
/// component density underflows (log-joint around −10⁴).
fn latents(p: &Params, rng: &mut Rng) -> Vec<f64> {
    let n = 8;
    let mut z = Vec::with_capacity(n * p.d);
    for i in 0..n - 1 {
        let c = i % p.k;
        for j in 0..p.d {
            z.push(p.means[c * p.d + j] + rng.normal());
        }
    }
    z.extend(std::iter::repeat_n(60.0, p.d));
    z
}

/// Element-wise check `|a − b| ≤ tol · max(1, |b|)`, recorded in `report`.
fn close_each(report: &mut Report, what: &str, a: &[f64], b: &[f64], tol: f64) {
    if a.len() != b.len() {
        report.check(&format!("{what}: length {} vs {}", a.len(), b.len()), false);
        return;
    }
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(
            0.0,
            |m: f64, e| if e.is_nan() { f64::NAN } else { m.max(e) },
        );
    report.check(
        &format!("{what}: element-wise relative error {worst:.3e} > {tol:.0e}"),
        worst <= tol,
    );
}

fn tol(precision: Precision) -> f64 {
    match precision {
        Precision::F64 => 1e-10,
        Precision::F32 => 1e-4,
    }
}

fn upload(values: &[f64], rows: usize, device: &Device, precision: Precision) -> Tensor<2> {
    let cols = values.len() / rows;
    tensor_from_f64(values.to_vec(), [rows, cols], device, precision.dtype())
}

/// Values as the device stores them in `precision` (the reference then sees the same inputs).
fn rounded(values: &[f64], precision: Precision) -> Vec<f64> {
    match precision {
        Precision::F64 => values.to_vec(),
        Precision::F32 => values.iter().map(|&v| v as f32 as f64).collect(),
    }
}

#[test]
fn densities_match_brute_force_reference_with_tiny_weight_and_far_latent() {
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tag = format!("{backend}/{precision}");
        let mut p = random_params(7);
        p.means = rounded(&p.means, precision);
        p.log_vars = rounded(&p.log_vars, precision);
        let prior = p.prior(&device, precision);
        let z = latents(&p, &mut Rng(11));
        let n = z.len() / p.d;
        let zt = upload(&z, n, &device, precision);
        let t = tol(precision);

        let lj = to_f64(prior.log_joint(zt.clone())).unwrap();
        close_each(
            &mut report,
            &format!("{tag} log_joint"),
            &lj,
            &p.log_joint(&z),
            t,
        );
        let lp = to_f64(prior.log_prob(zt.clone())).unwrap();
        report.check(
            &format!("{tag} log_prob of the far latent is finite ({})", lp[n - 1]),
            lp[n - 1].is_finite() && lp[n - 1] < -1e3,
        );
        close_each(
            &mut report,
            &format!("{tag} log_prob"),
            &lp,
            &p.log_prob(&z),
            t,
        );
        let r = to_f64(prior.responsibilities(zt.clone())).unwrap();
        let r_ref = p.responsibilities(&z);
        report.close(&format!("{tag} responsibilities"), &r, &r_ref, t);
        for (i, row) in r.chunks(p.k).enumerate() {
            let s: f64 = row.iter().sum();
            report.check(
                &format!("{tag} responsibilities row {i} sums to {s}"),
                (s - 1.0).abs() < 10.0 * t,
            );
        }
        let lr = to_f64(prior.log_responsibilities(zt.clone())).unwrap();
        let lr_ref: Vec<f64> = p
            .log_joint(&z)
            .chunks(p.k)
            .flat_map(|row| {
                let lse = logsumexp(row);
                row.iter().map(move |v| v - lse).collect::<Vec<_>>()
            })
            .collect();
        close_each(
            &mut report,
            &format!("{tag} log_responsibilities"),
            &lr,
            &lr_ref,
            t,
        );
        let lw = to_f64(prior.log_weights()).unwrap();
        close_each(
            &mut report,
            &format!("{tag} log_weights"),
            &lw,
            &p.log_weights(),
            t,
        );
    }
    report.finish();
}

#[test]
fn kl_terms_match_brute_force_reference_with_vanishing_responsibilities() {
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tag = format!("{backend}/{precision}");
        let mut p = random_params(3);
        p.means = rounded(&p.means, precision);
        p.log_vars = rounded(&p.log_vars, precision);
        let prior = p.prior(&device, precision);
        let mut rng = Rng(5);
        let z = rounded(&latents(&p, &mut rng), precision);
        let n = z.len() / p.d;
        let mu = rounded(
            &z.iter().map(|v| v + 0.3 * rng.normal()).collect::<Vec<_>>(),
            precision,
        );
        let log_var = rounded(&rng.uniforms(n * p.d, -2.0, 0.5), precision);
        // Responsibilities of the reference at z: the tiny component's are ~1e-30 and those of
        // the far latent are one-hot up to underflow; row 0 gets an exact zero.
        let mut gamma = p.responsibilities(&z);
        gamma[1] = 0.0;
        let s: f64 = gamma[..p.k].iter().sum();
        gamma[..p.k].iter_mut().for_each(|g| *g /= s);
        let gamma = rounded(&gamma, precision);
        let t = tol(precision);
        let (mut_, lvt, gt) = (
            upload(&mu, n, &device, precision),
            upload(&log_var, n, &device, precision),
            upload(&gamma, n, &device, precision),
        );
        let kl = to_f64(prior.kl_vade(mut_.clone(), lvt.clone(), gt.clone())).unwrap();
        let kl_ref = p.kl_vade(&mu, &log_var, &gamma);
        report.check(
            &format!("{tag} kl_vade is finite: {kl:?}"),
            kl.iter().all(|v| v.is_finite()),
        );
        close_each(&mut report, &format!("{tag} kl_vade"), &kl, &kl_ref, t);

        // The log-γ variant, with log γ = −inf where γ = 0.
        let log_gamma: Vec<f64> = gamma.iter().map(|g| g.ln()).collect();
        let lgt = upload(&log_gamma, n, &device, precision);
        let kl_log = to_f64(prior.kl_vade_log_gamma(mut_.clone(), lvt.clone(), lgt)).unwrap();
        close_each(
            &mut report,
            &format!("{tag} kl_vade_log_gamma"),
            &kl_log,
            &kl_ref,
            t,
        );

        // The one-pass form VaDE trains with: γ = q(c | z) at the sample, then the KL.
        let zt = upload(&z, n, &device, precision);
        let (kl_z, gamma_z) = prior.kl_vade_from_sample(zt.clone(), mut_.clone(), lvt.clone());
        let gamma_ref = p.responsibilities(&z);
        close_each(
            &mut report,
            &format!("{tag} kl_vade_from_sample gamma"),
            &to_f64(gamma_z).unwrap(),
            &gamma_ref,
            t,
        );
        close_each(
            &mut report,
            &format!("{tag} kl_vade_from_sample kl"),
            &to_f64(kl_z).unwrap(),
            &p.kl_vade(&mu, &log_var, &gamma_ref),
            t,
        );

        let mc = to_f64(prior.kl_monte_carlo(zt, mut_, lvt)).unwrap();
        close_each(
            &mut report,
            &format!("{tag} kl_monte_carlo"),
            &mc,
            &p.kl_monte_carlo(&z, &mu, &log_var),
            t,
        );
    }
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Gradients: autodiff on flex f64 against central finite differences.

/// The encoder outputs of the gradient checks: means `μ̃`, log-variances and the fixed noise of
/// the reparameterised sample `z = μ̃ + exp(½ log σ̃²) ε`.
struct Encoder {
    n: usize,
    mu: Vec<f64>,
    log_var: Vec<f64>,
    eps: Vec<f64>,
}

/// Which scalar loss a gradient check differentiates.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// `Σ_n log p(μ̃_n)`.
    LogProb,
    /// `Σ_n KL_vade(μ̃, log σ̃², γ = q(c | z))` with `z` the reparameterised sample (γ not
    /// detached), as VaDE trains.
    KlVade,
    /// The same through the one-pass `kl_vade_from_sample`.
    KlVadeFromSample,
    /// `Σ_n KL_mc(z, μ̃, log σ̃²)` at the reparameterised sample.
    KlMonteCarlo,
}

fn loss(
    prior: &GmmPrior,
    mu: Tensor<2>,
    log_var: Tensor<2>,
    eps: Tensor<2>,
    which: Loss,
) -> Tensor<1> {
    let z = mu.clone() + log_var.clone().mul_scalar(0.5).exp() * eps;
    match which {
        Loss::LogProb => prior.log_prob(mu).sum(),
        Loss::KlVade => {
            let gamma = prior.responsibilities(z);
            prior.kl_vade(mu, log_var, gamma).sum()
        }
        Loss::KlVadeFromSample => prior.kl_vade_from_sample(z, mu, log_var).0.sum(),
        Loss::KlMonteCarlo => prior.kl_monte_carlo(z, mu, log_var).sum(),
    }
}

/// The loss at host parameters `θ = [logits, means, log_vars, μ̃, log σ̃²]`, plain f64 flex.
fn loss_at(p: &Params, enc: &Encoder, theta: &[f64], which: Loss, device: &Device) -> f64 {
    let (k, kd, nd) = (p.k, p.k * p.d, enc.n * p.d);
    let q = Params {
        logits: theta[..k].to_vec(),
        means: theta[k..k + kd].to_vec(),
        log_vars: theta[k + kd..k + 2 * kd].to_vec(),
        ..p.clone()
    };
    let prior = q.prior(device, Precision::F64);
    let off = k + 2 * kd;
    let mu = upload(&theta[off..off + nd], enc.n, device, Precision::F64);
    let lv = upload(
        &theta[off + nd..off + 2 * nd],
        enc.n,
        device,
        Precision::F64,
    );
    let eps = upload(&enc.eps, enc.n, device, Precision::F64);
    to_f64(loss(&prior, mu, lv, eps, which)).unwrap()[0]
}

#[test]
fn autodiff_gradients_match_central_finite_differences_in_f64() {
    let plain = Backend::Flex.device_for(Precision::F64).unwrap();
    let ad = plain.clone().autodiff();
    let mut rng = Rng(21);
    let (k, d, n) = (3, 2, 5);
    let mut logits = rng.normals(k, 1.0);
    logits[2] = logits[0] + 1e-30f64.ln(); // a vanishing weight keeps finite gradients
    let mut log_vars = rng.uniforms(k * d, -0.8, 0.8);
    log_vars[1] = -12.0; // below the floor: zero gradient
    let p = Params {
        k,
        d,
        logits,
        means: rng.normals(k * d, 1.5),
        log_vars,
        floor: -10.0,
    };
    let enc = Encoder {
        n,
        mu: rng.normals(n * d, 1.5),
        log_var: rng.uniforms(n * d, -1.5, 0.5),
        eps: rng.normals(n * d, 1.0),
    };
    let theta: Vec<f64> = [&p.logits, &p.means, &p.log_vars, &enc.mu, &enc.log_var]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut report = Report::default();
    for which in [
        Loss::LogProb,
        Loss::KlVade,
        Loss::KlVadeFromSample,
        Loss::KlMonteCarlo,
    ] {
        let prior = p.prior(&ad, Precision::F64);
        let mu = upload(&enc.mu, n, &ad, Precision::F64).require_grad();
        let lv = upload(&enc.log_var, n, &ad, Precision::F64).require_grad();
        let eps = upload(&enc.eps, n, &ad, Precision::F64);
        let l = loss(&prior, mu.clone(), lv.clone(), eps, which);
        let grads = l.backward();
        let mut g = Vec::new();
        g.extend(to_f64(prior.logits.grad(&grads).expect("logits grad")).unwrap());
        g.extend(to_f64(prior.means.grad(&grads).expect("means grad")).unwrap());
        g.extend(to_f64(prior.log_vars.grad(&grads).expect("log_vars grad")).unwrap());
        g.extend(to_f64(mu.grad(&grads).expect("mu grad")).unwrap());
        // log p(μ̃) does not use the encoder's variance: no gradient is recorded for it.
        match lv.grad(&grads) {
            Some(t) => g.extend(to_f64(t).unwrap()),
            None => g.extend(vec![0.0; n * d]),
        }

        let h = 1e-6;
        let fd: Vec<f64> = (0..theta.len())
            .map(|i| {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[i] += h;
                down[i] -= h;
                (loss_at(&p, &enc, &up, which, &plain) - loss_at(&p, &enc, &down, which, &plain))
                    / (2.0 * h)
            })
            .collect();
        report.check(
            &format!("{which:?}: every gradient is finite"),
            g.iter().all(|v| v.is_finite()),
        );
        let parts = [
            ("logits", 0, k),
            ("means", k, k * d),
            ("log_vars", k + k * d, k * d),
            ("mu", k + 2 * k * d, n * d),
            ("log_var", k + 2 * k * d + n * d, n * d),
        ];
        for (name, start, len) in parts {
            if matches!(which, Loss::LogProb) && name == "log_var" {
                continue; // log p(μ̃) does not depend on the encoder's variance
            }
            report.close(
                &format!("{which:?} d/d{name}"),
                &g[start..start + len],
                &fd[start..start + len],
                1e-6,
            );
        }
        report.check(
            &format!("{which:?}: the floored log-variance has zero gradient"),
            g[k + k * d + 1] == 0.0,
        );
    }
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// Sampling.

fn sampling_params() -> Params {
    Params {
        k: 3,
        d: 2,
        logits: [0.5f64, 0.3, 0.2].iter().map(|w| w.ln()).collect(),
        means: vec![-4.0, 0.0, 3.0, 2.0, 0.5, -3.0],
        log_vars: vec![0.0, -1.0, 0.7, 0.2, -2.0, 0.0],
        floor: -10.0,
    }
}

#[test]
fn samples_match_weights_means_and_variances_within_sampling_error() {
    let p = sampling_params();
    let (d, n) = (p.d, 20_000usize);
    let weights: Vec<f64> = p.log_weights().iter().map(|l| l.exp()).collect();
    let mut report = Report::default();
    for (backend, precision, device) in targets() {
        let tag = format!("{backend}/{precision}");
        let prior = p.prior(&device, precision);
        let (z, comp) = prior.sample(n, 42);
        report.check(&format!("{tag} sample shape"), z.dims() == [n, d]);
        let z = to_f64(z).unwrap();
        let comp = to_i64(comp).unwrap();
        for (c, &w) in weights.iter().enumerate() {
            let rows: Vec<&[f64]> = z
                .chunks(d)
                .zip(&comp)
                .filter(|(_, &l)| l == c as i64)
                .map(|(r, _)| r)
                .collect();
            let nc = rows.len() as f64;
            let freq = nc / n as f64;
            let se = (w * (1.0 - w) / n as f64).sqrt();
            report.check(
                &format!("{tag} component {c} frequency {freq} vs π {w}"),
                (freq - w).abs() < 5.0 * se,
            );
            for j in 0..d {
                let var = p.log_vars[c * d + j].exp();
                let mean = rows.iter().map(|r| r[j]).sum::<f64>() / nc;
                let s2 = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / (nc - 1.0);
                let mu = p.means[c * d + j];
                report.check(
                    &format!("{tag} component {c} dim {j} mean {mean} vs {mu}"),
                    (mean - mu).abs() < 5.0 * (var / nc).sqrt(),
                );
                report.check(
                    &format!("{tag} component {c} dim {j} variance {s2} vs {var}"),
                    (s2 - var).abs() < 5.0 * var * (2.0 / (nc - 1.0)).sqrt(),
                );
            }
        }
        // One component alone.
        let zc = to_f64(prior.sample_component(2, n, 9)).unwrap();
        for j in 0..d {
            let var = p.log_vars[2 * d + j].exp();
            let mean = zc.iter().skip(j).step_by(d).sum::<f64>() / n as f64;
            report.check(
                &format!("{tag} sample_component(2) dim {j} mean {mean}"),
                (mean - p.means[2 * d + j]).abs() < 5.0 * (var / n as f64).sqrt(),
            );
        }
    }
    report.finish();
}

#[test]
fn sampling_is_reproducible_per_seed_and_rejects_a_missing_component() {
    let p = sampling_params();
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let prior = p.prior(&device, Precision::F64);
    let (a, ca) = prior.sample(500, 3);
    let (b, cb) = prior.sample(500, 3);
    let (c, _) = prior.sample(500, 4);
    let (a, b, c) = (to_f64(a).unwrap(), to_f64(b).unwrap(), to_f64(c).unwrap());
    assert_eq!(a, b, "same seed, same samples");
    assert_eq!(
        to_i64(ca).unwrap(),
        to_i64(cb).unwrap(),
        "same seed, same components"
    );
    assert_ne!(a, c, "another seed gives other samples");
    let s1 = to_f64(prior.sample_component(1, 50, 8)).unwrap();
    let s2 = to_f64(prior.sample_component(1, 50, 8)).unwrap();
    assert_eq!(s1, s2, "sample_component is reproducible");
    let (empty, empty_c) = prior.sample(0, 1);
    assert_eq!(
        (empty.dims(), empty_c.dims()),
        ([0, 2], [0]),
        "n = 0 gives empty tensors"
    );
    match prior.try_sample_component(3, 10, 0) {
        Err(PriorError::InvalidSetting { reason: msg, .. }) => {
            assert!(msg.contains("0..3"), "{msg}")
        }
        other => panic!("expected InvalidSetting, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and initialisation.

#[test]
fn init_gives_uniform_weights_unit_variances_and_seeded_means() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let config = GmmPriorConfig::new(5, 3)
        .with_seed(7)
        .with_dtype(Some(Precision::F64));
    let prior = config.init(&device);
    assert_eq!((prior.n_components(), prior.latent_dim()), (5, 3));
    assert_eq!(prior.dtype(), Precision::F64.dtype());
    let w = to_f64(prior.weights()).unwrap();
    assert!(
        w.iter().all(|v| (v - 0.2).abs() < 1e-15),
        "uniform weights: {w:?}"
    );
    let lv = to_f64(prior.log_variances()).unwrap();
    assert!(lv.iter().all(|v| *v == 0.0), "unit variances: {lv:?}");
    let m1 = to_f64(prior.means.val()).unwrap();
    let m2 = to_f64(config.init(&device).means.val()).unwrap();
    let m3 = to_f64(config.clone().with_seed(8).init(&device).means.val()).unwrap();
    assert_eq!(m1, m2, "same seed, same means");
    assert_ne!(m1, m3, "another seed, other means");
    let spread = m1.iter().map(|v| v * v).sum::<f64>() / m1.len() as f64;
    assert!(
        spread > 0.05 && spread < 5.0,
        "means look like N(0, 1) draws: {m1:?}"
    );

    for bad in [
        GmmPriorConfig::new(0, 2),
        GmmPriorConfig::new(2, 0),
        GmmPriorConfig::new(2, 2).with_log_var_floor(f64::NAN),
    ] {
        assert!(
            matches!(
                bad.try_init(&device),
                Err(PriorError::InvalidSetting { .. })
            ),
            "{bad:?} must be refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// From a fitted mixture.

/// 300 points in 2-D from three well separated clusters with different spreads per axis.
fn cluster_data() -> (Vec<f64>, usize) {
    let mut rng = Rng(99);
    let centres = [
        (-5.0, 0.0, 0.5, 1.5),
        (4.0, 4.0, 1.0, 0.3),
        (3.0, -5.0, 0.7, 0.7),
    ];
    let mut x = Vec::new();
    for i in 0..300 {
        let (cx, cy, sx, sy) = centres[i % 3];
        x.push(cx + sx * rng.normal());
        x.push(cy + sy * rng.normal());
    }
    (x, 300)
}

#[test]
fn from_gmm_log_prob_equals_score_samples_in_f64() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let (x, n) = cluster_data();
    let xt = upload(&x, n, &device, Precision::F64);
    let config = GmmPriorConfig::new(3, 2).with_dtype(Some(Precision::F64));
    let mut report = Report::default();
    for cov in [CovarianceType::Diag, CovarianceType::Spherical] {
        let model = fit(
            &GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_seed(0),
            &xt,
        )
        .unwrap();
        let prior = GmmPrior::from_gmm(&model, &config, &device).unwrap();
        let lp = to_f64(prior.log_prob(xt.clone())).unwrap();
        let score = to_f64(model.score_samples(&xt).unwrap()).unwrap();
        close_each(
            &mut report,
            &format!("{cov} log_prob vs score_samples"),
            &lp,
            &score,
            1e-10,
        );
        let w = to_f64(prior.weights()).unwrap();
        report.close(&format!("{cov} weights"), &w, model.weights(), 1e-12);
        let r = to_f64(prior.responsibilities(xt.clone())).unwrap();
        let proba = to_f64(model.predict_proba(&xt).unwrap()).unwrap();
        report.close(
            &format!("{cov} responsibilities vs predict_proba"),
            &r,
            &proba,
            1e-9,
        );
    }
    report.finish();
}

#[test]
fn from_gmm_refuses_full_and_tied_covariances_and_other_sizes() {
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    let (x, n) = cluster_data();
    let xt = upload(&x, n, &device, Precision::F64);
    let config = GmmPriorConfig::new(3, 2);
    for cov in [CovarianceType::Full, CovarianceType::Tied] {
        let model = fit(
            &GaussianMixtureConfig::new(3)
                .with_covariance_type(cov)
                .with_seed(0),
            &xt,
        )
        .unwrap();
        match GmmPrior::from_gmm(&model, &config, &device) {
            Err(PriorError::Shape(msg)) => assert!(msg.contains("diag"), "{cov}: {msg}"),
            other => panic!("{cov}: expected PriorError::Shape, got {other:?}"),
        }
    }
    let diag = fit(
        &GaussianMixtureConfig::new(3)
            .with_covariance_type(CovarianceType::Diag)
            .with_seed(0),
        &xt,
    )
    .unwrap();
    for wrong in [GmmPriorConfig::new(4, 2), GmmPriorConfig::new(3, 5)] {
        match GmmPrior::from_gmm(&diag, &wrong, &device) {
            Err(PriorError::Shape(msg)) => {
                assert!(msg.contains("GmmPriorConfig::new(3, 2)"), "{msg}")
            }
            other => panic!("{wrong:?}: expected PriorError::Shape, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Saving and loading.

#[test]
fn save_and_load_checked_round_trip_and_refuse_other_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prior.bpk");
    let p = random_params(31);
    for (backend, precision, device) in targets() {
        let tag = format!("{backend}/{precision}");
        let prior = p.prior(&device, precision);
        let z = upload(&latents(&p, &mut Rng(1)), 8, &device, precision);
        let before = to_f64(prior.log_prob(z.clone())).unwrap();
        let params_before = to_f64(prior.means.val()).unwrap();
        prior.save(&path).unwrap();
        let loaded = GmmPrior::load_checked(&path, &p.config(precision), &device)
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(loaded.dtype(), precision.dtype(), "{tag}: dtype");
        assert_eq!(
            to_f64(loaded.means.val()).unwrap(),
            params_before,
            "{tag}: means"
        );
        assert_eq!(
            to_f64(loaded.log_prob(z)).unwrap(),
            before,
            "{tag}: log_prob after the round trip"
        );
    }
    let device = Backend::Flex.device_for(Precision::F64).unwrap();
    for wrong in [
        GmmPriorConfig::new(p.k, p.d + 1),
        GmmPriorConfig::new(p.k + 1, p.d),
    ] {
        match GmmPrior::load_checked(&path, &wrong, &device) {
            Err(PriorError::Shape(msg)) => assert!(msg.contains("saved sizes"), "{msg}"),
            other => panic!("{wrong:?}: expected PriorError::Shape, got {other:?}"),
        }
    }
    let missing = dir.path().join("absent.bpk");
    assert!(matches!(
        GmmPrior::load_checked(&missing, &p.config(Precision::F64), &device),
        Err(PriorError::Record { .. })
    ));
    let garbage = dir.path().join("garbage.bpk");
    std::fs::write(&garbage, b"not a burnpack file").unwrap();
    assert!(matches!(
        GmmPrior::load_checked(&garbage, &p.config(Precision::F64), &device),
        Err(PriorError::Record { .. })
    ));
    // Module::save_file / load_file (Burn's own API) round-trip as well.
    let prior = p.prior(&device, Precision::F64);
    let logits = to_f64(prior.logits.val()).unwrap();
    prior.save_file(&path).unwrap();
    let reloaded = p
        .config(Precision::F64)
        .with_seed(123)
        .init(&device)
        .load_file(&path);
    assert_eq!(to_f64(reloaded.logits.val()).unwrap(), logits);
}
