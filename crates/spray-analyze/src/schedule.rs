//! The worker threads that analyse groups side by side.

use crate::error::Result;

/// Groups in flight at once: one more than cores, so that the cores stay busy while a group
/// is in its serial parts or writing (200 × 1,300 maps: 113 s with 3 in flight, 125 s with 2,
/// on 2 cores).
pub(crate) fn groups_in_flight() -> usize {
    rayon::current_num_threads() + 1
}

/// Run `work` on every item, `threads` at a time, each thread taking the next item when done;
/// the results in item order. The first error stops the others from starting new items.
///
/// Why plain threads and not a rayon `par_iter`: the work itself uses rayon (the kNN blocks,
/// t-SNE's own pool), and a rayon worker that waits for inner work steals the *outer* jobs —
/// other groups — and starts them on its stack. With 1,000 groups that nested dozens of
/// half-done groups per thread (measured with heaptrack: every sample's prepared features alive
/// at the peak; 7.0 GB RSS for 1,000 × 1,300 maps). A thread outside the pool blocks instead,
/// so at most `threads` groups are in flight (200 classes × 1,300 maps: peak RSS 1,668 → 524
/// MiB).
pub(crate) fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let threads = threads.clamp(1, items.len().max(1));
    let per_thread: Vec<Result<Vec<(usize, R)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        match work(item) {
                            Ok(r) => out.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for r in per_thread {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AnalyzeError;

    #[test]
    fn side_by_side_keeps_item_order_and_stops_at_an_error() {
        let items: Vec<u64> = (0..50).collect();
        let squares = side_by_side(&items, 3, |&v| Ok(v * v)).unwrap();
        assert_eq!(squares, items.iter().map(|v| v * v).collect::<Vec<_>>());
        let started = std::sync::atomic::AtomicUsize::new(0);
        let err = side_by_side(&items, 2, |&v| {
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if v == 3 {
                Err(AnalyzeError::Internal("item 3".into()))
            } else {
                Ok(v)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("item 3"));
        // the error stopped the threads from taking (most of) the remaining items
        assert!(started.load(std::sync::atomic::Ordering::Relaxed) < 10);
        assert!(side_by_side(&[] as &[u64], 4, |&v| Ok(v))
            .unwrap()
            .is_empty());
    }
}
