//! How many classes the stage computes at once, each on its own thread with its own ONNX
//! Runtime session, and how many intra-op threads each session gets.
//!
//! Why several sessions rather than one with every core: a class's tests are a chain of small
//! requests (ten recipients, then the next look), with the stage's own image work — decoding,
//! pastes, blurs, colour transfers — between them, during which one session's threads wait.
//! With a session per worker, one class's image work runs while another's model runs. On the
//! realistic scenarios (2 cores) the stage's own work was a third of its time; and a small
//! transformer scores 1.3–1.5× as many images on two one-thread sessions as on one two-thread
//! session (benches/RESULTS.md). A class's result does not depend on which worker computes
//! it: every session is made the same way.

use spray_engine::Device;

/// At most this many workers: each holds a session (the model's weights and its activation
/// arena for a batch), which for a large CNN at 224 × 224 is a few hundred MB to a GB; past
/// a few sessions, more cores are better spent inside each one.
pub(crate) const MAX_WORKERS: usize = 4;

/// The stage's workers and each one's session threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workers {
    pub(crate) count: usize,
    /// Intra-op threads of each worker's session (0: ONNX Runtime's own choice, one per core,
    /// where there is one worker).
    pub(crate) session_threads: usize,
}

impl Workers {
    /// For `pending` classes on `device`, with `threads` intra-op threads asked for (0: one
    /// per core) on a machine of `cores`. A GPU has one worker: its session is not made
    /// faster by a second one beside it, and its memory is the scarce thing.
    pub(crate) fn plan(device: Device, threads: usize, cores: usize, pending: usize) -> Workers {
        let budget = if threads == 0 { cores } else { threads }.max(1);
        let count = match device {
            Device::Cpu => budget.min(MAX_WORKERS).min(pending).max(1),
            Device::Cuda { .. } => 1,
        };
        let session_threads = if count == 1 { threads } else { budget / count };
        Workers {
            count,
            session_threads,
        }
    }
}

/// This machine's cores as the standard library sees them (1 where it cannot tell).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(threads: usize, cores: usize, pending: usize) -> (usize, usize) {
        let w = Workers::plan(Device::Cpu, threads, cores, pending);
        (w.count, w.session_threads)
    }

    #[test]
    fn every_core_is_a_worker_up_to_the_cap_and_the_rest_go_into_the_sessions() {
        assert_eq!(plan(0, 2, 10), (2, 1));
        assert_eq!(plan(0, 16, 10), (MAX_WORKERS, 16 / MAX_WORKERS));
        assert_eq!(plan(0, 6, 10), (4, 1));
    }

    #[test]
    fn threads_asked_for_bound_the_whole_stage() {
        assert_eq!(plan(2, 16, 10), (2, 1));
        assert_eq!(plan(1, 16, 10), (1, 1));
        assert_eq!(plan(8, 2, 10), (4, 2));
    }

    #[test]
    fn one_pending_class_or_a_gpu_keeps_one_session_as_asked() {
        assert_eq!(plan(0, 16, 1), (1, 0));
        assert_eq!(plan(3, 16, 1), (1, 3));
        let gpu = Workers::plan(Device::Cuda { device_id: 0 }, 0, 16, 10);
        assert_eq!((gpu.count, gpu.session_threads), (1, 0));
        // Nothing to do still plans one worker (it finds nothing).
        assert_eq!(plan(0, 2, 0), (1, 0));
    }
}
