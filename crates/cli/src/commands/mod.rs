//! One module per command: its arguments (a clap `Args` or `Subcommand`) and its handler,
//! `run`, which returns the JSON object the command prints.

pub mod anomaly;
pub mod fit;
pub mod fit_bayesian;
pub mod ood;
pub mod predict;
pub mod sample;
pub mod score;
pub mod select;
pub mod serve;
pub mod vade;
