//! A fit on workers when one of them fails: the idle watchdog, which notices a worker that
//! stopped answering, and the retry policy, which splits the rows again over the workers left
//! and continues the fit from its last completed iteration.
//!
//! | fault | surfaces as | library form |
//! |---|---|---|
//! | a worker's connection is lost or its pass fails | [`GmmError::Worker`], naming it and the iteration ([`crate::pass`]) | [`fit_retrying`] with [`Reshard`] ([`Resharding`] for [`ShardedRows`]) |
//! | a worker stops answering (its pass blocks: Burn's remote client has no deadline) | no progress ([`crate::progress::idle_seconds`]) for `timeout` | [`ShardedRows::watch`], calling back with a [`Stall`] |
//!
//! The command line's `--retry-shards` and `--worker-timeout` are these two, with a callback
//! that prints the stall and ends the process (a pass blocked inside the backend cannot be
//! resumed from another thread).

use std::sync::{Arc, Weak};
use std::time::Duration;

use burn::tensor::Device;
use serde::Serialize;

use crate::config::GaussianMixtureConfig;
use crate::em::{fit_inner, Checkpoint};
use crate::error::{GmmError, Result};
use crate::model::GaussianMixture;
use crate::shards::{worker_answers, ShardedRows};
use crate::source::{FitData, RowSource};

/// Rows that can be split again over the workers left after some failed.
pub trait Reshard: Sized {
    /// The error of splitting again (a [`GmmError`], or the caller's own).
    type Error: From<GmmError>;
    /// The rows (and sample weights) of the fit.
    fn data(&self) -> FitData<'_>;
    /// The same rows split over the workers but `lost` (their names, as
    /// [`GmmError::Worker`] gives them); `None` when no worker is left.
    fn without(self, lost: &[String]) -> std::result::Result<Option<Self>, Self::Error>;
    /// An error of the fit, in the caller's terms (by default, as it is).
    fn name_error(&self, e: GmmError) -> Self::Error {
        e.into()
    }
}

/// A worker lost during a fit that went on without it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LostWorker {
    /// Its name (address).
    pub worker: String,
    /// The iteration it failed in.
    pub iteration: Option<usize>,
    /// What happened.
    pub reason: String,
    /// Iterations completed before the failure, from which the fit continued.
    pub resumed_after: usize,
}

impl From<LostWorker> for GmmError {
    fn from(l: LostWorker) -> Self {
        GmmError::Worker {
            worker: l.worker,
            iteration: l.iteration,
            reason: l.reason,
        }
    }
}

/// A fit that survived the loss of workers: the model, the rows it ended on and the workers
/// lost on the way (in order).
pub struct Retried<R> {
    /// The fitted mixture.
    pub model: GaussianMixture,
    /// The rows over the workers left.
    pub rows: R,
    /// The workers lost.
    pub lost: Vec<LostWorker>,
}

/// Fits as [`crate::fit_warm`] does, and when a worker fails during EM, splits the rows again
/// over the others ([`Reshard::without`]) and continues from the last completed iteration
/// (the result equals the uninterrupted fit up to the order of the sums). Fails with the
/// worker's error when the failure came before EM (no iteration to continue from) or no
/// worker is left; any other error is the fit's, through [`Reshard::name_error`].
pub fn fit_retrying<R: Reshard>(
    config: &GaussianMixtureConfig,
    warm: Option<&GaussianMixture>,
    mut rows: R,
) -> std::result::Result<Retried<R>, R::Error> {
    let mut lost: Vec<LostWorker> = vec![];
    let mut resume: Option<Checkpoint> = None;
    loop {
        let mut failed = None;
        let previous = if resume.is_none() { warm } else { None };
        let fitted = fit_inner(config, rows.data(), previous, resume.take(), &mut failed);
        match (fitted, failed) {
            (Ok(model), _) => return Ok(Retried { model, rows, lost }),
            (
                Err(GmmError::Worker {
                    worker,
                    iteration,
                    reason,
                }),
                Some(checkpoint),
            ) => {
                let failure = LostWorker {
                    worker,
                    iteration,
                    reason,
                    resumed_after: checkpoint.iterations(),
                };
                let gone: Vec<String> = (lost.iter().chain([&failure]))
                    .map(|l| l.worker.clone())
                    .collect();
                rows = match rows.without(&gone)? {
                    Some(next) => next,
                    None => return Err(GmmError::from(failure).into()),
                };
                lost.push(failure);
                resume = Some(checkpoint);
            }
            (Err(e), _) => return Err(rows.name_error(e)),
        }
    }
}

