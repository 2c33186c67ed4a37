//! A team of spinning workers for the short parallel regions of a training step.
//!
//! A VaDE step on the CPU is about 25 parallel regions of 0.1–1 ms each (the layers' products,
//! the backward's product pairs, Adam's passes, the loss rows) with the calling thread's
//! element-wise work between them. On rayon's pool every region wakes sleeping workers (a futex
//! and an inter-processor interrupt, which on a virtual machine exit to the hypervisor) while
//! the caller sleeps until they finish. The team works as OpenMP does (and so PyTorch's CPU
//! operations):
//!
//! - **the caller takes part**: `threads − 1` workers (rayon's pool size, so
//!   `RAYON_NUM_THREADS` counts here too) and the calling thread claim the
//!   region's parts from one counter;
//! - **workers spin between regions** for [`SPIN`] (`MIXBURN_TEAM_SPIN_US` overrides it), then
//!   park, and the next region unparks them. A spinning worker yields its core every
//!   [`YIELD_EVERY`] spins, so that rayon's workers, when the caller hands them work between
//!   regions, do not wait for the spin to end.
//!
//! | call | runs `part(i)` for `i` in `0..parts` on |
//! |---|---|
//! | from a thread outside rayon's pool, team idle | the caller and the team's workers |
//! | from inside a part, a rayon worker, or while another caller has the team | rayon's pool (`par_iter`) |
//! | one thread (`RAYON_NUM_THREADS=1`) | the caller, in order |
//! | any, with `MIXBURN_TEAM=rayon` (to compare) | rayon's pool |
//!
//! Which thread runs a part never changes a result: parts are the caller's own split.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle worker spins for the next region before it parks.
pub const SPIN: Duration = Duration::from_micros(500);

/// A spinning worker yields its core once in this many spins (some microseconds apart).
const YIELD_EVERY: u32 = 256;

/// One region's work: `part(i)` for each part index.
type Part<'a> = dyn Fn(usize) + Sync + 'a;

/// Runs `part(i)` for every `i` in `0..parts`, each once, on the team (see the module doc for
/// which threads), and returns when all have finished. A part's panic is resumed on the caller
/// after every part has finished.
pub fn for_each(parts: usize, part: &Part<'_>) {
    if parts <= 1 {
        return (0..parts).for_each(part);
    }
    let team = team();
    if team.workers.is_empty() && !team.rayon {
        return (0..parts).for_each(part);
    }
    if team.rayon || rayon::current_thread_index().is_some() || !team.acquire() {
        return (0..parts).into_par_iter().for_each(part);
    }
    team.run(parts, part);
}

/// Runs `f(item)` for every item, each on one of the team's threads (as [`for_each`]).
pub fn for_each_item<T: Send>(items: Vec<T>, f: &(dyn Fn(T) + Sync)) {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    for_each(slots.len(), &|i| {
        let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(item) = item {
            f(item);
        }
    });
}

/// The threads a region runs on: the team's workers and the caller.
pub fn threads() -> usize {
    let team = team();
    if team.rayon {
        rayon::current_num_threads()
    } else {
        team.workers.len() + 1
    }
}

/// The ticket: the region's epoch (high 24 bits), its parts (20 bits) and the next unclaimed
/// part (low 20 bits), so that a claim is one compare-and-swap that cannot reach into a later
/// region.
const FIELD: u32 = 20;
const MASK: u64 = (1 << FIELD) - 1;
/// Regions of more parts run `MAX_PARTS` at a time.
const MAX_PARTS: usize = (1 << FIELD) - 1;

fn epoch(ticket: u64) -> u64 {
    ticket >> (2 * FIELD)
}

struct Worker {
    thread: Thread,
    sleeping: AtomicBool,
}

struct Team {
    ticket: AtomicU64,
    /// The current region's `&Part`, valid while any of its parts is unfinished.
    job: AtomicPtr<()>,
    /// Parts of the current region not yet finished.
    pending: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    busy: AtomicBool,
    workers: Vec<Worker>,
    spin: Duration,
    /// `MIXBURN_TEAM=rayon`: every region on rayon's pool (to compare).
    rayon: bool,
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let spin = std::env::var("MIXBURN_TEAM_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map_or(SPIN, Duration::from_micros);
        let rayon = std::env::var("MIXBURN_TEAM").is_ok_and(|v| v.trim() == "rayon");
        let count = if rayon {
            0
        } else {
            rayon::current_num_threads().saturating_sub(1)
        };
        // Each worker's first call of `team()` waits for this initialisation to finish.
        let workers = (0..count)
            .map_while(|i| {
                std::thread::Builder::new()
                    .name(format!("mixburn-team-{i}"))
                    .spawn(move || team().serve(i))
                    .ok()
            })
            .map(|handle| Worker {
                thread: handle.thread().clone(),
                sleeping: AtomicBool::new(false),
            })
            .collect();
        Team {
            ticket: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            panic: Mutex::new(None),
            busy: AtomicBool::new(false),
            workers,
            spin,
            rayon,
        }
    })
}

