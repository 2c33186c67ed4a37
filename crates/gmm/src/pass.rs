//! A pass over the rows, written once: walk a [`RowSource`] in chunks, each on the device that
//! holds it, compute a statistic per chunk and merge.
//!
//! | rows | groups of consecutive chunks | run on |
//! |---|---|---|
//! | one device | `workers` runs (1 unless the pass asks for more) | rayon's pool |
//! | sharded ([`crate::ShardedRows`]) | one per shard | one thread per shard, each waiting on its device |
//!
//! Every group folds its chunks in row order from `init()`; the groups' results are merged in
//! row order, so a pass on one device with one worker visits the rows exactly as a plain loop
//! would (same sums, same rounding), and a sharded pass is deterministic too.
//!
//! The executor owns what each pass used to write by hand: the groups and their concurrency,
//! a worker's failure (a panic inside a remote backend when its connection is lost) turned into
//! [`GmmError::Worker`] naming the worker (the pass's own errors keep their kind), the watchdog's "finished" signal
//! per shard ([`RowSource::finished`]), and progress (the pass's name, rows as they go). Moving
//! a pass's operands to each device once is [`crate::source::PerDevice`]'s job; the chunk rows
//! come from the memory budget ([`crate::budget`]).

use rayon::prelude::*;

use crate::error::GmmError;
use crate::source::RowSource;

/// One pass over `rows` in the chunk ranges given.
pub struct Pass<'a> {
    rows: &'a dyn RowSource,
    ranges: Vec<(usize, usize)>,
    label: Option<&'static str>,
    workers: usize,
}

impl<'a> Pass<'a> {
    /// A pass over `rows` in chunks of at most `chunk_rows` rows (each chunk on one device).
    pub fn new(rows: &'a dyn RowSource, chunk_rows: usize) -> Self {
        Self::over(rows, rows.chunk_ranges(chunk_rows.max(1)))
    }

    /// A pass over `rows` in the given ranges (in row order, each on one device).
    pub fn over(rows: &'a dyn RowSource, ranges: Vec<(usize, usize)>) -> Self {
        Self {
            rows,
            ranges,
            label: None,
            workers: 1,
        }
    }

    /// Reports the pass as `label` to the progress sink ([`crate::progress::set_progress`]),
    /// with its rows as they are done.
    pub fn labelled(mut self, label: &'static str) -> Self {
        self.label = Some(label);
        self
    }

    /// Splits the chunks of rows on one device into `workers` runs on rayon's pool (for a
    /// statistic whose product has a small output and a long reduction, which one kernel call
    /// does not spread over cores). Sharded rows always run one group per shard.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The chunk ranges, in row order.
    pub fn ranges(&self) -> &[(usize, usize)] {
        &self.ranges
    }

