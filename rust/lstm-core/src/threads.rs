//! Thread control: the engine's own rayon pool, its size (`PYLSTM_NUM_THREADS` or
//! [`set_num_threads`]), a spin barrier for the persistent per-step teams, and a reset for a
//! forked child (whose copy of the pool has no threads behind it).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{LstmError, Result};

mod helpers;
use helpers::Helpers;

/// The pool and the lock that lets one computation at a time use it: two computations whose
/// teams interleave on the same threads would wait on each other's barriers forever.
struct PoolState {
    threads: AtomicUsize,
    pool: Mutex<Option<Arc<rayon::ThreadPool>>>,
    /// The helper team of small calls ([`helpers`]), started on first use.
    helpers: Mutex<Option<Arc<Helpers>>>,
    run_lock: Mutex<()>,
}

impl PoolState {
    fn new(threads: usize) -> Self {
        PoolState {
            threads: AtomicUsize::new(threads),
            pool: Mutex::new(None),
            helpers: Mutex::new(None),
            run_lock: Mutex::new(()),
        }
    }
}

static STATE: AtomicPtr<PoolState> = AtomicPtr::new(std::ptr::null_mut());
static INIT: OnceLock<()> = OnceLock::new();

fn default_threads() -> usize {
    if let Ok(v) = std::env::var("PYLSTM_NUM_THREADS") {
        if let Ok(n) = v.trim().parse::<usize>() {
            if n > 0 {
                return n;
            }
        }
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn state() -> &'static PoolState {
    INIT.get_or_init(|| {
        let s = Box::into_raw(Box::new(PoolState::new(default_threads())));
        STATE.store(s, Ordering::SeqCst);
    });
    // SAFETY: STATE always points to a leaked, never-freed PoolState once INIT ran.
    unsafe { &*STATE.load(Ordering::SeqCst) }
}

/// Parses a `PYLSTM_NUM_THREADS` value: a positive integer.
pub fn parse_thread_count(v: &str) -> Result<usize> {
    match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(LstmError::Value(format!("PYLSTM_NUM_THREADS: expected a positive integer, got {v:?}"))),
    }
}

/// The number of threads the engine uses.
pub fn num_threads() -> usize {
    state().threads.load(Ordering::SeqCst)
}

/// Sets the number of threads the engine uses (at least 1). The pool is rebuilt lazily.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(LstmError::Value("num_threads: expected a positive integer, got 0".into()));
    }
    let s = state();
    let _guard = s.run_lock.lock().unwrap_or_else(|e| e.into_inner());
    s.threads.store(n, Ordering::SeqCst);
    *s.pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *s.helpers.lock().unwrap_or_else(|e| e.into_inner()) = None;
    Ok(())
}

/// Forgets the pool without touching it: call in a forked child, where the parent's worker
/// threads do not exist and its locks may be held by threads that will never run.
pub fn reset_after_fork() {
    let threads = INIT.get().map(|_| num_threads()).unwrap_or_else(default_threads);
    let fresh = Box::into_raw(Box::new(PoolState::new(threads)));
    INIT.get_or_init(|| ());
    // The old state is leaked on purpose: its mutexes may be locked forever in this process.
    STATE.store(fresh, Ordering::SeqCst);
}

fn pool(s: &PoolState) -> Result<Arc<rayon::ThreadPool>> {
    let mut slot = s.pool.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.as_ref() {
        return Ok(p.clone());
    }
    let n = s.threads.load(Ordering::SeqCst);
    let cpus = allowed_cpus();
    let pin = n <= cpus.len() && std::env::var("PYLSTM_PIN_THREADS").map_or(true, |v| v.trim() != "0");
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("pylstm-{i}"))
        .start_handler(move |i| {
            if pin {
                pin_current_thread(cpus[i]);
            }
        })
        .build()
        .map_err(|e| LstmError::Internal(format!("could not start {n} threads: {e}")))?;
    let p = Arc::new(p);
    *slot = Some(p.clone());
    Ok(p)
}

/// The helper team, started on first use: `threads - 1` helpers, left unpinned: the caller
/// (member 0) is not pinned either, and a helper pinned to the caller's core would share it
/// with the caller while another core idles.
fn helper_team(s: &PoolState) -> Result<Arc<Helpers>> {
    let mut slot = s.helpers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let n = s.threads.load(Ordering::SeqCst);
    let h = Helpers::start(n - 1)
        .map_err(|e| LstmError::Internal(format!("could not start {} helper threads: {e}", n - 1)))?;
    let h = Arc::new(h);
    *slot = Some(h.clone());
    Ok(h)
}

