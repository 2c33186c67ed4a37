//! The multi-layer ensemble of Lee et al. (2018): one OOD score per network layer (e.g. the
//! Mahalanobis score of each layer's features), combined by a logistic regression.
//!
//! With `s_l` the score of layer `l`, standardised by the training mean `m_l` and standard
//! deviation `σ_l` (population, as scikit-learn's `StandardScaler`; `σ_l = 1` for a constant
//! layer), the combined score is the logit
//!
//! `z(s) = b + Σ_l w_l (s_l − m_l) / σ_l`, with `P(OOD | s) = 1 / (1 + e^{−z})`,
//!
//! higher = more out-of-distribution. `(w, b)` minimise scikit-learn's L2-penalised
//! log-loss (`LogisticRegression(C=c)`, intercept not penalised)
//!
//! `F(w, b) = ½ ‖w‖² + c Σ_i [log(1 + e^{z_i}) − y_i z_i]`, `y = 1` for OOD, `0` for ID,
//!
//! by Newton's method (the Hessian `c X̃ᵀ diag(p(1−p)) X̃ + diag(1, …, 1, 0)` solved by
//! `mixburn_gmm::linalg::host_cholesky_solve`, with a backtracking line search), in f64 on the host:
//! deterministic, no randomness, a few iterations for the handful of layers an ensemble has.
//!
//! Two ways to get the training scores, both through [`Ensemble::fit`]:
//! - **Lee's original** ("validated on OOD samples"): ID validation scores vs. scores of a
//!   small validation part of the very OOD set that is evaluated. Optimistic, since it needs
//!   samples of the unknown distribution; report it as such.
//! - **No OOD data** (Lee's "validated on adversarial samples"): ID validation scores vs.
//!   scores of pseudo-OOD inputs made from the same ID validation inputs, e.g. FGSM steps
//!   `x + ε_adv · sign(∇ₓ CE(f(x), y))` or otherwise corrupted ID images. One ensemble then
//!   serves every OOD set.

use burn::config::Config;
use mixburn_gmm::linalg::host_cholesky_solve;
use serde::{Deserialize, Serialize};

use crate::error::OodError;

/// Result with [`OodError`] (not imported as `Result`: the `Config` derive needs the plain one).
type Res<T> = crate::error::Result<T>;

/// Options of the logistic regression of [`Ensemble::fit_with`].
#[derive(Config, Debug, PartialEq)]
pub struct EnsembleConfig {
    /// Inverse L2 penalty strength `c` (scikit-learn's `C`): larger = weaker penalty.
    #[config(default = 1.0)]
    pub c: f64,
    /// Newton iterations at most.
    #[config(default = 100)]
    pub max_iter: usize,
    /// Stop when the largest gradient entry of `F / (c·N)` falls below this.
    #[config(default = 1e-12)]
    pub tol: f64,
}

impl EnsembleConfig {
    fn validate(&self) -> Res<()> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(OodError::InvalidSetting {
                name: "ensemble c",
                reason: format!(
                    "the inverse penalty must be a positive number, got {}",
                    self.c
                ),
            });
        }
        if self.max_iter == 0 {
            return Err(OodError::InvalidSetting {
                name: "ensemble max_iter",
                reason: "must be >= 1".into(),
            });
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return Err(OodError::InvalidSetting {
                name: "ensemble tol",
                reason: format!("must be a positive number, got {}", self.tol),
            });
        }
        Ok(())
    }
}

/// A fitted multi-layer ensemble (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// Per-layer training means `m_l`.
    pub mean: Vec<f64>,
    /// Per-layer training standard deviations `σ_l` (1 for a constant layer).
    pub scale: Vec<f64>,
    /// Weights `w_l` of the standardised scores.
    pub weights: Vec<f64>,
    /// Intercept `b`.
    pub intercept: f64,
    /// Newton iterations used.
    pub n_iter: usize,
}

