//! SpRAy on relevance maps held in memory (the Python module's `spray.analyze`, maps computed
//! by any method): each map sum-pooled to the settings' grid, prepared as the stage prepares
//! the relevance space (blur, sign, normalisation), and analysed per label as one group.

use std::collections::BTreeMap;

use ndarray16::Array2;
use spray_store::FeatureSpace;

use crate::error::{AnalyzeError, Result};
use crate::group::{analyze_group, GroupAnalysis, GroupPoints};
use crate::settings::AnalysisSettings;
use crate::{contrast, features};

/// `n` maps of `h` × `w` (channels already summed), row-major, one label each.
pub struct MapsInMemory<'a> {
    pub maps: &'a [f32],
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub labels: &'a [i32],
    /// A name per label; a label without one is named by its number.
    pub names: &'a BTreeMap<i32, String>,
}

/// SpRAy per label, in label order: the relevance space of the stage, on these maps. Sample
/// ids are the maps' positions ("0", "1", …).
pub fn analyze_maps(
    maps: &MapsInMemory<'_>,
    settings: &AnalysisSettings,
) -> Result<Vec<GroupAnalysis>> {
    let MapsInMemory { n, h, w, .. } = *maps;
    let g = settings.grid;
    if maps.maps.len() != n * h * w || maps.labels.len() != n {
        return Err(AnalyzeError::MapShape(format!(
            "{} values and {} labels for {n} maps of {h} × {w}",
            maps.maps.len(),
            maps.labels.len()
        )));
    }
    if g == 0 || h < g || w < g {
        return Err(AnalyzeError::InvalidSetting {
            key: "grid",
            reason: format!("maps of {h} × {w} cannot be pooled to a {g} × {g} grid"),
        });
    }
    let mut by_label: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, &label) in maps.labels.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut out = Vec::with_capacity(by_label.len());
    for (label, members) in by_label {
        let mut prepared = Vec::with_capacity(members.len() * g * g);
        let mut mass = Vec::with_capacity(members.len());
        for &i in &members {
            let map = &maps.maps[i * h * w..(i + 1) * h * w];
            let grid = spray_store::relevance::sum_pool(map, h, w, g, g);
            prepared.extend(features::prepare(
                &grid,
                g,
                settings.blur_sigma,
                settings.sign,
                settings.normalization,
            ));
            mass.push(contrast::relevance_mass(&grid));
        }
        let features = Array2::from_shape_vec((members.len(), g * g), prepared)
            .map_err(|e| AnalyzeError::Internal(format!("prepared features: {e}")))?;
        let points = GroupPoints {
            class_index: label,
            class_name: maps
                .names
                .get(&label)
                .cloned()
                .unwrap_or_else(|| label.to_string()),
            space: FeatureSpace::Relevance,
            ids: members
                .iter()
                .map(|&i| (i as i64, i.to_string(), String::new()))
                .collect(),
            features,
            mass: Some(mass),
        };
        out.push(analyze_group(&points, settings)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 × 16 maps: label 0 has its mass top-left on half its maps and bottom-right on the
    /// other half; label 1 in the middle on all.
    fn two_modes() -> (Vec<f32>, Vec<i32>) {
        let (h, w) = (16, 16);
        let mut maps = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60usize {
            let label = (i % 2) as i32;
            let (cy, cx) = match (label, i % 4) {
                (0, 0) => (3.0, 3.0),
                (0, _) => (12.0, 12.0),
                _ => (8.0, 8.0),
            };
            let jitter = ((i * 37 % 11) as f32 - 5.0) * 0.1;
            for y in 0..h {
                for x in 0..w {
                    let d2 = (y as f32 - cy - jitter).powi(2) + (x as f32 - cx + jitter).powi(2);
                    maps.push((-d2 / 6.0).exp());
                }
            }
            labels.push(label);
        }
        (maps, labels)
    }

    #[test]
    fn two_places_in_one_class_are_two_clusters() {
        let (maps, labels) = two_modes();
        let names = BTreeMap::from([(0, "split".to_string())]);
        let settings = AnalysisSettings {
            grid: 8,
            ..AnalysisSettings::default()
        };
        let input = MapsInMemory {
            maps: &maps,
            n: labels.len(),
            h: 16,
            w: 16,
            labels: &labels,
            names: &names,
        };
        let groups = analyze_maps(&input, &settings).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].spectrum.class_name, "split");
        assert_eq!(groups[1].spectrum.class_name, "1");
        // Label 0: its two places are two clusters, each map with its own place.
        let split = &groups[0];
        assert_eq!(split.samples.len(), 30);
        let cluster_of = |place: usize| -> Vec<i32> {
            split
                .samples
                .iter()
                .filter(|s| (s.image_index as usize).is_multiple_of(4) == (place == 0))
                .map(|s| s.cluster)
                .collect()
        };
        let (a, b) = (cluster_of(0), cluster_of(1));
        assert!(a.iter().all(|&c| c == a[0]) && b.iter().all(|&c| c == b[0]));
        assert_ne!(a[0], b[0]);
    }

    #[test]
    fn a_shape_that_does_not_match_is_refused() {
        let names = BTreeMap::new();
        let input = MapsInMemory {
            maps: &[0.0; 10],
            n: 2,
            h: 4,
            w: 4,
            labels: &[0, 0],
            names: &names,
        };
        let e = analyze_maps(&input, &AnalysisSettings::default())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("10 values and 2 labels for 2 maps of 4 × 4"),
            "{e}"
        );
        let input = MapsInMemory {
            maps: &[0.0; 32],
            ..input
        };
        let e = analyze_maps(&input, &AnalysisSettings::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot be pooled"), "{e}");
    }
}
