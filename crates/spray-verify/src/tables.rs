//! The stage's CSV tables (and evidence.json), written atomically; schemas in ARCHITECTURE.md.

use std::path::{Path, PathBuf};

use spray_dataset::SquareMode;

pub use spray_store::verify::evidence_json_path;

use crate::{Aopc, Evidence, PaddingEffect, Result};

pub fn padding_path(dir: &Path) -> PathBuf {
    dir.join("padding.csv")
}

pub fn aopc_path(dir: &Path) -> PathBuf {
    dir.join("aopc.csv")
}

pub(crate) fn mode_name(mode: SquareMode) -> String {
    serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{mode:?}"))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `padding.csv` and `aopc.csv`, written atomically.
pub fn write_tables(dir: &Path, padding: &[PaddingEffect], aopc: &[Aopc]) -> Result<()> {
    let mut text =
        String::from("class_index,class,mode,images,logit_change,accuracy,accuracy_baseline\n");
    for r in padding {
        text.push_str(&format!(
            "{},{},{},{},{:.4},{:.4},{:.4}\n",
            r.class_index,
            csv_field(&r.class_name),
            mode_name(r.mode),
            r.images,
            r.logit_change,
            r.accuracy,
            r.accuracy_baseline
        ));
    }
    spray_store::write_atomically(&padding_path(dir), text.as_bytes())?;
    let mut text = String::from("class_index,class,composite,images,steps,aopc_morf,aopc_random\n");
    for r in aopc {
        text.push_str(&format!(
            "{},{},{},{},{},{:.4},{:.4}\n",
            r.class_index,
            csv_field(&r.class_name),
            csv_field(&r.composite),
            r.images,
            r.steps,
            r.aopc_morf,
            r.aopc_random
        ));
    }
    spray_store::write_atomically(&aopc_path(dir), text.as_bytes())?;
    Ok(())
}

/// `evidence.csv` and its JSON twin beside it, written atomically.
pub fn write_evidence(path: &Path, rows: &[Evidence]) -> Result<()> {
    if let Some(dir) = path.parent() {
        spray_store::write_atomically(
            &evidence_json_path(dir),
            &serde_json::to_vec_pretty(rows).unwrap_or_default(),
        )?;
    }
    let mut text = String::from(
        "class_index,class,space,level,cluster,size,share,region,region_cells,grid,occlusion_drop,\
         occlusion_drop_rest,accuracy_before,accuracy_after,transplant_logit_gain,\
         transplant_flip_rate,transplant_flip_rate_rest,transplant_images\n",
    );
    for r in rows {
        text.push_str(&format!(
            "{},{},{},{},{},{},{:.4},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{}\n",
            r.class_index,
            csv_field(&r.class_name),
            r.space,
            r.level.as_str(),
            r.cluster,
            r.size,
            r.share,
            r.region,
            r.region_cells,
            r.grid,
            r.occlusion_drop,
            r.occlusion_drop_rest,
            r.accuracy_before,
            r.accuracy_after,
            r.transplant_logit_gain,
            r.transplant_flip_rate,
            r.transplant_flip_rate_rest,
            r.transplant_images
        ));
    }
    spray_store::write_atomically(path, text.as_bytes())?;
    Ok(())
}
