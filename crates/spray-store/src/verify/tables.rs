//! The stage's tables: `evidence.csv` (and its JSON twin, which the report reads),
//! `padding.csv` and `aopc.csv`, each one column list written through [`crate::csv`].

use std::path::Path;

use super::{aopc_path, evidence_json_path, padding_path, Evidence};
use crate::csv::{fixed4, text, Column};
use crate::{Result, StoreError};

/// One row of `padding.csv`: a class's images under one of thesis §6.3.1's square modes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaddingEffect {
    pub class_index: i32,
    pub class_name: String,
    /// The square mode's name (`spray_dataset::SquareMode`, kebab-case; the store sits below
    /// the dataset crate, so it keeps the name, which is also what the table shows).
    pub mode: String,
    pub images: usize,
    /// Mean class logit under `mode` minus under the pipeline's own preprocessing.
    pub logit_change: f64,
    pub accuracy: f64,
    pub accuracy_baseline: f64,
}

/// One row of `aopc.csv`: region perturbation (thesis Ch. 3) of a class's maps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Aopc {
    pub class_index: i32,
    pub class_name: String,
    pub composite: String,
    pub images: usize,
    pub steps: usize,
    pub aopc_morf: f64,
    pub aopc_random: f64,
}

const PADDING_COLUMNS: [Column<PaddingEffect>; 7] = [
    Column::new("class_index", |r| r.class_index.to_string()),
    Column::new("class", |r| text(&r.class_name)),
    Column::new("mode", |r| r.mode.clone()),
    Column::new("images", |r| r.images.to_string()),
    Column::new("logit_change", |r| fixed4(r.logit_change)),
    Column::new("accuracy", |r| fixed4(r.accuracy)),
    Column::new("accuracy_baseline", |r| fixed4(r.accuracy_baseline)),
];

const AOPC_COLUMNS: [Column<Aopc>; 7] = [
    Column::new("class_index", |r| r.class_index.to_string()),
    Column::new("class", |r| text(&r.class_name)),
    Column::new("composite", |r| text(&r.composite)),
    Column::new("images", |r| r.images.to_string()),
    Column::new("steps", |r| r.steps.to_string()),
    Column::new("aopc_morf", |r| fixed4(r.aopc_morf)),
    Column::new("aopc_random", |r| fixed4(r.aopc_random)),
];

/// `evidence.csv`: every field of [`Evidence`] but the example pictures (JSON only), and
/// whether the row counts for the ranking ([`Evidence::counts`]).
const EVIDENCE_COLUMNS: [Column<Evidence>; 22] = [
    Column::new("class_index", |r| r.class_index.to_string()),
    Column::new("class", |r| text(&r.class_name)),
    Column::new("space", |r| r.space.to_string()),
    Column::new("level", |r| r.level.as_str().to_string()),
    Column::new("cluster", |r| r.cluster.to_string()),
    Column::new("size", |r| r.size.to_string()),
    Column::new("share", |r| fixed4(r.share)),
    Column::new("test", |r| r.test.name().to_string()),
    Column::new("region", |r| r.region.clone()),
    Column::new("region_cells", |r| r.region_cells.to_string()),
    Column::new("grid", |r| r.grid.to_string()),
    Column::new("occlusion_drop", |r| fixed4(r.occlusion_drop)),
    Column::new("occlusion_drop_rest", |r| fixed4(r.occlusion_drop_rest)),
    Column::new("accuracy_before", |r| fixed4(r.accuracy_before)),
    Column::new("accuracy_after", |r| fixed4(r.accuracy_after)),
    Column::new("transplant_logit_gain", |r| fixed4(r.transplant_logit_gain)),
    Column::new("transplant_flip_rate", |r| fixed4(r.transplant_flip_rate)),
    Column::new("transplant_flip_rate_rest", |r| {
        fixed4(r.transplant_flip_rate_rest)
    }),
    Column::new("transplant_images", |r| r.transplant_images.to_string()),
    Column::new("control_images", |r| r.control_images.to_string()),
    Column::new("occluded_images", |r| r.occluded_images.to_string()),
    Column::new("counts", |r| r.counts().to_string()),
];