/// [`ShardedRows`] kept with the rows they were split from, so that they can be split again
/// without some workers: the library's [`Reshard`].
pub struct Resharding<'a> {
    source: &'a dyn RowSource,
    devices: Vec<(Device, String)>,
    weights: Option<Vec<f64>>,
    chunk_rows: usize,
    sample_weight: Option<&'a [f64]>,
    rows: ShardedRows,
}

impl<'a> Resharding<'a> {
    /// The rows of `source` split over `devices` ([`ShardedRows::upload`]'s arguments).
    pub fn upload(
        source: &'a dyn RowSource,
        devices: Vec<(Device, String)>,
        weights: Option<Vec<f64>>,
        chunk_rows: usize,
    ) -> Result<Self> {
        let rows = ShardedRows::upload(source, &devices, weights.as_deref(), chunk_rows)?;
        Ok(Self {
            source,
            devices,
            weights,
            chunk_rows,
            sample_weight: None,
            rows,
        })
    }

    /// With a weight per row of the source.
    pub fn with_sample_weight(mut self, weights: Option<&'a [f64]>) -> Self {
        self.sample_weight = weights;
        self
    }

    /// The rows as they are split now.
    pub fn rows(&self) -> &ShardedRows {
        &self.rows
    }
}

impl Reshard for Resharding<'_> {
    type Error = GmmError;

    fn data(&self) -> FitData<'_> {
        FitData::new(&self.rows).with_sample_weight(self.sample_weight)
    }

    fn without(self, lost: &[String]) -> Result<Option<Self>> {
        let mut weights = self.weights.map(Vec::into_iter);
        let (devices, weights): (Vec<(Device, String)>, Vec<Option<f64>>) = (self.devices)
            .into_iter()
            .map(|device| (device, weights.as_mut().and_then(Iterator::next)))
            .filter(|((_, name), _)| !lost.contains(name))
            .unzip();
        if devices.is_empty() {
            return Ok(None);
        }
        let weights: Option<Vec<f64>> = weights.into_iter().collect();
        drop(self.rows);
        Resharding::upload(self.source, devices, weights, self.chunk_rows)
            .map(|r| Some(r.with_sample_weight(self.sample_weight)))
    }
}

/// No pass over a worker's rows has made progress for longer than the watchdog's timeout.
#[derive(Clone, Debug, PartialEq)]
pub struct Stall {
    /// The workers that do not answer a fresh connection, else the one most likely stalled
    /// ([`ShardedRows::stalled_worker`]), joined by `", "`.
    pub worker: String,
    /// Seconds since the last progress.
    pub idle_seconds: f64,
    /// The iteration the fit was in (none before the first).
    pub iteration: Option<usize>,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "worker {} stopped answering{}: no progress for {:.0} s",
            self.worker,
            InIteration(self.iteration),
            self.idle_seconds
        )
    }
}

/// `" in iteration N"` when there is one, nothing before the first: how a worker's failure
/// names when it happened.
pub struct InIteration(pub Option<usize>);

impl std::fmt::Display for InIteration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(it) => write!(f, " in iteration {it}"),
            None => Ok(()),
        }
    }
}

impl ShardedRows {
    /// Starts a watchdog: when no pass of this process reports progress for `timeout` while
    /// these rows exist, `on_stall` is called once, from the watchdog's thread, with the
    /// worker that stopped answering. The blocked pass cannot be cancelled (Burn's remote
    /// client has no deadline), so `on_stall` decides: the command line ends the process. The
    /// watchdog stops when the rows are dropped.
    pub fn watch(
        self: &Arc<Self>,
        timeout: Duration,
        on_stall: impl FnOnce(Stall) + Send + 'static,
    ) {
        let rows: Weak<ShardedRows> = Arc::downgrade(self);
        let timeout = timeout.as_secs_f64().max(1e-3);
        let tick = Duration::from_secs_f64((timeout / 4.0).min(0.5));
        std::thread::spawn(move || loop {
            std::thread::sleep(tick);
            let Some(rows) = rows.upgrade() else {
                return;
            };
            let idle = crate::progress::idle_seconds();
            if idle > timeout {
                on_stall(rows.stall(idle));
                return;
            }
        });
    }

