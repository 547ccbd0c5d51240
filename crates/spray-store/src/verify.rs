//! The verify stage's evidence table (`<out>/verify/evidence.csv` and its JSON twin
//! `evidence.json`), whose rows the report reads: the contract between stage 3 and stage 4.

use std::path::{Path, PathBuf};

/// The version of the evidence rows, part of the verify fingerprint (see
/// `analysis::SCHEMA_VERSION`). 2: `level`. 3: `space` (groups of the concept spaces).
/// 4: groups of the colour space (tested by colour transfer, `region = "colour"`).
pub const SCHEMA_VERSION: u32 = 4;

/// One row of `evidence.csv` (and of its twin `evidence.json`, which the report reads).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub class_index: i32,
    pub class_name: String,
    /// The analysis space whose grouping the tested group comes from (the relevance maps or
    /// a concept layer), which grouping, and its label there.
    #[serde(default)]
    pub space: crate::FeatureSpace,
    #[serde(default)]
    pub level: ClusterLevel,
    pub cluster: i32,
    pub size: usize,
    /// Share of the class's samples in the cluster.
    pub share: f64,
    /// Grid cells of the region (`r<row>c<col>`), and their count; for a concept-space
    /// group, whose images need not share a place, `per image: top <n> cells` (each image's
    /// own cells above its class's mean map).
    pub region: String,
    pub region_cells: usize,
    /// The grid the region's cells are on (the analysis grid).
    pub grid: usize,
    /// Mean relative drop of the class logit when the region is filled, on the cluster's
    /// images and on the class's other images.
    pub occlusion_drop: f64,
    pub occlusion_drop_rest: f64,
    /// Share of the cluster's images predicted as the class before and after occlusion.
    pub accuracy_before: f64,
    pub accuracy_after: f64,
    /// Mean gain of the class logit on other classes' images with the region pasted in.
    pub transplant_logit_gain: f64,
    /// Of those not predicted as the class before, the share predicted as it after.
    pub transplant_flip_rate: f64,
    /// The same with the region pasted from the class's other images (the control): near
    /// the flip rate when the region is simply the class's object, near zero for a shortcut
    /// only the cluster carries.
    #[serde(default)]
    pub transplant_flip_rate_rest: f64,
    pub transplant_images: usize,
    /// Pictures under `<out>/verify/` (relative paths, in `spray_verify::examples::KINDS` order): a member
    /// before and after occlusion, a recipient before and after the transplant. JSON only.
    #[serde(default)]
    pub examples: Vec<String>,
}

/// The groupings of a class the verify stage tests: the analysis' clusters (their number from
/// the spectrum), and the two sides of its best two-way split. Why both: no one number of
/// clusters isolates every artifact — a rare artifact (15 % of a class) needs the finer
/// clustering, one on half the class the coarser split (`benches/RESULTS.md`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterLevel {
    /// `cluster` of the analysis' samples table.
    #[default]
    Cluster,
    /// `split` of the analysis' samples table.
    Split,
}

impl ClusterLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterLevel::Cluster => "cluster",
            ClusterLevel::Split => "split",
        }
    }

    /// How a group is named on the page: "cluster 3", "split side 1".
    pub fn label(self, id: i32) -> String {
        match self {
            ClusterLevel::Cluster => format!("cluster {id}"),
            ClusterLevel::Split => format!("split side {id}"),
        }
    }
}

/// How a tested group is named on the page: "cluster 3", "split side 1" in the relevance
/// space, "concept-0 cluster 2" in a concept space.
pub fn group_label(space: crate::FeatureSpace, level: ClusterLevel, id: i32) -> String {
    match space {
        crate::FeatureSpace::Relevance => level.label(id),
        other => format!("{other} {}", level.label(id)),
    }
}

impl Evidence {
    /// `group_label` of this row's group.
    pub fn group_label(&self) -> String {
        group_label(self.space, self.level, self.cluster)
    }
}

/// `<out>/verify/evidence.json`: the rows with every field (the CSV has all but `examples`).
pub fn evidence_json_path(dir: &Path) -> PathBuf {
    dir.join("evidence.json")
}

/// The rows of `<dir>/evidence.json`; none when the file does not exist (the stage is off or
/// has not run).
pub fn read_evidence(dir: &Path) -> crate::Result<Vec<Evidence>> {
    let path = evidence_json_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(crate::StoreError::Io {
                path: path.display().to_string(),
                source: e,
            })
        }
    };
    serde_json::from_str(&text).map_err(|e| crate::StoreError::Schema {
        path: path.display().to_string(),
        column: "(rows)".into(),
        message: format!("not a list of evidence rows: {e}"),
    })
}
