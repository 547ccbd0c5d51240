//! The stages of a run, in order, and what the driver needs to know of each.

use std::path::{Path, PathBuf};

use spray_store::stage::{self as store_stage, StageState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Relevance,
    Analyze,
    Verify,
    Report,
}

impl Stage {
    /// Every stage in the order a run goes through them.
    pub const ALL: [Stage; 4] = [
        Stage::Relevance,
        Stage::Analyze,
        Stage::Verify,
        Stage::Report,
    ];

    /// The stage whose output this one reads (and whose completion it needs).
    pub fn upstream(self) -> Option<Stage> {
        match self {
            Stage::Relevance => None,
            Stage::Analyze => Some(Stage::Relevance),
            Stage::Verify | Stage::Report => Some(Stage::Analyze),
        }
    }

    /// Whether the stage keeps finished work units when it is run again (else its folder is
    /// cleared before it runs).
    pub fn resumable(self) -> bool {
        matches!(self, Stage::Relevance | Stage::Analyze | Stage::Verify)
    }

    /// Whether `--shard` splits the stage.
    pub fn shardable(self) -> bool {
        self.resumable()
    }

    /// The stage's folder under the output folder.
    pub fn folder(self) -> &'static str {
        match self {
            Stage::Relevance => "relevance",
            Stage::Analyze => "analysis",
            Stage::Verify => "verify",
            Stage::Report => "report",
        }
    }

    /// The stage's state in its folder `dir` for the key `fingerprint`
    /// (through `spray_store::stage`).
    pub fn state(self, dir: &Path, fingerprint: &str) -> StageState {
        match self {
            Stage::Relevance => store_stage::relevance_state(dir, fingerprint),
            Stage::Analyze => store_stage::analysis_state(dir, fingerprint),
            Stage::Verify => store_stage::verify_state(dir, fingerprint),
            Stage::Report => store_stage::report_state(dir, fingerprint),
        }
    }
}

/// `<out>/relevance`, `<out>/analysis`, `<out>/verify`, `<out>/report`.
pub fn stage_dir(pipeline: &crate::Pipeline, stage: Stage) -> PathBuf {
    pipeline.output_dir.join(stage.folder())
}

/// A stage name that is none of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage `{0}` (relevance, analyze, verify, report)")]
pub struct UnknownStage(pub String);

impl std::str::FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownStage> {
        match s {
            "relevance" => Ok(Stage::Relevance),
            "analyze" | "analysis" => Ok(Stage::Analyze),
            "verify" => Ok(Stage::Verify),
            "report" => Ok(Stage::Report),
            _ => Err(UnknownStage(s.to_string())),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Relevance => "relevance",
            Stage::Analyze => "analyze",
            Stage::Verify => "verify",
            Stage::Report => "report",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_reads_an_earlier_one_and_names_round_trip() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(stage.to_string().parse::<Stage>(), Ok(*stage));
            if let Some(up) = stage.upstream() {
                assert!(Stage::ALL[..i].contains(&up), "{stage} reads {up}");
            }
            assert_eq!(stage.shardable(), *stage != Stage::Report);
        }
        assert_eq!("analysis".parse::<Stage>(), Ok(Stage::Analyze));
        assert!("plot"
            .parse::<Stage>()
            .unwrap_err()
            .to_string()
            .contains("relevance, analyze"));
    }
}