    /// The stall after `idle` seconds without progress: the workers that do not answer a
    /// fresh handshake, else the likeliest one.
    fn stall(&self, idle: f64) -> Stall {
        let silent: Vec<String> = self
            .layout()
            .into_iter()
            .map(|(name, _, _)| name)
            .filter(|name| !worker_answers(name))
            .collect();
        let worker = if silent.is_empty() {
            self.stalled_worker()
        } else {
            silent.join(", ")
        };
        let it = crate::progress::current_iteration();
        Stall {
            worker,
            idle_seconds: idle,
            iteration: (it > 0).then_some(it),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FitData;
    use crate::{Backend, CovarianceType, Mixture, Precision};
    use burn::tensor::{DType, Tensor};
    use mixburn_backend::host::tensor_from_f64;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Rows on two "workers", the second of which panics (a lost connection) on its
    /// `fail_at`-th read; without it, on one.
    struct Flaky {
        x: Tensor<2>,
        two: bool,
        reads: AtomicUsize,
        fail_at: usize,
    }

    impl RowSource for Flaky {
        fn dims(&self) -> [usize; 2] {
            self.x.dims()
        }
        fn device(&self) -> Device {
            self.x.device()
        }
        fn dtype(&self) -> DType {
            self.x.dtype()
        }
        fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
            if self.two && start >= self.dims()[0] / 2 {
                let n = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
                assert!(n != self.fail_at, "connection lost");
            }
            RowSource::rows(&self.x, start, len)
        }
        fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
            RowSource::select(&self.x, idx)
        }
        fn shards(&self) -> Vec<(Device, usize, usize)> {
            let n = self.dims()[0];
            if !self.two {
                return vec![(self.device(), 0, n)];
            }
            vec![(self.device(), 0, n / 2), (self.device(), n / 2, n - n / 2)]
        }
        fn chunk_ranges(&self, chunk: usize) -> Vec<(usize, usize)> {
            self.shards()
                .into_iter()
                .flat_map(|(_, s, l)| {
                    mixburn_backend::host::chunks(l, chunk).map(move |(a, l)| (s + a, l))
                })
                .collect()
        }
        fn describe(&self, row: usize) -> String {
            match (self.two, row >= self.dims()[0] / 2) {
                (true, true) => "worker-1".into(),
                (true, false) => "worker-0".into(),
                (false, _) => "local".into(),
            }
        }
    }

