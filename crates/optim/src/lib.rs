//! # mixburn-optim
//!
//! Optimizers for the models' training loops, as Burn [`Optimizer`](burn::optim::Optimizer)s:
//! they plug into [`ModuleOptimizer`](burn::optim::ModuleOptimizer), so a training step is
//! `optim.step(lr, module, grads)` whichever optimizer built it, and their state is saved and
//! loaded as burn-optim's records.
//!
//! - [`adam`]: [`FusedAdam`], burn-optim's Adam computed in one in-place pass over each
//!   parameter's host buffers on the CPU backends.

pub mod adam;

pub use adam::{FusedAdam, FusedAdamConfig, FusedAdamState};
