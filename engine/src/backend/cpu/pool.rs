//! A tiny fork-join thread pool for the CPU kernels.
//!
//! A decode step runs a few hundred small matmuls of 50–500 µs each, so waking sleeping threads
//! for every one of them (rayon parks idle workers) would cost more than the split gains. Workers
//! here spin for a short while after each job before they block, the way ggml's pool does.
//! With one thread the pool spawns nothing and runs every job inline (this is the wasm case).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How many times an idle worker polls for a new job before it blocks on the condition variable.
const SPIN_ROUNDS: u32 = 200_000;

type Job = dyn Fn(usize) + Sync;

/// A job's closure, with its lifetime erased so that workers can see it.
/// Only [`Pool::run`] creates one, and it does not return until every worker is done with it.
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync`, and `run` keeps it alive while any worker may call it.
unsafe impl Send for JobPtr {}

struct Shared {
    /// Bumped once per job; workers watch it.
    epoch: AtomicUsize,
    job: Mutex<Option<(JobPtr, usize)>>,
    wake: Condvar,
    /// Next task index to claim.
    next: AtomicUsize,
    /// Workers that have not finished the current job.
    busy: AtomicUsize,
    stop: AtomicBool,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool that runs jobs on `threads` threads in all (the caller's included).
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: Mutex::new(None),
            wake: Condvar::new(),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("nib-cpu-{i}"))
                .spawn(move || worker(&s));
            match spawned {
                Ok(h) => workers.push(h),
                // Fewer threads is slower, not wrong.
                Err(_) => break,
            }
        }
        Pool { shared, workers }
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(i)` for every `i` in `0..n_tasks`, spread over the pool's threads; returns when all
    /// calls have returned.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() || n_tasks <= 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let s = &*self.shared;
        // SAFETY: erases the lifetime of `f`; we wait below until no worker can touch it.
        let short: *const (dyn Fn(usize) + Sync + '_) = f;
        let ptr = JobPtr(unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(short) });
        s.next.store(0, Ordering::SeqCst);
        s.busy.store(self.workers.len(), Ordering::SeqCst);
        {
            let mut job = s.job.lock().unwrap_or_else(|p| p.into_inner());
            *job = Some((ptr, n_tasks));
            s.epoch.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        claim_tasks(s, f, n_tasks);
        // A worker may have been descheduled mid-task (more threads than free cores): after a
        // short spin, give it the core instead of burning the rest of our time slice.
        let mut spins = 0u32;
        while s.busy.load(Ordering::Acquire) != 0 {
            if spins < 2_000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut job = s.job.lock().unwrap_or_else(|p| p.into_inner());
        *job = None;
    }
}

fn claim_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync + '_), n_tasks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n_tasks {
            break;
        }
        f(i);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0usize;
    loop {
        // Wait for a new epoch: spin first, then block.
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Relaxed) {
            if spins < SPIN_ROUNDS {
                spins += 1;
                if spins.is_multiple_of(1024) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            } else {
                let guard = s.job.lock().unwrap_or_else(|p| p.into_inner());
                if s.epoch.load(Ordering::Acquire) == seen && !s.stop.load(Ordering::Relaxed) {
                    drop(s.wake.wait(guard).unwrap_or_else(|p| p.into_inner()));
                }
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = *s.job.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((JobPtr(ptr), n_tasks)) = job {
            // SAFETY: `run` keeps the closure alive until `busy` reaches zero, which needs us.
            claim_tasks(s, unsafe { &*ptr }, n_tasks);
        }
        s.busy.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.job.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A shared output buffer that tasks write to at disjoint ranges.
pub struct Disjoint<'a> {
    ptr: *mut f32,
    len: usize,
    _life: std::marker::PhantomData<&'a mut [f32]>,
}
// SAFETY: tasks write disjoint ranges (the caller's contract on `slice`).
unsafe impl Send for Disjoint<'_> {}
unsafe impl Sync for Disjoint<'_> {}

impl<'a> Disjoint<'a> {
    pub fn new(buf: &'a mut [f32]) -> Self {
        Disjoint { ptr: buf.as_mut_ptr(), len: buf.len(), _life: std::marker::PhantomData }
    }

    /// `buf[start..start + len]`.
    ///
    /// # Safety
    /// No two live slices obtained from the same `Disjoint` may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> Option<&mut [f32]> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(std::slice::from_raw_parts_mut(self.ptr.add(start), len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for n in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }
}