/// Calls with at least this many multiply-adds (and fewer than [`HELPER_MAX_WORK`]) run on
/// the helper team rather than the caller alone: about 1 MiB of float32 weights for one step
/// of one row, which split over two cores stays in their L2 caches (measured at hidden 256:
/// 54 us on one thread, mostly reading the weights from L3; 25 us on the team).
const HELPER_MIN_WORK: usize = 1 << 18;
/// Calls below this many multiply-adds (about 10 ms of work) run on the helper team, not the
/// rayon pool: handing them to lingering helpers costs about a microsecond, waking the pool
/// tens (measured on 2 Sapphire Rapids cores: one step of batch 16 at hidden 512 552 -> 387
/// us, of batch 1 at hidden 1024 787 -> 658 us, 25 steps of batch 16 at hidden 512 7.2 -> 6.5
/// ms). Bigger ones keep the pool, whose threads are pinned to cores (2.5G multiply-adds at
/// hidden 256 ran 13% slower on the unpinned helpers).
const HELPER_MAX_WORK: usize = 1 << 30;

/// Raw addresses a closure carries into the pool (the caller keeps them valid).
pub(crate) struct SyncPtrs<const N: usize>(pub(crate) [usize; N]);

/// Runs `f` on the engine's pool when called from a helper-team call (for work that brings
/// its own rayon parallelism, as the GEMM library does), else right here.
pub(crate) fn in_pool(f: &(dyn Fn() + Sync)) {
    let team = ON_HELPERS.with(|c| c.borrow().clone());
    match team.map(|t| (t, pool(state()))) {
        Some((t, Ok(p))) => {
            t.quiet(true);
            p.install(f);
            t.quiet(false);
        }
        _ => f(),
    }
}

thread_local! {
    /// Set while this thread runs a call on the helper team: its broadcasts go there.
    static ON_HELPERS: std::cell::RefCell<Option<Arc<Helpers>>> = const { std::cell::RefCell::new(None) };
}

/// Below this many multiply-adds a call runs on the caller's thread: waking pool threads
/// costs tens of microseconds, more than such a call's whole work (a single decoding step).
/// `PYLSTM_INLINE_WORK` overrides it (0 always uses the pool, as the thread tests do).
static INLINE_WORK: OnceLock<AtomicUsize> = OnceLock::new();

fn inline_work() -> &'static AtomicUsize {
    INLINE_WORK.get_or_init(|| {
        let v = std::env::var("PYLSTM_INLINE_WORK").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(1 << 20);
        AtomicUsize::new(v)
    })
}

/// Sets the work (multiply-adds) below which calls stay on the caller's thread.
pub fn set_inline_work(n: usize) {
    inline_work().store(n, Ordering::Relaxed);
}

/// Runs `f` inside the engine's pool with exclusive use of it, or on the calling thread when
/// `work` (multiply-adds) is below the inline threshold ([`set_inline_work`]). Panics inside are caught and returned as
/// [`LstmError::Internal`].
pub(crate) fn with_pool<R: Send>(work: usize, f: impl FnOnce(usize) -> R + Send) -> Result<R> {
    let s = state();
    let _guard = s.run_lock.lock().unwrap_or_else(|e| e.into_inner());
    let threads = s.threads.load(Ordering::SeqCst);
    let inline = work < inline_work().load(Ordering::Relaxed);
    let out = if threads > 1 && (HELPER_MIN_WORK..HELPER_MAX_WORK).contains(&work) {
        let team = helper_team(s)?;
        ON_HELPERS.with(|c| *c.borrow_mut() = Some(team));
        let out = catch_unwind(AssertUnwindSafe(|| f(threads)));
        ON_HELPERS.with(|c| *c.borrow_mut() = None);
        out
    } else if inline || threads <= 1 {
        catch_unwind(AssertUnwindSafe(|| f(1)))
    } else {
        let p = pool(s)?;
        // Lingering helpers would spin against this call's threads on the same cores.
        let team = s.helpers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = &team {
            h.quiet(true);
        }
        let out = catch_unwind(AssertUnwindSafe(|| p.install(|| f(threads))));
        if let Some(h) = &team {
            h.quiet(false);
        }
        out
    };
    out.map_err(|e| LstmError::Internal(panic_message(&e)))
}

