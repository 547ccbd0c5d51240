//! The stage's progress on the terminal: a bar of groups, and inside one group's analysis
//! which step runs and how far it is, so a whole-dataset group (`grouping = "all"`: one group
//! of up to 1.28M maps, minutes per step) shows a bar with an ETA per step instead of
//! "0/1 groups".

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

/// The stage's bars: the groups, and the steps of a lone group.
pub(crate) struct StageBars {
    bars: indicatif::MultiProgress,
    /// Groups done of this shard's groups; hidden when the stage runs quietly.
    pub groups: indicatif::ProgressBar,
    shown: bool,
}

impl StageBars {
    /// Bars for `groups` groups, drawn when `shown`.
    pub fn new(shown: bool, groups: usize) -> StageBars {
        let bars = indicatif::MultiProgress::new();
        let groups = if shown {
            let bar = bars.add(indicatif::ProgressBar::new(groups as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} analyze [{elapsed_precise}] {bar:30} {pos}/{len} groups  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        StageBars {
            bars,
            groups,
            shown,
        }
    }

    /// The observer of each group's steps. One group left (grouping = "all", or a single
    /// class): its steps take the time, so they get a bar of their own. With several groups
    /// in flight, the groups bar says enough.
    pub fn steps(&self, groups_left: usize) -> Box<dyn StepObserver> {
        if self.shown && groups_left == 1 {
            Box::new(StepBar::new(self.bars.add(indicatif::ProgressBar::new(0))))
        } else {
            Box::new(Silent)
        }
    }

    pub fn finish(self) {
        self.groups.finish_and_clear();
        let _ = self.bars.clear();
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

    #[test]
    fn the_groups_bar_counts_this_shards_groups() {
        let quiet = StageBars::new(false, 1);
        assert!(quiet.groups.is_hidden());
        quiet.finish();
        let shown = StageBars::new(true, 3);
        assert_eq!(shown.groups.length(), Some(3));
        shown.groups.inc(2);
        assert_eq!(shown.groups.position(), 2);
        shown.finish();
    }
}
