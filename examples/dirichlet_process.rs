//! The variational Dirichlet-process mixture on Old Faithful (bundled in `data/`): ask for up
//! to 8 components and let the stick-breaking prior switch off the ones the data do not need,
//! against a plain EM fit with 8 components, which uses them all:
//! `cargo run -p mixburn-examples --example dirichlet_process`.

use mixburn_gmm::Mixture;
use std::path::Path;

use mixburn_backend::host::tensor_from_f64;
use mixburn_gmm::{
    fit, fit_bayesian, Backend, BayesianGaussianMixtureConfig, GaussianMixtureConfig, Precision,
    WeightConcentrationPriorType,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/faithful.csv");
    let data = mixburn_data::read_matrix(&path)?;
    let device = Backend::Flex.device_for(Precision::F64)?;
    let x = tensor_from_f64(
        data.data,
        [data.rows, data.cols],
        &device,
        Precision::F64.dtype(),
    );
    let k = 8;
    let show = |w: &[f64]| {
        w.iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let em = fit(
        &GaussianMixtureConfig::new(k).with_n_init(3).with_seed(0),
        &x,
    )?;
    println!("EM, K={k}:                 weights {}", show(em.weights()));
    for prior in [
        WeightConcentrationPriorType::DirichletProcess,
        WeightConcentrationPriorType::DirichletDistribution,
    ] {
        let config = BayesianGaussianMixtureConfig::new(k)
            .with_weight_concentration_prior_type(prior)
            .with_n_init(3)
            .with_max_iter(500)
            .with_seed(0);
        let model = fit_bayesian(&config, &x)?;
        println!(
            "{prior}, K<={k}: weights {}; {} components above 0.01 (converged: {})",
            show(model.weights()),
            model.n_effective_components(0.01),
            model.converged
        );
    }
    Ok(())
}
