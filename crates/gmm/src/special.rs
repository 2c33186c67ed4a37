//! Special functions on the host in f64, for the variational mixture's expectations and
//! normalisers: the digamma function `ψ = (ln Γ)'`, `ln Γ` (from `libm`) and `ln B(a, b)`.

/// The digamma function `ψ(x) = d/dx ln Γ(x)`, accurate to about 1e-13 relative (absolute
/// near its root `x ≈ 1.4616`).
///
/// - `x ≤ 0`: reflection `ψ(x) = ψ(1 − x) − π / tan(πx)`; the poles (`x` a non-positive
///   integer) give NaN.
/// - `0 < x < 10`: recurrence `ψ(x) = ψ(x + 1) − 1/x` up to `x ≥ 10`.
/// - `x ≥ 10`: the asymptotic series
///   `ψ(x) = ln x − 1/(2x) − Σ_{n≥1} B_{2n} / (2n x^{2n})`
///   `= ln x − 1/(2x) − 1/(12x²) + 1/(120x⁴) − 1/(252x⁶) + 1/(240x⁸) − 1/(132x¹⁰)
///   + 691/(32760x¹²) − 1/(12x¹⁴)`, whose first omitted term is below 1e-17 at `x = 10`.
pub fn digamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == f64::INFINITY {
        return f64::INFINITY;
    }
    if x <= 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        return digamma(1.0 - x) - std::f64::consts::PI / (std::f64::consts::PI * x).tan();
    }
    let mut x = x;
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    // Horner form of Σ_{n=1}^{7} B_{2n} / (2n) · x^{−2n}.
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0
                                    - inv2
                                        * (1.0 / 132.0
                                            - inv2 * (691.0 / 32760.0 - inv2 / 12.0))))));
    shift + x.ln() - 0.5 / x - series
}

/// `ln Γ(x)` (the logarithm of the absolute value of the gamma function), from `libm`.
pub fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`, for `a, b > 0`.
pub fn betaln(a: f64, b: f64) -> f64 {
    lgamma(a) + lgamma(b) - lgamma(a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tol: f64) {
        let err = (got - want).abs() / want.abs().max(1.0);
        assert!(err < tol, "{got} vs {want}: error {err:.3e}");
    }

    #[test]
    fn digamma_matches_scipy_across_its_range() {
        // scipy.special.digamma
        let cases = [
            (1.0, -0.5772156649015329),
            (0.5, -1.9635100260214235),
            (2.0, 0.42278433509846713),
            (10.0, 2.251752589066721),
            (0.1, -10.423754940411076),
            (100.0, 4.600161852738088),
            (-0.5, 0.03648997397857651),
            (6.0, 1.7061176684318005),
            (5.999, 1.7059363290792255),
            (1e-3, -1000.5755719318103),
            (3.7, 1.1671535393615113),
            (1e6, 13.81551005796419),
        ];
        for (x, want) in cases {
            close(digamma(x), want, 1e-13);
        }
    }

    #[test]
    fn digamma_satisfies_its_recurrence_and_has_poles_at_non_positive_integers() {
        for x in [0.3, 1.7, 4.2, 9.5, 12.25, 40.0] {
            close(digamma(x + 1.0), digamma(x) + 1.0 / x, 1e-14);
        }
        assert!(digamma(0.0).is_nan());
        assert!(digamma(-3.0).is_nan());
        assert!(digamma(f64::NAN).is_nan());
    }

    #[test]
    fn lgamma_and_betaln_match_scipy() {
        // scipy.special.gammaln / betaln
        for (x, want) in [
            (0.5, 0.5723649429247),
            (10.0, 12.801827480081469),
            (0.1, 2.252712651734206),
            (100.5, 361.43554046777757),
            (1e-3, 6.907178885383853),
            (3.7, 1.428072326665388),
        ] {
            close(lgamma(x), want, 1e-14);
        }
        for (a, b, want) in [
            (2.0, 3.0, -2.4849066497880004),
            (0.5, 0.5, 1.1447298858494),
            (100.25, 140.5, -164.6092568808748),
            (1.5, 1e-3, 6.9071419281468485),
        ] {
            close(betaln(a, b), want, 1e-13);
        }
    }
}