/// `padding.csv` and `aopc.csv` in `dir`, written atomically.
pub fn write_tables(dir: &Path, padding: &[PaddingEffect], aopc: &[Aopc]) -> Result<()> {
    crate::csv::write(&padding_path(dir), &PADDING_COLUMNS, padding)?;
    crate::csv::write(&aopc_path(dir), &AOPC_COLUMNS, aopc)
}

/// The evidence order: strongest first — what only the group does (its specific transplant
/// effect), then the occlusion contrast, then class, space, level and label (deterministic).
pub fn sort_evidence(rows: &mut [Evidence]) {
    rows.sort_by(|a, b| {
        b.effect_key()
            .cmp(&a.effect_key())
            .then(b.occlusion_contrast().total_cmp(&a.occlusion_contrast()))
            .then(a.class_index.cmp(&b.class_index))
            .then(a.group().cmp(&b.group()))
            .then(a.test.name().cmp(b.test.name()))
    });
}

/// `evidence.json` beside `path`, then `evidence.csv` at `path` (last: it marks the stage
/// complete), both atomically.
pub fn write_evidence(path: &Path, rows: &[Evidence]) -> Result<()> {
    if let Some(dir) = path.parent() {
        let json = evidence_json_path(dir);
        let bytes = serde_json::to_vec_pretty(rows).map_err(|e| StoreError::Encode {
            path: json.display().to_string(),
            message: e.to_string(),
        })?;
        crate::write_atomically(&json, &bytes)?;
    }
    crate::csv::write(path, &EVIDENCE_COLUMNS, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{read_evidence, ClusterLevel};
    use crate::FeatureSpace;

    fn row(class: i32, flip: f64, control: f64) -> Evidence {
        Evidence {
            class_index: class,
            class_name: format!("c{class}, \"x\""),
            space: FeatureSpace::Relevance,
            level: ClusterLevel::Cluster,
            cluster: 0,
            size: 5,
            share: 0.25,
            test: crate::EvidenceTest::SharedRegion,
            region: "r0c0 r0c1".into(),
            region_cells: 2,
            grid: 8,
            occlusion_drop: 0.5,
            occlusion_drop_rest: 0.125,
            accuracy_before: 1.0,
            accuracy_after: 0.0,
            transplant_logit_gain: 1.5,
            transplant_flip_rate: flip,
            transplant_flip_rate_rest: control,
            transplant_images: 100,
            control_images: 100,
            occluded_images: 50,
            pictures: Some("examples/a.png".into()),
        }
    }

    #[test]
    fn evidence_is_sorted_by_its_specific_effect_and_round_trips() {
        let mut rows = vec![row(0, 0.5, 0.4), row(1, 0.9, 0.1), row(2, 0.5, 0.0)];
        sort_evidence(&mut rows);
        let order: Vec<i32> = rows.iter().map(|r| r.class_index).collect();
        assert_eq!(order, [1, 2, 0]);
        assert!((rows[0].specific() - 0.8).abs() < 1e-12);
        let dir = std::env::temp_dir().join(format!("spray-evidence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_evidence(&super::super::evidence_path(&dir), &rows).unwrap();
        assert_eq!(read_evidence(&dir).unwrap(), rows);
        let csv = std::fs::read_to_string(super::super::evidence_path(&dir)).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap().split(',').count(), 22);
        assert_eq!(
            lines.next().unwrap(),
            "1,\"c1, \"\"x\"\"\",relevance,cluster,0,5,0.2500,shared-region,r0c0 r0c1,2,8,0.5000,0.1250,\
             1.0000,0.0000,1.5000,0.9000,0.1000,100,100,50,true"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
