//! The step schedule of a (possibly variable-length) batch. Rows are processed sorted by
//! length, longest first, so the rows still running at step `s` are always a prefix and each
//! step's GEMM covers exactly them, as PyTorch's packed sequences do, without the caller
//! sorting anything.

use crate::error::{LstmError, Result};

/// Step schedule for one batch.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Time steps of the input.
    pub steps: usize,
    /// Batch size.
    pub batch: usize,
    /// `perm[row]` is the original batch index of sorted row `row`.
    pub perm: Vec<usize>,
    /// Length of each sorted row.
    pub lens: Vec<usize>,
    /// Rows active at each step (`active[s]` for `s < max_len`).
    pub active: Vec<usize>,
    /// Whether rows are in original order and all run every step (no gathers needed).
    pub dense: bool,
}

impl Schedule {
    /// Builds the schedule; `lengths` (one per batch row, each in `1..=steps`) or full length.
    pub fn new(steps: usize, batch: usize, lengths: Option<&[usize]>) -> Result<Self> {
        if steps == 0 {
            return Err(LstmError::Shape("X: expected at least one time step, got 0".into()));
        }
        if batch == 0 {
            return Err(LstmError::Shape("X: expected a batch of at least one sequence, got 0".into()));
        }
        // The schedule's own vectors: three of the batch and one of the steps.
        let words = crate::alloc::product("X", &[batch, 3])?.checked_add(steps);
        let bytes = words.and_then(|w| w.checked_mul(std::mem::size_of::<usize>()));
        crate::alloc::check_fits(
            &format!("X: the step schedule of {steps} steps x {batch} sequences"),
            bytes.unwrap_or(usize::MAX),
        )?;
        let what = "X: the step schedule (one entry per sequence)";
        let lens_orig: Vec<usize> = match lengths {
            None => crate::alloc::filled(what, batch, steps)?,
            Some(l) => {
                if l.len() != batch {
                    return Err(LstmError::Shape(format!(
                        "sequence_lens: expected {batch} lengths (one per batch row), got {}",
                        l.len()
                    )));
                }
                for (b, &n) in l.iter().enumerate() {
                    if n == 0 || n > steps {
                        return Err(LstmError::Value(format!(
                            "sequence_lens: expected each length in 1..={steps}, got {n} at batch index {b}"
                        )));
                    }
                }
                crate::alloc::copy_of(what, l)?
            }
        };
        let mut perm: Vec<usize> = crate::alloc::with_capacity(what, batch)?;
        perm.extend(0..batch);
        let dense = lens_orig.iter().all(|&n| n == steps);
        if !dense {
            // Stable: equal lengths keep their order. (Full-length batches need no sort.)
            perm.sort_by(|&a, &b| lens_orig[b].cmp(&lens_orig[a]));
        }
        let mut lens: Vec<usize> = crate::alloc::with_capacity(what, batch)?;
        lens.extend(perm.iter().map(|&b| lens_orig[b]));
        let max_len = lens[0];
        // Rows are sorted longest first: rows 0..=r run at every step before lens[r], so the
        // steps from the next row's length up to lens[r] have r + 1 running rows.
        let mut active = crate::alloc::filled("X: the step schedule (one entry per step)", max_len, 0usize)?;
        for (r, &len) in lens.iter().enumerate() {
            let next = lens.get(r + 1).copied().unwrap_or(0);
            active[next..len].fill(r + 1);
        }
        Ok(Schedule { steps, batch, perm, lens, active, dense })
    }

    /// Steps that any row runs.
    pub fn max_len(&self) -> usize {
        self.active.len()
    }

    /// Time index of sorted row `row` at step `s`.
    #[inline]
    pub fn time_of(&self, row: usize, s: usize, reverse: bool) -> usize {
        if reverse {
            self.lens[row] - 1 - s
        } else {
            s
        }
    }

    /// Whether step `s` of row `row` reads time `s` of batch row `row` (no gather needed).
    pub fn identity(&self, reverse: bool) -> bool {
        self.dense && !reverse
    }

    /// The active `(step, row)` pairs as runs of consecutive rows of the step-major layout
    /// `[max_len * batch]`, in order: `(first_row, count)`. Full steps in a row merge into one
    /// run, so a dense schedule is a single run; the products over all steps (input projection,
    /// weight gradients) then skip the rows that have ended, as PyTorch's packed sequences do.
    pub fn active_runs(&self) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (s, &n) in self.active.iter().enumerate() {
            let first = s * self.batch;
            match runs.last_mut() {
                Some((f, c)) if *f + *c == first => *c += n,
                _ if n > 0 => runs.push((first, n)),
                _ => {}
            }
        }
        runs
    }

    /// Active `(step, row)` pairs in all: the rows of [`Schedule::active_runs`].
    pub fn tokens(&self) -> usize {
        self.active.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_runs_cover_exactly_the_running_rows() {
        let s = Schedule::new(4, 3, Some(&[2, 4, 1])).unwrap();
        // Sorted lengths 4, 2, 1: step 0 full (rows 0..3), step 1 rows 3..5, steps 2-3 one each.
        assert_eq!(s.active, vec![3, 2, 1, 1]);
        assert_eq!(s.active_runs(), vec![(0, 5), (6, 1), (9, 1)]);
        assert_eq!(s.tokens(), 7);
        let dense = Schedule::new(5, 2, None).unwrap();
        assert_eq!(dense.active_runs(), vec![(0, 10)]);
    }

    #[test]
    fn sorts_longest_first_and_counts_active_rows() {
        let s = Schedule::new(5, 4, Some(&[2, 5, 1, 5])).unwrap();
        assert_eq!(s.perm, vec![1, 3, 0, 2]);
        assert_eq!(s.lens, vec![5, 5, 2, 1]);
        assert_eq!(s.active, vec![4, 3, 2, 2, 2]);
        assert!(!s.dense);
        assert_eq!(s.time_of(2, 0, true), 1);
    }

    #[test]
    fn rejects_bad_lengths_naming_the_argument() {
        let e = Schedule::new(5, 2, Some(&[0, 3])).unwrap_err().to_string();
        assert!(e.contains("sequence_lens") && e.contains("got 0"), "{e}");
        let e = Schedule::new(5, 2, Some(&[6, 3])).unwrap_err().to_string();
        assert!(e.contains("1..=5") && e.contains("6"), "{e}");
        assert!(Schedule::new(5, 2, Some(&[1])).is_err());
        assert!(Schedule::new(0, 2, None).is_err());
        assert!(Schedule::new(3, 0, None).is_err());
    }

    #[test]
    fn impossible_sizes_are_memory_errors() {
        for (t, b) in [(1usize << 40, 1usize), (1, 1 << 40), (1 << 50, 1 << 3), (usize::MAX, usize::MAX)] {
            let e = Schedule::new(t, b, None).unwrap_err();
            assert!(matches!(e, LstmError::Memory(_)) && e.to_string().starts_with("X:"), "{e}");
        }
    }

    #[test]
    fn active_counts_match_a_direct_count() {
        let lens = [3usize, 7, 1, 7, 2, 5, 5];
        let s = Schedule::new(7, lens.len(), Some(&lens)).unwrap();
        for (step, &n) in s.active.iter().enumerate() {
            assert_eq!(n, lens.iter().filter(|&&l| l > step).count(), "step {step}");
        }
    }
}