/// Checks `layer_scores[l][i]` (layers × samples) and returns the sample count.
fn check_scores(what: &'static str, layer_scores: &[Vec<f64>], layers: usize) -> Res<usize> {
    if layer_scores.is_empty() || layer_scores[0].is_empty() {
        return Err(OodError::Empty { what });
    }
    if layer_scores.len() != layers {
        return Err(OodError::InvalidSetting {
            name: "layer scores",
            reason: format!(
                "{what}: expected {layers} layers, got {}; pass the scores of the same layers, in the same order, as the fit",
                layer_scores.len()
            ),
        });
    }
    let n = layer_scores[0].len();
    for (l, s) in layer_scores.iter().enumerate() {
        if s.len() != n {
            return Err(OodError::InvalidSetting {
                name: "layer scores",
                reason: format!(
                    "{what}: layer 0 has {n} scores but layer {l} has {}; pass one score per sample and layer",
                    s.len()
                ),
            });
        }
        if let Some(i) = s.iter().position(|v| !v.is_finite()) {
            return Err(OodError::NonFinite {
                row: i,
                col: l,
                value: s[i],
            });
        }
    }
    Ok(n)
}

/// Sample `i` of `layer_scores[l][i]`, standardised: `(s_l − m_l) / σ_l` for every layer.
fn standardised<'a>(
    layer_scores: &'a [Vec<f64>],
    i: usize,
    mean: &'a [f64],
    scale: &'a [f64],
) -> impl Iterator<Item = f64> + 'a {
    layer_scores
        .iter()
        .zip(mean.iter().zip(scale))
        .map(move |(s, (m, sd))| (s[i] - m) / sd)
}

/// `log(1 + e^t)` without overflow.
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

/// `1 / (1 + e^{−t})` without overflow.
fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// The penalised objective `F(θ)` with `θ = (w, b)` on standardised rows `x` (`n × L`).
fn objective(theta: &[f64], x: &[f64], y: &[f64], c: f64) -> f64 {
    let layers = theta.len() - 1;
    let b = theta[layers];
    let loss: f64 = y
        .iter()
        .enumerate()
        .map(|(i, yi)| {
            let z = b
                + (0..layers)
                    .map(|l| theta[l] * x[i * layers + l])
                    .sum::<f64>();
            softplus(z) - yi * z
        })
        .sum();
    0.5 * theta[..layers].iter().map(|w| w * w).sum::<f64>() + c * loss
}

impl Ensemble {
    /// Fits the ensemble with the default [`EnsembleConfig`] (`c = 1`): ID samples are
    /// labelled 0, OOD (or pseudo-OOD) samples 1. `id_layer_scores[l][i]` is the score of
    /// ID sample `i` at layer `l`; both sets need the same layers (module docs for the two
    /// ways of choosing the OOD samples).
    pub fn fit(id_layer_scores: &[Vec<f64>], ood_layer_scores: &[Vec<f64>]) -> Res<Self> {
        Self::fit_with(&EnsembleConfig::new(), id_layer_scores, ood_layer_scores)
    }