    impl Reshard for &Flaky {
        type Error = GmmError;
        fn data(&self) -> FitData<'_> {
            FitData::new(*self)
        }
        fn without(self, lost: &[String]) -> Result<Option<Self>> {
            assert_eq!(lost, ["worker-1"]);
            Ok(None)
        }
    }

    fn blobs(n: usize) -> Tensor<2> {
        let device = Backend::Flex.device_for(Precision::F64).unwrap();
        let x: Vec<f64> = (0..n * 3)
            .map(|i| {
                let (r, c) = (i / 3, i % 3);
                ((r * 7919 + c * 104729) % 1000) as f64 / 250.0 + 6.0 * (r % 3) as f64
            })
            .collect();
        tensor_from_f64(x, [n, 3], &device, Precision::F64.dtype())
    }

    #[test]
    fn a_fit_that_loses_a_worker_continues_on_the_others_and_ends_as_the_uninterrupted_fit() {
        let x = blobs(600);
        let config = GaussianMixtureConfig::new(3)
            .with_covariance_type(CovarianceType::Full)
            .with_seed(1)
            .with_tol(0.0)
            .with_max_iter(12)
            .with_chunk_size(64)
            .with_feature_cache_bytes(0);
        let whole = crate::fit(&config, &x).unwrap();
        // Count the second worker's reads over a whole fit, then fail two thirds of the way in.
        let counting = Flaky {
            x: x.clone(),
            two: true,
            reads: AtomicUsize::new(0),
            fail_at: usize::MAX,
        };
        crate::fit(&config, &counting).unwrap();
        let reads = counting.reads.load(Ordering::Relaxed);
        let flaky = Flaky {
            fail_at: reads * 2 / 3,
            reads: AtomicUsize::new(0),
            ..counting
        };
        let single = Flaky {
            x,
            two: false,
            reads: AtomicUsize::new(0),
            fail_at: usize::MAX,
        };
        // The library's policy over a source that is split again onto one worker.
        struct Retry<'a>(&'a Flaky, &'a Flaky, bool);
        impl Reshard for Retry<'_> {
            type Error = GmmError;
            fn data(&self) -> FitData<'_> {
                FitData::new(if self.2 { self.1 } else { self.0 })
            }
            fn without(self, lost: &[String]) -> Result<Option<Self>> {
                assert_eq!(lost, ["worker-1"]);
                Ok(Some(Retry(self.0, self.1, true)))
            }
        }
        let done = fit_retrying(&config, None, Retry(&flaky, &single, false)).unwrap();
        assert_eq!(done.lost.len(), 1);
        let lost = &done.lost[0];
        assert_eq!(lost.worker, "worker-1");
        assert!(lost.reason.contains("connection lost"), "{}", lost.reason);
        assert!(lost.resumed_after >= 1, "{lost:?}");
        assert_eq!(lost.iteration, Some(lost.resumed_after + 1));
        assert!(done.rows.2);
        assert_eq!(done.model.n_iter, whole.n_iter);
        assert!((done.model.lower_bound - whole.lower_bound).abs() < 1e-9);
        let (a, b) = (done.model.means(), whole.means());
        assert!(a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-9));
        // With no worker left, the worker's error.
        let flaky = Flaky {
            reads: AtomicUsize::new(0),
            ..flaky
        };
        match fit_retrying(&config, None, &flaky) {
            Err(GmmError::Worker { worker, .. }) => assert_eq!(worker, "worker-1"),
            other => panic!("{:?}", other.map(|r| r.lost)),
        }
    }

    #[test]
    fn resharding_splits_the_rows_again_over_the_workers_left() {
        let x = blobs(90);
        let device = x.device();
        let devices: Vec<(Device, String)> = ["a", "b", "c"]
            .iter()
            .map(|n| (device.clone(), n.to_string()))
            .collect();
        let weights = [1.0, 2.0, 3.0];
        let r = Resharding::upload(&x, devices, Some(weights.to_vec()), 7).unwrap();
        let starts = |r: &Resharding| r.rows().layout();
        assert_eq!(
            starts(&r),
            [
                ("a".into(), 0, 15),
                ("b".into(), 15, 30),
                ("c".into(), 45, 45)
            ]
        );
        let r = r.without(&["b".into()]).unwrap().unwrap();
        // The weights of the workers left: 1 and 3.
        assert_eq!(starts(&r), [("a".into(), 0, 23), ("c".into(), 23, 67)]);
        let got = mixburn_backend::host::to_f64(r.data().rows.rows(0, 90).unwrap()).unwrap();
        assert_eq!(got, mixburn_backend::host::to_f64(x.clone()).unwrap());
        assert!(r.without(&["a".into(), "c".into()]).unwrap().is_none());
    }

    #[test]
    fn a_stall_names_the_worker_and_the_iteration() {
        let s = Stall {
            worker: "ws://127.0.0.1:1".into(),
            idle_seconds: 12.4,
            iteration: Some(3),
        };
        assert_eq!(
            s.to_string(),
            "worker ws://127.0.0.1:1 stopped answering in iteration 3: no progress for 12 s"
        );
        let s = Stall {
            iteration: None,
            ..s
        };
        assert_eq!(
            s.to_string(),
            "worker ws://127.0.0.1:1 stopped answering: no progress for 12 s"
        );
    }
}
