//! Helper threads for small calls: the caller is member 0 of the team and the helpers the
//! others; after each job a helper spins for a while ([`LINGER`]) before it parks, so the
//! next call of a run of small ones (a decoding loop, one step per call) hands it work in
//! about a microsecond. Waking a sleeping pool thread costs tens of microseconds on these
//! machines, more than a whole step of a hidden-256 cell, which is why such calls used to run
//! on the caller alone and read all of the weights from the last-level cache; split over the
//! team, each member's share stays in its own core's L2 from call to call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{panic_message, POISON_EPOCH};

/// How long an idle helper spins, watching for the next job, before it parks.
const LINGER: Duration = Duration::from_micros(200);

type Job<'a> = dyn Fn(usize) + Sync + 'a;

/// What the caller and the helpers share.
struct Shared {
    /// Bumped once per job (and to shut down); helpers wait for it to move.
    epoch: AtomicUsize,
    /// The job of the current epoch: a pointer to the caller's `&Job`, valid until every
    /// helper has counted itself in `done` (the caller waits for that before returning).
    job: AtomicPtr<()>,
    /// Members of the current job (caller included).
    members: AtomicUsize,
    /// Helpers done with the current epoch.
    done: AtomicUsize,
    /// A helper's panic message, if its member panicked.
    panic: Mutex<Option<String>>,
    panicked: AtomicBool,
    /// Set while the engine runs a call on its rayon pool: lingering helpers park at once
    /// instead of spinning against that call's threads.
    quiet: AtomicBool,
    shutdown: AtomicBool,
    park: Mutex<()>,
    wake: Condvar,
}

/// A team of `threads - 1` helper threads (see the module documentation).
pub(crate) struct Helpers {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Helpers {
    /// Starts `n` helpers.
    pub(crate) fn start(n: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            members: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panic: Mutex::new(None),
            panicked: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(n);
        for k in 0..n {
            let sh = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("pylstm-helper-{k}"))
                .spawn(move || helper_loop(&sh, k + 1))?;
            threads.push(handle);
        }
        Ok(Helpers { shared, threads })
    }

    /// Number of members a job can have (the caller and the helpers).
    pub(crate) fn size(&self) -> usize {
        self.threads.len() + 1
    }

    /// Runs `work(m)` for members `m` in `0..n` at once, member 0 on the calling thread;
    /// returns when all are done. A member's panic is re-raised here, on the caller.
    pub(crate) fn run(&self, n: usize, work: &Job<'_>) {
        let sh = &*self.shared;
        debug_assert!(n <= self.size());
        // The helpers read `work` through a pointer to this local: it lives until this function
        // returns, which is after every helper has counted itself done with this epoch.
        let slot: &Job<'_> = work;
        sh.job.store(&slot as *const &Job<'_> as *mut (), Ordering::Relaxed);
        sh.members.store(n, Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        sh.epoch.fetch_add(1, Ordering::Release);
        {
            // Wakes the helpers that parked; taking the lock orders this with their check.
            let _g = sh.park.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| work(0)));
        if mine.is_err() {
            POISON_EPOCH.fetch_add(1, Ordering::SeqCst);
        }
        let helpers = self.threads.len();
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < helpers {
            spins += 1;
            if spins < 4096 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(e) = mine {
            std::panic::resume_unwind(e);
        }
        if sh.panicked.swap(false, Ordering::AcqRel) {
            let msg = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
            panic!("{}", msg.unwrap_or_else(|| "a helper thread panicked".into()));
        }
    }

    /// Tells lingering helpers to park now (a call is starting on the rayon pool).
    pub(crate) fn quiet(&self, on: bool) {
        self.shared.quiet.store(on, Ordering::Release);
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.shutdown.store(true, Ordering::Release);
        sh.epoch.fetch_add(1, Ordering::Release);
        {
            let _g = sh.park.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A helper: waits for each new epoch (spinning for [`LINGER`], then parked), runs its member
/// of the job if the job has that many, and counts itself done.
fn helper_loop(sh: &Shared, member: usize) {
    let mut seen = 0usize;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let epoch = loop {
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            std::hint::spin_loop();
            if spins.is_multiple_of(256) && (sh.quiet.load(Ordering::Acquire) || start.elapsed() > LINGER) {
                let mut g = sh.park.lock().unwrap_or_else(|e| e.into_inner());
                while sh.epoch.load(Ordering::Acquire) == seen {
                    g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            }
        };
        seen = epoch;
        if sh.shutdown.load(Ordering::Acquire) {
            return;
        }
        if member < sh.members.load(Ordering::Relaxed) {
            // SAFETY: the caller stored a pointer to its `&Job` for this epoch and keeps both
            // alive until this helper counts itself done below.
            let job: &Job<'_> = unsafe { *(sh.job.load(Ordering::Relaxed) as *const &Job<'_>) };
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| job(member))) {
                POISON_EPOCH.fetch_add(1, Ordering::SeqCst);
                *sh.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(panic_message(&e));
                sh.panicked.store(true, Ordering::Release);
            }
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_runs_once_per_job_and_jobs_follow_each_other() {
        let h = Helpers::start(3).unwrap();
        for n in [1, 2, 4, 3, 4] {
            let hits: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
            h.run(n, &|m| {
                hits[m].fetch_add(1, Ordering::SeqCst);
            });
            let got: Vec<usize> = hits.iter().map(|a| a.load(Ordering::SeqCst)).collect();
            assert_eq!(got, (0..4).map(|m| usize::from(m < n)).collect::<Vec<_>>(), "{n} members");
        }
    }

    #[test]
    fn parked_helpers_wake_for_the_next_job() {
        let h = Helpers::start(1).unwrap();
        let count = AtomicUsize::new(0);
        h.run(2, &|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        std::thread::sleep(LINGER * 5);
        h.run(2, &|_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_and_the_team_goes_on() {
        let h = Helpers::start(1).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            h.run(2, &|m| {
                if m == 1 {
                    panic!("member one fails");
                }
            })
        }));
        let msg = panic_message(&r.unwrap_err());
        assert!(msg.contains("member one fails"), "{msg}");
        let ok = AtomicUsize::new(0);
        h.run(2, &|_| {
            ok.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ok.load(Ordering::SeqCst), 2);
    }
}