    /// [`Ensemble::fit`] with explicit options.
    pub fn fit_with(
        config: &EnsembleConfig,
        id_layer_scores: &[Vec<f64>],
        ood_layer_scores: &[Vec<f64>],
    ) -> Res<Self> {
        config.validate()?;
        let layers = id_layer_scores.len();
        let n_id = check_scores("the ID layer scores", id_layer_scores, layers)?;
        let n_ood = check_scores("the OOD layer scores", ood_layer_scores, layers)?;
        let n = n_id + n_ood;

        let mut mean = vec![0.0; layers];
        let mut scale = vec![1.0; layers];
        for l in 0..layers {
            let all = id_layer_scores[l].iter().chain(&ood_layer_scores[l]);
            mean[l] = all.clone().sum::<f64>() / n as f64;
            let var = all.map(|v| (v - mean[l]).powi(2)).sum::<f64>() / n as f64;
            // StandardScaler leaves (near-)constant columns unscaled.
            if var.sqrt() > 10.0 * f64::EPSILON * mean[l].abs().max(1.0) {
                scale[l] = var.sqrt();
            }
        }
        let mut x = Vec::with_capacity(n * layers);
        let mut y = Vec::with_capacity(n);
        for (group, label) in [(id_layer_scores, 0.0), (ood_layer_scores, 1.0)] {
            for i in 0..group[0].len() {
                x.extend(standardised(group, i, &mean, &scale));
                y.push(label);
            }
        }

        let p = layers + 1; // weights then intercept
        let c = config.c;
        let mut theta = vec![0.0; p];
        let mut f = objective(&theta, &x, &y, c);
        let mut n_iter = 0;
        for _ in 0..config.max_iter {
            let mut grad = vec![0.0; p];
            let mut hess = vec![0.0; p * p];
            for i in 0..n {
                let row = &x[i * layers..(i + 1) * layers];
                let z = theta[layers] + (0..layers).map(|l| theta[l] * row[l]).sum::<f64>();
                let pi = sigmoid(z);
                let r = c * (pi - y[i]);
                let s = c * pi * (1.0 - pi);
                let xt = |k: usize| if k < layers { row[k] } else { 1.0 };
                for a in 0..p {
                    grad[a] += r * xt(a);
                    for b in 0..=a {
                        hess[a * p + b] += s * xt(a) * xt(b);
                    }
                }
            }
            for a in 0..p {
                if a < layers {
                    grad[a] += theta[a];
                    hess[a * p + a] += 1.0;
                }
                for b in 0..a {
                    hess[b * p + a] = hess[a * p + b];
                }
            }
            let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            if gmax <= config.tol * c * n as f64 {
                break;
            }
            n_iter += 1;
            // A saturated intercept block can make the Hessian singular: add a tiny ridge.
            let step = host_cholesky_solve(&hess, &grad, p).or_else(|| {
                let mut h = hess.clone();
                (0..p).for_each(|a| h[a * p + a] += 1e-10 * c * n as f64);
                host_cholesky_solve(&h, &grad, p)
            });
            let Some(step) = step else {
                return Err(mixburn_gmm::GmmError::NumericalFailure(
                    "ensemble fit: the logistic-regression Hessian is not positive definite; \
                     pass non-constant scores of both ID and OOD samples or a smaller c"
                        .into(),
                )
                .into());
            };
            let mut t = 1.0;
            let mut improved = false;
            for _ in 0..60 {
                let cand: Vec<f64> = theta.iter().zip(&step).map(|(v, d)| v - t * d).collect();
                let fc = objective(&cand, &x, &y, c);
                if fc <= f {
                    theta = cand;
                    f = fc;
                    improved = true;
                    break;
                }
                t *= 0.5;
            }
            if !improved {
                break; // at the optimum to rounding
            }
        }
        Ok(Self {
            mean,
            scale,
            weights: theta[..layers].to_vec(),
            intercept: theta[layers],
            n_iter,
        })
    }

    /// Number of layers the ensemble combines.
    pub fn n_layers(&self) -> usize {
        self.weights.len()
    }

    /// Combined scores `z(s) = b + Σ_l w_l (s_l − m_l)/σ_l` (higher = more OOD) of samples
    /// given as `layer_scores[l][i]`, in the layer order of the fit.
    pub fn combine(&self, layer_scores: &[Vec<f64>]) -> Res<Vec<f64>> {
        let n = check_scores("the layer scores", layer_scores, self.n_layers())?;
        Ok((0..n)
            .map(|i| {
                self.intercept
                    + (0..self.n_layers())
                        .map(|l| {
                            self.weights[l] * (layer_scores[l][i] - self.mean[l]) / self.scale[l]
                        })
                        .sum::<f64>()
            })
            .collect())
    }

