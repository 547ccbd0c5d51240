//! The verify stage's contracts: its folder layout, its work units and manifest
//! ([`units`]), and its tables (`tables.rs`): the evidence rows (`evidence.csv` and its JSON
//! twin `evidence.json`, which the report, the pipeline and `spray evaluate` read), the
//! padding and AOPC rows.
//!
//! ```text
//! <out>/verify/_verify.json                    fingerprint + units (written first)
//! <out>/verify/units/class-NNNNN.evidence.toml  a class's evidence rows, when finished
//! <out>/verify/units/class-NNNNN.tables.toml    its padding and AOPC rows, when finished
//! <out>/verify/examples/*.png                  before/after pictures of tested groups
//! <out>/verify/padding.csv, aopc.csv
//! <out>/verify/evidence.json, evidence.csv     (the CSV last: it marks the stage complete)
//! ```

use std::path::{Path, PathBuf};

mod tables;
pub mod units;

pub use tables::{sort_evidence, write_evidence, write_tables, Aopc, PaddingEffect};
pub use units::{
    read_unit, unit_done, unit_path, write_manifest, write_unit, ClassUnit, UnitPart,
    VerifyManifest,
};

/// `<out>/verify/_verify.json`, written first.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("_verify.json")
}

/// `<out>/verify/evidence.csv`, written last.
pub fn evidence_path(dir: &Path) -> PathBuf {
    dir.join("evidence.csv")
}

/// `<out>/verify/padding.csv`.
pub fn padding_path(dir: &Path) -> PathBuf {
    dir.join("padding.csv")
}

/// `<out>/verify/aopc.csv`.
pub fn aopc_path(dir: &Path) -> PathBuf {
    dir.join("aopc.csv")
}

/// `<out>/verify/examples/<group>-<tested group>-<test>.png`: a tested group's before/after
/// pictures by evidence test `test`, side by side in one strip.
pub fn example_path(
    dir: &Path,
    group: crate::group::AnalysisGroup,
    tested: GroupId,
    test: crate::EvidenceTest,
) -> PathBuf {
    dir.join("examples").join(format!(
        "{}-{}-{test}.png",
        group.file_name(),
        tested.file_tag()
    ))
}

/// The version of the evidence rows, part of the verify fingerprint (see
/// `analysis::SCHEMA_VERSION`). 2: `level`. 3: `space` (groups of the concept spaces).
/// 4: groups of the colour space (tested by colour transfer, `region = "colour"`). 5: `test`
/// (a group has a row per evidence test of its space, the model-side one among them). 6: rows
/// of the fine-detail transfer; example pictures named by their test too. 7: `counts`.
/// 8: `control_images` and `occluded_images` (a row screened out at its first recipients
/// measures neither its control nor its occlusion). 9: a row whose effect is below its
/// class's strongest counting row so far has no occlusion measured (`occluded_images` 0),
/// and a row of a class that an earlier row surely flagged stops where it does not exceed
/// the class's strongest (the rows' figures change, not their verdicts). 10: `pictures`, one
/// strip of a row's four pictures side by side (`examples` before, a file each). 11: the
/// `test` column may read `spectrum-transfer`. 12: and `shading-transfer`. 13: a mark's
/// region grows into the cells around it, and a colour transfer gives the chroma too (the
/// rows' figures change, a cached stage is not reused). 14: the `test` column may read
/// `sharpness-transfer`. 15: a row whose effect is within two standard errors of the flag,
/// in a class no row has flagged, is measured on up to `verify.verdict_images` recipients
/// (`transplant_images` and `control_images` may read more than `transplant_images`). 16: the
/// `test` column may read `pattern-transfer` and `tone-transfer`. 17: a group has a
/// `colour-transfer` row only where its colours stand apart from the rest of its class's
/// (fewer rows; a cached stage is not reused). 18: and a `detail-transfer` row only where its
/// fine detail does. 19: a class's unit is written in two parts (`units::UnitPart`). 20: the `test` column may read
/// `texture-transfer`. 21: a test is measured once on nearly the same images, whichever spaces
/// found them (fewer rows; a cached stage is not reused). 22: a flagged class's later rows stop
/// sooner (fewer recipients), and the `test` column may read `coarse-transfer`.
pub const SCHEMA_VERSION: u32 = 22;

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
    /// The evidence test this row measured (one of the space's `SpaceSpec::tests`).
    pub test: crate::EvidenceTest,
    /// Grid cells of the region (`r<row>c<col>`), and their count; for a concept-space
    /// group, whose images need not share a place, `per image: top <n> cells` (each image's
    /// own cells above its class's mean map); `colour` for a colour transfer; for the
    /// model-side test, the layer whose activations were changed (`direction at <node>`,
    /// no cells). For that test the occlusion columns are the ablation (the direction
    /// removed) and the transplant columns the injection (the direction added).
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
    /// Recipients the group's transplant was measured on: up to `transplant_images`, or up to
    /// `verdict_images` for a row that went on because the first left its class's verdict open.
    pub transplant_images: usize,
    /// Recipients the controls were measured on (the control's rate is over these; beyond the
    /// first `transplant_images`, only the control that was the stronger on them); 0: no
    /// control was measured — the group's own transplant turned too few recipients to reach
    /// the flag (or, once a row of its class has, that row's effect) even against a control
    /// that turns none, so the row stopped there ([`Evidence::screened`]) and its control
    /// rate reads 0.
    #[serde(default)]
    pub control_images: usize,
    /// Images of the group whose region was filled (the occlusion columns' sample); 0: the
    /// occlusion was not measured (a screened row), and its columns read 0.
    #[serde(default)]
    pub occluded_images: usize,
    /// The row's pictures under `<out>/verify/` (a relative path): one strip of four panels
    /// of the model's input size side by side, in `spray_verify::examples::KINDS` order — a
    /// member before and after occlusion, a recipient before and after the transplant. Why
    /// one file: four a row were over 700 files a run on the realistic scenarios, and
    /// creating and syncing them a tenth of the stage's time. JSON only.
    #[serde(default)]
    pub pictures: Option<String>,
}

