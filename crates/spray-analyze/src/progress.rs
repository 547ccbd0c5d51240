//! Progress inside one group's analysis: which step runs, and how far it is, so a
//! whole-dataset group (`grouping = "all"`: one group of up to 1.28M maps, minutes per step)
//! shows a bar with an ETA per step instead of "0/1 groups".

/// What a group's analysis reports while it runs.
pub trait StepObserver: Sync {
    /// A step starts with `total` units of work (0: unknown, drawn as a spinner).
    fn start(&self, step: &'static str, total: u64);
    /// `done` more units of the current step.
    fn advance(&self, done: u64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl StepObserver for Silent {
    fn start(&self, _: &'static str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// A terminal bar: one line per step ("kNN search", "eigenpairs", …) with its own ETA.
#[derive(Debug)]
pub struct StepBar {
    bar: indicatif::ProgressBar,
}

impl StepBar {
    pub fn new(bar: indicatif::ProgressBar) -> StepBar {
        StepBar { bar }
    }
}

impl StepObserver for StepBar {
    fn start(&self, step: &'static str, total: u64) {
        let template = if total == 0 {
            "  {spinner} {msg} [{elapsed_precise}]"
        } else {
            "  {spinner} {msg} [{elapsed_precise}] {bar:30} {pos}/{len}  ETA {eta}"
        };
        self.bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.bar.reset_elapsed();
        self.bar.set_message(step);
        if total == 0 {
            self.bar
                .enable_steady_tick(std::time::Duration::from_millis(200));
        } else {
            self.bar.disable_steady_tick();
        }
    }

    fn advance(&self, done: u64) {
        self.bar.inc(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_bar_follows_its_steps() {
        let bar = StepBar::new(indicatif::ProgressBar::hidden());
        bar.start("kNN search", 10);
        bar.advance(4);
        assert_eq!(bar.bar.position(), 4);
        assert_eq!(bar.bar.length(), Some(10));
        bar.start("eigenpairs", 0);
        assert_eq!(bar.bar.position(), 0);
        assert_eq!(bar.bar.message(), "eigenpairs");
    }
}
