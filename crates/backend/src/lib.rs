//! # mixburn-backend
//!
//! Where the numerics run, not what they compute:
//!
//! - [`backend`]: [`Backend`] (`flex`, `ndarray`, `wgpu`: Cargo features of this crate) and
//!   [`Precision`] (f32, f64), and the device for a computation, checked once; Burn's own
//!   default device kept on the CPU (`default_device_on_cpu`, for `main`).
//! - [`host`]: small arrays between host memory and a device, in the computation's dtype;
//!   chunk ranges and running sums of per-chunk tensors.
//! - [`allocator`]: the process's allocator policy for chunked passes (freed chunk buffers
//!   kept for the next chunk), set once by a program's `main`.
//! - [`simd`]: the CPU's widest vector instructions, detected once, and [`vectorised!`], which
//!   compiles a host kernel once per level and calls the copy this CPU runs.
//! - [`team`]: the short parallel regions of a training step on spinning workers and the
//!   calling thread (as OpenMP runs them), rayon's pool where the team is taken.
//! - [`spelling`]: each choice's spellings written once ([`spellings!`]).
//! - [`error`]: [`BackendError`]; `mixburn-gmm` converts it into its own error, so the
//!   messages are the same wherever they surface.
//! - Backend extensions (Burn's `backend_extension`, each with its own backward pass): where
//!   Burn's own operations leave the machine's speed on the table, an operation implemented
//!   for flex on its host buffers and by Burn's operations everywhere else. [`dense`]: a
//!   fully connected layer `act(x·W + b)` and the split product it runs on; [`bce`]: binary
//!   cross-entropy with logits, summed per row.
//!
//! The manifest also pins the feature sets of Burn's own dependencies (no code uses them), so
//! that a single-crate build reuses the workspace's one Burn build.

pub mod allocator;
pub mod backend;
pub mod bce;
pub mod dense;
pub mod error;
#[cfg(feature = "flex")]
mod flex_host;
pub mod host;
pub mod simd;
pub mod spelling;
pub mod team;

pub use backend::{Backend, Precision};
pub use error::{BackendError, Result};