    /// The rows.
    pub fn rows(&self) -> &'a dyn RowSource {
        self.rows
    }

    /// The groups of consecutive chunks: one per shard, or `workers` on one device.
    fn groups_of(&self) -> (Vec<&[(usize, usize)]>, bool) {
        let shards = self.rows.shards();
        if shards.len() > 1 {
            let mut groups = vec![];
            let mut rest = &self.ranges[..];
            for (_, first, len) in &shards {
                let end = rest.partition_point(|(s, _)| *s < first + len);
                let (group, tail) = rest.split_at(end);
                if !group.is_empty() {
                    groups.push(group);
                }
                rest = tail;
            }
            (groups, true)
        } else if self.ranges.is_empty() {
            (vec![], false)
        } else {
            let workers = self.workers.clamp(1, self.ranges.len());
            let per = self.ranges.len().div_ceil(workers);
            (self.ranges.chunks(per).collect(), false)
        }
    }

    /// Runs `run` on each group of consecutive chunks (concurrently where there are several)
    /// and returns the groups' results in row order. `run` reports its own rows' progress.
    pub fn groups<S: Send, E: From<GmmError> + Send>(
        &self,
        run: impl Fn(&[(usize, usize)]) -> Result<S, E> + Sync,
    ) -> Result<Vec<S>, E> {
        if let Some(label) = self.label {
            crate::progress::pass(label, self.rows.dims()[0]);
        }
        let (groups, sharded) = self.groups_of();
        let guarded = |part: &[(usize, usize)]| -> Result<S, E> {
            let first = part[0].0;
            let pass = std::panic::AssertUnwindSafe(|| run(part));
            // A panic inside a backend (a lost connection) is the worker's failure; the
            // pass's own errors (a file's damage, a non-finite result) keep their kind.
            let out =
                std::panic::catch_unwind(pass).map_err(|panic| self.failed(first, &panic))??;
            self.rows.finished(first);
            Ok(out)
        };
        let results: Vec<Result<S, E>> = match groups.len() {
            0 => vec![],
            1 => vec![guarded(groups[0])],
            // Each shard's device computes while its thread waits on it: one thread per shard.
            _ if sharded => std::thread::scope(|scope| {
                let handles: Vec<_> = groups
                    .into_iter()
                    .map(|part| scope.spawn(move || guarded(part)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a group catches its own panic"))
                    .collect()
            }),
            // Local runs go to rayon's pool, whose threads also run the backend's parallel
            // kernels: on threads of their own, every run's kernels would fan out onto the
            // pool too and oversubscribe the cores.
            _ => groups.into_par_iter().map(guarded).collect(),
        };
        results.into_iter().collect()
    }

    /// Folds every group's chunks from `init()` with `step(acc, start, len)` in row order and
    /// merges the groups' results in row order; `None` when there are no rows.
    pub fn fold<S: Send, E: From<GmmError> + Send>(
        &self,
        init: impl Fn() -> S + Sync,
        step: impl Fn(S, usize, usize) -> Result<S, E> + Sync,
        merge: impl Fn(S, S) -> Result<S, E>,
    ) -> Result<Option<S>, E> {
        let parts = self.groups(|part| -> Result<S, E> {
            let mut acc = init();
            for &(start, len) in part {
                acc = step(acc, start, len)?;
                crate::progress::rows(len);
            }
            Ok(acc)
        })?;
        let mut merged = None;
        for part in parts {
            merged = Some(match merged {
                None => part,
                Some(acc) => merge(acc, part)?,
            });
        }
        Ok(merged)
    }

    /// [`fold`](Self::fold) of a per-chunk statistic: `chunk(start, len)` merged with `merge`
    /// within and across groups, in row order; `None` when there are no rows.
    pub fn reduce<S: Send, E: From<GmmError> + Send>(
        &self,
        chunk: impl Fn(usize, usize) -> Result<S, E> + Sync,
        merge: impl Fn(S, S) -> Result<S, E> + Sync,
    ) -> Result<Option<S>, E> {
        self.fold(
            || None,
            |acc: Option<S>, start, len| {
                let s = chunk(start, len)?;
                Ok(Some(match acc {
                    None => s,
                    Some(acc) => merge(acc, s)?,
                }))
            },
            |a, b| match (a, b) {
                (Some(a), Some(b)) => merge(a, b).map(Some),
                (a, b) => Ok(a.or(b)),
            },
        )
        .map(Option::flatten)
    }

    /// Runs `step(start, len)` on every chunk, one after another in row order (for a pass
    /// whose chunks feed a sequential consumer: a writer, a random stream), with the same
    /// failure handling as the concurrent passes.
    pub fn for_each<E: From<GmmError>>(
        &self,
        mut step: impl FnMut(usize, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(label) = self.label {
            crate::progress::pass(label, self.rows.dims()[0]);
        }
        let shards = self.rows.shards();
        let mut current: Option<usize> = None;
        for &(start, len) in &self.ranges {
            // The watchdog's signal as the pass leaves a shard.
            let shard = shards
                .iter()
                .position(|(_, f, l)| (*f..f + l).contains(&start));
            if let (Some(prev), true) = (current, shard != current) {
                self.rows.finished(shards[prev].1);
            }
            current = shard;
            let run = std::panic::AssertUnwindSafe(|| step(start, len));
            std::panic::catch_unwind(run).map_err(|panic| self.failed(start, &panic))??;
            crate::progress::rows(len);
        }
        if let Some(i) = current {
            self.rows.finished(shards[i].1);
        }
        Ok(())
    }
}

impl Pass<'_> {
    /// The failure of the worker holding row `row`, from the panic that ended its pass.
    fn failed<E: From<GmmError>>(&self, row: usize, panic: &Box<dyn std::any::Any + Send>) -> E {
        E::from(GmmError::Worker {
            worker: self.rows.describe(row),
            iteration: None,
            reason: format!("its pass failed: {}", panic_message(panic)),
        })
    }
}

/// The merge of per-chunk sums kept as host vectors: `a + b`, element by element.
pub fn add_sums(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    a
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
    use crate::source::on_device;
    use crate::{Backend, Precision};
    use burn::tensor::{Device, Tensor};
    use mixburn_backend::host::tensor_from_f64;

    fn rows(n: usize) -> Tensor<2> {
        let device = Backend::Flex.device_for(Precision::F64).unwrap();
        let x: Vec<f64> = (0..n * 2).map(|i| i as f64 * 0.1).collect();
        tensor_from_f64(x, [n, 2], &device, Precision::F64.dtype())
    }

    #[test]
    fn a_pass_visits_every_row_once_in_order_whatever_the_workers() {
        let x = rows(103);
        for workers in [1, 2, 5, 40] {
            let pass = Pass::new(&x, 10).workers(workers);
            let seen = pass
                .fold(
                    Vec::new,
                    |mut v, s, l| -> Result<_> {
                        v.push((s, l));
                        Ok(v)
                    },
                    |mut a, b| {
                        a.extend(b);
                        Ok(a)
                    },
                )
                .unwrap()
                .unwrap();
            assert_eq!(seen, x.chunk_ranges(10), "workers {workers}");
            let total = pass
                .reduce(
                    |s, l| Ok::<_, GmmError>((s..s + l).sum::<usize>()),
                    |a, b| Ok(a + b),
                )
                .unwrap();
            assert_eq!(total, Some((0..103).sum()));
        }
        let empty = rows(0);
        assert_eq!(
            Pass::new(&empty, 4)
                .reduce(|_, l| Ok::<_, GmmError>(l), |a, b| Ok(a + b))
                .unwrap(),
            None
        );
    }

    /// Rows on two "devices" (shards), as [`crate::ShardedRows`] gives them.
    struct TwoShards(Tensor<2>);

    impl RowSource for TwoShards {
        fn dims(&self) -> [usize; 2] {
            self.0.dims()
        }
        fn device(&self) -> Device {
            self.0.device()
        }
        fn dtype(&self) -> burn::tensor::DType {
            self.0.dtype()
        }
        fn rows(&self, start: usize, len: usize) -> Result<Tensor<2>> {
            RowSource::rows(&self.0, start, len)
        }
        fn select(&self, idx: &[usize]) -> Result<Tensor<2>> {
            RowSource::select(&self.0, idx)
        }
        fn shards(&self) -> Vec<(Device, usize, usize)> {
            let n = self.dims()[0];
            vec![(self.device(), 0, n / 2), (self.device(), n / 2, n - n / 2)]
        }
        fn chunk_ranges(&self, chunk: usize) -> Vec<(usize, usize)> {
            let n = self.dims()[0];
            let mut out: Vec<(usize, usize)> =
                mixburn_backend::host::chunks(n / 2, chunk).collect();
            out.extend(
                mixburn_backend::host::chunks(n - n / 2, chunk).map(|(s, l)| (s + n / 2, l)),
            );
            out
        }
        fn describe(&self, row: usize) -> String {
            format!("worker-{}", usize::from(row >= self.dims()[0] / 2))
        }
    }

    #[test]
    fn a_panicking_shard_is_that_workers_error_and_errors_keep_their_kind() {
        let x = TwoShards(rows(40));
        let pass = Pass::new(&x, 7);
        let sum = |s: usize, l: usize| -> Result<f64> {
            let t = on_device(&x.rows(s, l)?, &x.device());
            Ok(mixburn_backend::host::to_f64(t.sum())?[0])
        };
        let whole = pass.reduce(sum, |a, b| Ok(a + b)).unwrap().unwrap();
        let expected: f64 = (0..80).map(|i| i as f64 * 0.1).sum();
        assert!((whole - expected).abs() < 1e-9);
        // A panic (a lost connection inside the backend) and an error, each in the second shard.
        for panics in [true, false] {
            let err = pass
                .reduce(
                    |s, l| -> Result<usize> {
                        if s >= 20 {
                            if panics {
                                panic!("connection lost");
                            }
                            return Err(GmmError::Backend("no reply".into()));
                        }
                        Ok(l)
                    },
                    |a, b| Ok(a + b),
                )
                .unwrap_err();
            match err {
                GmmError::Worker { worker, reason, .. } if panics => {
                    assert_eq!(worker, "worker-1");
                    assert!(reason.contains("connection lost"), "{reason}");
                }
                GmmError::Backend(reason) if !panics => assert_eq!(reason, "no reply"),
                other => panic!("{other}"),
            }
            let err = pass
                .for_each(|s, _| -> Result<()> {
                    if s >= 20 && panics {
                        panic!("connection lost");
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string());
            assert_eq!(err.is_err(), panics, "{err:?}");
        }
    }
}
