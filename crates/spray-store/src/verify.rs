//! The verify stage's evidence table (`<out>/verify/evidence.csv` and its JSON twin
//! `evidence.json`), whose rows the report reads: the contract between stage 3 and stage 4.

use std::path::{Path, PathBuf};

/// One row of `evidence.csv` (and of its twin `evidence.json`, which the report reads).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    pub class_index: i32,
    pub class_name: String,
    pub cluster: i32,
    pub size: usize,
    /// Share of the class's samples in the cluster.
    pub share: f64,
    /// Grid cells of the region (`r<row>c<col>`), and their count.
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