    /// `P(OOD | s) = 1 / (1 + e^{−z(s)})` for each sample.
    pub fn probabilities(&self, layer_scores: &[Vec<f64>]) -> Res<Vec<f64>> {
        Ok(self
            .combine(layer_scores)?
            .into_iter()
            .map(sigmoid)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two layers; layer 0 separates ID (low) from OOD (high), layer 1 is noise-like.
    fn toy() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let id = vec![
            vec![0.1, 0.4, 0.3, 0.9, 0.2, 0.5],
            vec![1.0, -1.0, 0.5, 0.2, -0.3, 0.1],
        ];
        let ood = vec![
            vec![0.8, 1.4, 1.1, 0.6, 1.7],
            vec![0.3, -0.2, 0.9, -0.8, 0.0],
        ];
        (id, ood)
    }

    #[test]
    fn gradient_of_the_objective_vanishes_at_the_fit() {
        let (id, ood) = toy();
        let c = 2.0;
        let e = Ensemble::fit_with(&EnsembleConfig::new().with_c(c), &id, &ood).unwrap();
        // Finite differences of F at the optimum, in the standardised parametrisation.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (g, label) in [(&id, 0.0), (&ood, 1.0)] {
            for i in 0..g[0].len() {
                x.extend(standardised(g, i, &e.mean, &e.scale));
                y.push(label);
            }
        }
        let theta = vec![e.weights[0], e.weights[1], e.intercept];
        for k in 0..3 {
            let h = 1e-6;
            let (mut up, mut down) = (theta.clone(), theta.clone());
            up[k] += h;
            down[k] -= h;
            let g = (objective(&up, &x, &y, c) - objective(&down, &x, &y, c)) / (2.0 * h);
            assert!(g.abs() < 1e-6, "dF/dθ_{k} = {g}");
        }
        assert!(
            e.weights[0] > 0.0,
            "the separating layer gets a positive weight"
        );
    }

    #[test]
    fn combine_ranks_ood_above_id_and_probabilities_are_the_sigmoid() {
        let (id, ood) = toy();
        let e = Ensemble::fit(&id, &ood).unwrap();
        let zi = e.combine(&id).unwrap();
        let zo = e.combine(&ood).unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&zo) > mean(&zi));
        let p = e.probabilities(&ood).unwrap();
        for (z, p) in zo.iter().zip(p) {
            assert!((p - 1.0 / (1.0 + (-z).exp())).abs() < 1e-15);
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (id, ood) = toy();
        assert!(matches!(
            Ensemble::fit(&id, &ood[..1]),
            Err(OodError::InvalidSetting { .. })
        ));
        assert!(matches!(
            Ensemble::fit(&[], &ood),
            Err(OodError::Empty { .. })
        ));
        let mut nan = id.clone();
        nan[1][2] = f64::NAN;
        assert!(matches!(
            Ensemble::fit(&nan, &ood),
            Err(OodError::NonFinite { row: 2, col: 1, .. })
        ));
        let ragged = vec![vec![0.0, 1.0], vec![0.0]];
        assert!(Ensemble::fit(&ragged, &ood).is_err());
        assert!(Ensemble::fit_with(&EnsembleConfig::new().with_c(0.0), &id, &ood).is_err());
        let e = Ensemble::fit(&id, &ood).unwrap();
        assert!(e.combine(&id[..1]).is_err());
    }

    #[test]
    fn separable_scores_stay_finite_thanks_to_the_penalty() {
        let id = vec![vec![0.0, 0.1, 0.2]];
        let ood = vec![vec![5.0, 5.1, 5.2]];
        let e = Ensemble::fit_with(&EnsembleConfig::new().with_c(100.0), &id, &ood).unwrap();
        assert!(e.weights[0].is_finite() && e.weights[0] > 0.0);
        let zi = e.combine(&id).unwrap();
        let zo = e.combine(&ood).unwrap();
        assert!(zi.iter().all(|z| *z < 0.0) && zo.iter().all(|z| *z > 0.0));
    }
}