pub use crate::group::{ClusterLevel, GroupId};

impl Evidence {
    /// The tested group.
    pub fn group(&self) -> GroupId {
        GroupId {
            space: self.space,
            level: self.level,
            label: self.cluster,
        }
    }

    /// Whether the row stopped at its screen: its own transplant could not reach the flag (or
    /// its class's strongest row) even against a control that turns none, so neither the
    /// control nor the occlusion was measured. Its [`Evidence::specific`] effect (the flip
    /// rate alone) is then an upper bound, below the flag.
    pub fn screened(&self) -> bool {
        self.control_images == 0
    }

    /// The effect specific to the group: its transplant's flip rate minus the control's
    /// (a screened row: its flip rate, an upper bound). The one definition the evidence
    /// order, the class ranking and the flag read.
    pub fn specific(&self) -> f64 {
        self.transplant_flip_rate - self.transplant_flip_rate_rest
    }

    /// [`Evidence::specific`] as the evidence order and the class ranking compare it
    /// ([`effect_key`]).
    pub fn effect_key(&self) -> i64 {
        effect_key(self.specific())
    }

    /// Whether the row can carry its class's evidence (the ranking and the flag read only such
    /// rows; every row is shown). A test whose change always holds the class's own object
    /// ([`crate::EvidenceTest::needs_loss`]) counts only where taking it away from the
    /// group's images loses the class on at least [`NECESSARY_LOSS`] of them: the group needs
    /// what the test gives. Why: an image's fine detail holds its object's edges, so a group
    /// of the class's clearest exemplars gives other images the class's own evidence (the
    /// tags scenario's clean square: a group of 42 bright squares turned 0.47 of recipients
    /// against 0.13–0.16 by every control, and kept the class on 97% of its images without
    /// its detail); a shortcut's images that lean on a pattern lose the class without it
    /// (the photos scenario: 57–100%). A screened row of such a test does not count: its loss
    /// was not measured.
    pub fn counts(&self) -> bool {
        !self.test.needs_loss()
            || (self.occluded_images > 0
                && self.accuracy_before - self.accuracy_after >= NECESSARY_LOSS)
    }

    /// The occlusion's contrast: the drop on the group's images minus on the class's others.
    pub fn occlusion_contrast(&self) -> f64 {
        self.occlusion_drop - self.occlusion_drop_rest
    }
}

/// An effect on a grid fine enough for any flip-rate difference (shares of at most millions of
/// recipients) and coarse enough that two equal effects computed differently compare equal:
/// what the evidence order and the class ranking compare, so that they agree. Why: 1/10 −
/// 0/10 and 3/10 − 2/10 differ in their last bits (0.1 and 0.10000000000000003), and ties
/// are broken by the rules stated where effects are ordered, not by rounding.
pub fn effect_key(effect: f64) -> i64 {
    (effect * 1e9).round() as i64
}

/// The share of a group's images that must lose their class when a [`Evidence::counts`]
/// test's change is taken away.
pub const NECESSARY_LOSS: f64 = 0.3;

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