impl Team {
    /// Takes the team for one region; false when another caller has it.
    fn acquire(&self) -> bool {
        self.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Runs the region (the caller holds the team) and lets the team go.
    fn run(&self, parts: usize, part: &Part<'_>) {
        for start in (0..parts).step_by(MAX_PARTS) {
            let count = (parts - start).min(MAX_PARTS);
            let shifted = |i: usize| part(start + i);
            self.region(count, &shifted);
        }
        self.busy.store(false, Ordering::Release);
        if let Some(payload) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(payload);
        }
    }

    /// One region of at most [`MAX_PARTS`] parts.
    fn region(&self, parts: usize, part: &Part<'_>) {
        let job: &Part<'_> = part;
        self.job
            .store(&job as *const &Part<'_> as *mut (), Ordering::Relaxed);
        self.pending.store(parts, Ordering::Relaxed);
        let next = epoch(self.ticket.load(Ordering::Relaxed)).wrapping_add(1) & ((1 << 24) - 1);
        let ticket = (next << (2 * FIELD)) | ((parts as u64) << FIELD);
        // SeqCst with the workers' `sleeping` flags: a worker either sees this ticket before
        // it parks or is seen parked here and unparked.
        self.ticket.store(ticket, Ordering::SeqCst);
        for worker in &self.workers {
            if worker.sleeping.swap(false, Ordering::SeqCst) {
                worker.thread.unpark();
            }
        }
        self.claim(next);
        // The workers' last parts: short, so spin (yielding now and then).
        let mut spins = 0u32;
        while self.pending.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Claims and runs the parts of region `epoch_now` until none is left.
    fn claim(&self, epoch_now: u64) {
        let mut ticket = self.ticket.load(Ordering::Acquire);
        loop {
            let (parts, next) = ((ticket >> FIELD) & MASK, ticket & MASK);
            if epoch(ticket) != epoch_now || next >= parts {
                return;
            }
            match self.ticket.compare_exchange_weak(
                ticket,
                ticket + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the claimed part is unfinished, so the region's caller is still
                    // in `region`, whose `job` points at its live `&Part`.
                    let job = unsafe { *(self.job.load(Ordering::Relaxed) as *const &Part<'_>) };
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(next as usize))) {
                        let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(payload);
                    }
                    self.pending.fetch_sub(1, Ordering::Release);
                    ticket = self.ticket.load(Ordering::Acquire);
                }
                Err(now) => ticket = now,
            }
        }
    }

    /// A worker's life: wait for a region (spinning, then parked), take parts, repeat.
    fn serve(&self, index: usize) {
        let me = &self.workers[index];
        let mut seen = epoch(self.ticket.load(Ordering::Acquire));
        loop {
            let mut since = Instant::now();
            let mut spins = 0u32;
            let now = loop {
                let now = epoch(self.ticket.load(Ordering::Acquire));
                if now != seen {
                    break now;
                }
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && since.elapsed() >= self.spin {
                    me.sleeping.store(true, Ordering::SeqCst);
                    if epoch(self.ticket.load(Ordering::SeqCst)) == seen {
                        std::thread::park();
                    }
                    me.sleeping.store(false, Ordering::SeqCst);
                    since = Instant::now();
                } else if spins.is_multiple_of(YIELD_EVERY) {
                    // A thread waiting for this core (a rayon worker between the caller's
                    // regions) runs now; with none, this returns at once.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            };
            seen = now;
            self.claim(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_part_runs_once_in_every_region() {
        for parts in [1usize, 2, 3, 7, 64, 1000] {
            for _ in 0..50 {
                let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                for_each(parts, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "{parts}"
                );
            }
        }
    }

    #[test]
    fn items_are_each_taken_once() {
        let items: Vec<(usize, Vec<u8>)> = (0..37).map(|i| (i, vec![0u8; i])).collect();
        let sum = AtomicUsize::new(0);
        for_each_item(items, &|(i, v)| {
            assert_eq!(v.len(), i);
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 36 * 37 / 2);
    }

    #[test]
    fn regions_from_many_threads_and_nested_regions_all_finish() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        for_each(4, &|_| {
                            for_each(3, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 100 * 4 * 3);
    }

    #[test]
    fn a_part_that_panics_panics_the_caller_after_the_region() {
        let done = AtomicUsize::new(0);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            for_each(16, &|i| {
                if i == 5 {
                    panic!("part five");
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(caught.is_err());
        // On the team every other part runs (rayon's fallback may stop early).
        assert!(done.load(Ordering::Relaxed) <= 15);
        // The team is free again.
        let after = AtomicUsize::new(0);
        for_each(8, &|_| {
            after.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(after.load(Ordering::Relaxed), 8);
    }
}
