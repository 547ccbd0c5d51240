//! A cluster's region: the grid cells where its mean heatmap exceeds the rest of its class.

use spray_store::relevance::grid_bin;

/// Each map divided by the sum of its absolute values, so that images with more relevance
/// in total do not dominate the means.
fn l1(map: &[f32]) -> Vec<f64> {
    let total: f64 = map.iter().map(|v| v.abs() as f64).sum();
    let scale = if total > 0.0 { 1.0 / total } else { 0.0 };
    map.iter().map(|&v| v as f64 * scale).collect()
}

/// The mean of the L1-normalised maps.
pub fn mean(maps: &[&[f32]], cells: usize) -> Vec<f64> {
    let mut out = vec![0.0; cells];
    for m in maps {
        for (o, v) in out.iter_mut().zip(l1(m)) {
            *o += v;
        }
    }
    let n = maps.len().max(1) as f64;
    out.iter_mut().for_each(|v| *v /= n);
    out
}

/// Cells (row-major indices into g×g) where mean(cluster) − mean(rest) ≥ `margin` · its maximum
/// (and > 0). Empty when the cluster's maps are nowhere above the rest.
pub fn cluster_region(cluster: &[&[f32]], rest: &[&[f32]], g: usize, margin: f64) -> Vec<usize> {
    let cells = g * g;
    let (a, b) = (mean(cluster, cells), mean(rest, cells));
    let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let top = diff.iter().copied().fold(0.0f64, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    (0..cells)
        .filter(|&c| diff[c] > 0.0 && diff[c] >= margin * top)
        .collect()
}

/// One image's own region: the `count` cells where its L1-normalised map exceeds `reference`
/// (a mean map, `mean`) the most, those above it only. Why per image: the images of a
/// concept-space group share *which features* carry the logit, not necessarily where (a mark
/// at a random place), so a region common to the group can miss each image's artifact.
pub fn member_region(map: &[f32], reference: &[f64], count: usize) -> Vec<usize> {
    let diff: Vec<f64> = l1(map).iter().zip(reference).map(|(x, y)| x - y).collect();
    let mut cells: Vec<usize> = (0..diff.len()).filter(|&c| diff[c] > 0.0).collect();
    // Largest first; ties by cell index, so the region is the same on every run.
    cells.sort_by(|&a, &b| diff[b].total_cmp(&diff[a]).then(a.cmp(&b)));
    cells.truncate(count);
    cells.sort_unstable();
    cells
}

/// Cells of a per-image region on a g×g grid: 1/16 of the grid (4 of 64 cells at g = 8, 25 of
/// 400 at g = 20), at least one — about a small mark's size, and the same for the control.
pub fn member_region_cells(g: usize) -> usize {
    (g * g).div_ceil(16).max(1)
}

/// The pixel mask (h×w, row-major) of grid cells `region` of a g×g grid, binned as the maps
/// were pooled (`grid_bin`).
pub fn pixel_mask(region: &[usize], g: usize, h: usize, w: usize) -> Vec<bool> {
    let mut in_region = vec![false; g * g];
    for &c in region {
        in_region[c] = true;
    }
    (0..h * w)
        .map(|p| in_region[grid_bin(p / w, h, g) * g + grid_bin(p % w, w, g)])
        .collect()
}

/// "r6c7 r7c7": the cells as a reader finds them on the grid.
pub fn describe(region: &[usize], g: usize) -> String {
    region
        .iter()
        .map(|c| format!("r{}c{}", c / g, c % g))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_where_the_cluster_exceeds_the_rest() {
        // 2×2 grid; the cluster puts half its relevance on cell 3, the rest none there.
        let c1 = [1.0f32, 0.0, 0.0, 1.0];
        let c2 = [0.5f32, 0.5, 0.0, 1.0];
        let r1 = [1.0f32, 1.0, 1.0, 0.0];
        let region = cluster_region(&[&c1, &c2], &[&r1], 2, 0.5);
        assert_eq!(region, vec![3]);
        assert_eq!(describe(&region, 2), "r1c1");
        // The same maps on both sides: no region.
        assert!(cluster_region(&[&r1], &[&r1], 2, 0.5).is_empty());
    }

    #[test]
    fn the_mask_follows_the_pooling_bins() {
        let mask = pixel_mask(&[3], 2, 4, 6);
        let rows: Vec<String> = mask
            .chunks(6)
            .map(|r| r.iter().map(|&m| if m { '#' } else { '.' }).collect())
            .collect();
        assert_eq!(rows, ["......", "......", "...###", "...###"]);
    }

    #[test]
    fn a_member_region_is_where_the_image_exceeds_the_reference_most() {
        // 2×2 grid; the reference is flat, the image puts most of its relevance on cell 2.
        let reference = vec![0.25; 4];
        assert_eq!(member_region(&[1.0, 1.0, 6.0, 2.0], &reference, 1), vec![2]);
        assert_eq!(member_region(&[1.0, 1.0, 6.0, 2.0], &reference, 3), vec![2]);
        // Nothing above the reference: no region.
        assert!(member_region(&[1.0, 1.0, 1.0, 1.0], &reference, 2).is_empty());
        assert_eq!(member_region_cells(8), 4);
        assert_eq!(member_region_cells(1), 1);
    }
}
