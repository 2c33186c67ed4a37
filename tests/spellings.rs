//! Every choice's spellings are declared once (`mixburn_backend::spellings!`): each name
//! parses to the variant that displays as it, in any case and with `-` or `_`; aliases parse;
//! an unknown spelling is refused with a message that lists every name.

use std::fmt::Display;
use std::str::FromStr;

use mixburn_anomaly::NanPolicy;
use mixburn_gmm::{
    Backend, CovarianceType, EstepForm, InitMethod, Precision, WeightConcentrationPriorType,
};
use mixburn_ood::Method;

/// Checks one choice type against its `SPELLINGS`.
fn check<T>(spellings: &[&str], aliases: &[(&str, &str)])
where
    T: FromStr + Display + PartialEq + std::fmt::Debug,
    T::Err: Display,
{
    assert!(!spellings.is_empty());
    for name in spellings {
        let v: T = name.parse().unwrap_or_else(|e| panic!("`{name}`: {e}"));
        assert_eq!(v.to_string(), *name, "a name displays as itself");
        for variant in [
            name.to_ascii_uppercase(),
            name.replace('-', "_"),
            name.replace('_', "-"),
        ] {
            let w: T = variant
                .parse()
                .unwrap_or_else(|e| panic!("`{variant}`: {e}"));
            assert_eq!(w, v, "`{variant}` spells `{name}`");
        }
    }
    for (alias, name) in aliases {
        let a: T = alias.parse().unwrap_or_else(|e| panic!("`{alias}`: {e}"));
        assert_eq!(a.to_string(), *name, "alias `{alias}`");
    }
    let err = "no-such-choice"
        .parse::<T>()
        .expect_err("an unknown spelling is refused")
        .to_string();
    assert!(err.contains("`no-such-choice`"), "{err}");
    for name in spellings {
        assert!(err.contains(name), "`{err}` lists `{name}`");
    }
}

#[test]
fn every_choice_parses_its_names_and_aliases_displays_its_names_and_lists_them_when_refusing() {
    check::<Backend>(Backend::SPELLINGS, &[]);
    check::<Precision>(
        Precision::SPELLINGS,
        &[("float32", "f32"), ("FLOAT64", "f64")],
    );
    check::<CovarianceType>(CovarianceType::SPELLINGS, &[]);
    check::<InitMethod>(
        InitMethod::SPELLINGS,
        &[
            ("kmeans++", "k-means++"),
            ("random-from-data", "random_from_data"),
        ],
    );
    check::<EstepForm>(EstepForm::SPELLINGS, &[]);
    check::<WeightConcentrationPriorType>(
        WeightConcentrationPriorType::SPELLINGS,
        &[("dirichlet-process", "dirichlet_process")],
    );
    check::<Method>(
        Method::SPELLINGS,
        &[
            ("relative-mahalanobis", "relative"),
            ("mahalanobis-plus-plus", "mahalanobis++"),
        ],
    );
    check::<NanPolicy>(NanPolicy::SPELLINGS, &[]);
    // The names are scikit-learn's where it has them (the CLI accepts `-` for `_`).
    assert_eq!(
        InitMethod::SPELLINGS,
        ["kmeans", "k-means++", "random", "random_from_data"]
    );
}