/// Runs `work(worker_index)` on `n` workers at once, all inside the current pool (must be
/// called from [`with_pool`] with `n` no larger than its thread count). The workers may wait on
/// [`SpinBarrier`]s shared between them: every one of them runs concurrently.
///
/// rayon's broadcast hands each pool thread its own copy of the job, which no other thread can
/// take and which wakes that thread, so all `n` members are sure to run at once (spawned jobs
/// sit in one thread's queue until another steals them, and a member spinning at a barrier
/// waits on that). A member's index is its thread's index in the pool, so with pinned threads
/// the slice of weights an index works on stays in the same core's cache from call to call.
pub(crate) fn broadcast(n: usize, work: impl Fn(usize) + Sync) {
    if n <= 1 {
        work(0);
        return;
    }
    // Borrowed, not cloned: this runs on every fork-join of a small call.
    let on_helpers = ON_HELPERS.with(|c| match c.borrow().as_ref() {
        Some(team) => {
            team.run(n.min(team.size()), &work);
            true
        }
        None => false,
    });
    if on_helpers {
        return;
    }
    debug_assert!(n <= rayon::current_num_threads(), "broadcast of {n} on a smaller pool");
    let poisoned = &AtomicBool::new(false);
    let work = &work;
    rayon::broadcast(|ctx| {
        if ctx.index() < n {
            run_guarded(poisoned, || work(ctx.index()));
        }
    });
}

/// Panics inside an engine call, on the calling thread (`in_pool = false`) or in the last
/// pool worker of a broadcast (`in_pool = true`, with two threads or more), and returns the
/// [`LstmError::Internal`] that [`with_pool`] makes of it. For tests of panic handling only.
#[doc(hidden)]
pub fn debug_panic(in_pool: bool) -> Result<()> {
    with_pool(if in_pool { usize::MAX } else { 0 }, |threads| {
        if in_pool && threads > 1 {
            broadcast(threads, |i| {
                if i + 1 == threads {
                    panic!("debug panic in pool worker {i}");
                }
            });
        } else {
            panic!("debug panic on the calling thread");
        }
    })
}

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Keeps a pool thread on one core, so its slice of the weights stays in that core's cache and
/// the scheduler cannot stack two team members on one core (they would spin against each other).
/// `PYLSTM_PIN_THREADS=0` turns this off.
#[cfg(target_os = "linux")]
fn pin_current_thread(cpu: usize) {
    // SAFETY: the set is built locally; failure leaves the thread unpinned.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_current_thread(_cpu: usize) {}

fn run_guarded(poisoned: &AtomicBool, f: impl FnOnce()) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(f)) {
        poisoned.store(true, Ordering::SeqCst);
        POISON_EPOCH.fetch_add(1, Ordering::SeqCst);
        resume_unwind(e);
    }
}

/// Bumped whenever a worker panics, so spinning partners give up instead of waiting forever.
static POISON_EPOCH: AtomicUsize = AtomicUsize::new(0);

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "a worker thread panicked".to_string()
    }
}

/// A sense-reversing barrier for a fixed team of threads that all run at once: one atomic
/// add per arrival and a short spin, far cheaper than a task spawn per time step.
pub(crate) struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    epoch: usize,
}

impl SpinBarrier {
    pub(crate) fn new(n: usize) -> Self {
        SpinBarrier {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            epoch: POISON_EPOCH.load(Ordering::SeqCst),
        }
    }

    /// Waits until all `n` team members have arrived.
    pub(crate) fn wait(&self) {
        if self.n <= 1 {
            return;
        }
        let gen = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == gen {
            spins += 1;
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                if POISON_EPOCH.load(Ordering::Relaxed) != self.epoch {
                    panic!("a partner thread panicked");
                }
                std::thread::yield_now();
            }
        }
    }
}

/// Splits `0..len` into `parts` contiguous ranges whose boundaries are multiples of `align`
/// where possible; returns the range of part `i`.
pub(crate) fn split_range(len: usize, parts: usize, i: usize, align: usize) -> (usize, usize) {
    let parts = parts.max(1);
    let chunks = len.div_ceil(align);
    let base = chunks / parts;
    let extra = chunks % parts;
    let start_chunk = i * base + i.min(extra);
    let my = base + usize::from(i < extra);
    let start = (start_chunk * align).min(len);
    let end = ((start_chunk + my) * align).min(len);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_everything_once() {
        for len in [0usize, 1, 7, 16, 100, 513] {
            for parts in 1..6 {
                let mut next = 0;
                for i in 0..parts {
                    let (a, b) = split_range(len, parts, i, 16);
                    assert_eq!(a, next);
                    assert!(b >= a);
                    next = b;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn barrier_orders_phases() {
        let n = 2;
        let counter = AtomicUsize::new(0);
        with_pool(usize::MAX, |threads| {
            let team = threads.min(n);
            let bar = SpinBarrier::new(team);
            broadcast(team, |_| {
                for round in 0..100 {
                    counter.fetch_add(1, Ordering::SeqCst);
                    bar.wait();
                    assert!(counter.load(Ordering::SeqCst) >= (round + 1) * team);
                    bar.wait();
                }
            });
        })
        .unwrap();
    }

    #[test]
    fn thread_count_rejects_zero() {
        assert!(set_num_threads(0).is_err());
        assert!(parse_thread_count("x").is_err());
        assert_eq!(parse_thread_count(" 3 ").unwrap(), 3);
    }
}
