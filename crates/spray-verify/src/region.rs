//! A cluster's region: the grid cells where its mean heatmap exceeds the rest of its class.

use spray_store::relevance::grid_bin;

/// Each map divided by the sum of its absolute values, so that images with more relevance
/// in total do not dominate the means.
fn l1(map: &[f32]) -> Vec<f64> {
    let total: f64 = map.iter().map(|v| v.abs() as f64).sum();
    let scale = if total > 0.0 { 1.0 / total } else { 0.0 };
    map.iter().map(|&v| v as f64 * scale).collect()
}

/// The share of a map's relevance (L1-normalised: positive and negative relevance count by
/// their size, a negative cell lowers the share) that lies in `cells`.
pub fn share_in(map: &[f32], cells: &[usize]) -> f64 {
    let m = l1(map);
    cells.iter().filter_map(|&c| m.get(c)).sum()
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
/// (and > 0); where those are no more than a mark's size (`member_region_cells`), grown by up
/// to as many again; where they are more, but all in one row or one column of the grid (a
/// strip), extended along it (`Reach`, `grow`). Empty when the cluster's maps are nowhere
/// above the rest.
pub fn cluster_region(cluster: &[&[f32]], rest: &[&[f32]], g: usize, margin: f64) -> Vec<usize> {
    let cells = g * g;
    let (a, b) = (mean(cluster, cells), mean(rest, cells));
    let diff: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let top = diff.iter().copied().fold(0.0f64, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    let mut inside: Vec<bool> = diff.iter().map(|&d| d > 0.0 && d >= margin * top).collect();
    let mark = member_region_cells(g);
    let low = GROWTH * margin * top;
    if inside.iter().filter(|&&i| i).count() <= mark {
        grow(&mut inside, (&diff, g, low), mark, Reach::Sides);
    } else if let Some(line) = Reach::strip(&inside, g) {
        grow(&mut inside, (&diff, g, low), g, line);
    }
    (0..cells).filter(|&c| inside[c]).collect()
}

/// How far below the margin a cell next to a mark's region, or at a strip's end, may be and
/// still join it, as a share of the margin (hysteresis, as an edge detector's two
/// thresholds). Why: a mark's relevance peaks on its most telling part and the rest of it, in
/// the cells around, lies lower; a region cut at the margin alone pasted part of the mark. On
/// a held-out ResNet whose "square" relied on a printed date along the bottom edge (stamped
/// on other classes' images, 59% turned; its cluster the date's images exactly), the cells at
/// ≥ 0.5 of the largest excess were three of the date's bottom row, and pasting them turned
/// 24% against 7%; the date's top and its last digits lay at 0.24–0.34 of it
/// (benches/RESULTS.md).
pub const GROWTH: f64 = 1.0 / 3.0;

/// Where a cell may join a region from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// From any cell of the region it shares a side with: a mark's region, by at most a
    /// mark's size again. Why only a mark's: a region the margin already cuts larger is an
    /// object or a spread pattern, whose excess falls off slowly — grown, it became the
    /// object's whole area (the padding scenario's clean "cross", whose two groups are where
    /// the object is: 10 cells to 21, and its paste flagged the class, 0.60 against 0.00).
    Sides,
    /// Along a strip's row or column only (at either end, or into a gap): a region larger
    /// than a mark whose cells all lie in one grid row (`Row`) or column — a ruler down an
    /// edge, a caption or a bar along one. Why: a strip's relevance is uneven along it and its
    /// ends fall under the margin first — for seven shortcut classes of the 28 scenarios (a
    /// ruler down the left edge, a caption along the bottom, a frame's side) the region at
    /// the margin was the strip less one or two end cells (a ruler's r7c0 at 0.48 of the
    /// largest excess against a margin of 0.5), and the whole strip's effect read 0.04–0.27
    /// higher (benches/RESULTS.md). Never sideways: that is how an object's region grows
    /// into the object's area; no clean class's figure moved on the 28 with this.
    Row,
    Column,
}

impl Reach {
    /// The line the region lies along, where all its cells share one grid row or column.
    fn strip(inside: &[bool], g: usize) -> Option<Reach> {
        let cells: Vec<usize> = (0..inside.len()).filter(|&c| inside[c]).collect();
        let first = *cells.first()?;
        if cells.iter().all(|&c| c / g == first / g) {
            Some(Reach::Row)
        } else if cells.iter().all(|&c| c % g == first % g) {
            Some(Reach::Column)
        } else {
            None
        }
    }

    /// Whether cell `c` of a g×g grid may join the region `inside` from here.
    fn touches(self, inside: &[bool], c: usize, g: usize) -> bool {
        let (r, col) = (c / g, c % g);
        let along_row = (col > 0 && inside[c - 1]) || (col + 1 < g && inside[c + 1]);
        let along_column = (r > 0 && inside[c - g]) || (r + 1 < g && inside[c + g]);
        match self {
            Reach::Sides => along_row || along_column,
            Reach::Row => along_row,
            Reach::Column => along_column,
        }
    }
}

/// Grow a region (`inside`) one cell at a time into the cell it can `reach` whose excess
/// (`diff`, on a g×g grid) is largest, while that is at least `low`, by at most `limit` cells
/// (ties by cell index, so the region is the same on every run).
fn grow(inside: &mut [bool], (diff, g, low): (&[f64], usize, f64), limit: usize, reach: Reach) {
    for _ in 0..limit {
        let next = (0..inside.len())
            .filter(|&c| !inside[c] && diff[c] > 0.0 && diff[c] >= low)
            .filter(|&c| reach.touches(inside, c, g))
            .max_by(|&x, &y| diff[x].total_cmp(&diff[y]).then(y.cmp(&x)));
        match next {
            Some(c) => inside[c] = true,
            None => break,
        }
    }
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

/// Where a map's relevance lies: the centroid (row, column, in cells of the g×g grid) of its
/// positive part; the grid's centre when it has none.
pub fn centroid(map: &[f64], g: usize) -> [f64; 2] {
    let (mut total, mut r, mut c) = (0.0, 0.0, 0.0);
    for (i, &v) in map.iter().enumerate().filter(|(_, v)| **v > 0.0) {
        total += v;
        r += v * (i / g) as f64;
        c += v * (i % g) as f64;
    }
    if total > 0.0 {
        [r / total, c / total]
    } else {
        let mid = (g as f64 - 1.0) / 2.0;
        [mid, mid]
    }
}

/// Cells of a per-image region on a g×g grid: 1/16 of the grid (4 of 64 cells at g = 8, 25 of
/// 400 at g = 20), at least one — about a small mark's size, and the same for the control.
pub fn member_region_cells(g: usize) -> usize {
    (g * g).div_ceil(16).max(1)
}

/// `region` moved to where `map` holds the most of its own relevance: of every translation
/// (whole rows and columns) that keeps all of its cells on the g×g grid, the one whose cells
/// hold the largest share of the L1-normalised map; ties go to the smallest move (then the
/// first in row-major order), so an image whose relevance is already in the region keeps it.
/// Why: the control of a relevance-space group pastes the same-shaped region from the
/// class's other images. Taken at the same pixels, it misses their object when the group is
/// a natural mode of *where* the object is (a disc on the left, the rest on the right): the
/// group's region then holds the object and the rest's holds background, which reads as a
/// shortcut. Taken where each image's own relevance is, it holds their object too. A region
/// that spans the grid (a frame, a letterbox) cannot move and stays where it is.
pub fn best_shift(region: &[usize], map: &[f32], g: usize) -> Vec<usize> {
    if region.is_empty() {
        return Vec::new();
    }
    let share = l1(map);
    let rows = || region.iter().map(|c| (c / g) as isize);
    let cols = || region.iter().map(|c| (c % g) as isize);
    let (r0, r1) = (rows().min().unwrap_or(0), rows().max().unwrap_or(0));
    let (c0, c1) = (cols().min().unwrap_or(0), cols().max().unwrap_or(0));
    let g_i = g as isize;
    let mut best = (f64::NEG_INFINITY, 0isize, 0isize, 0isize);
    for dr in -r0..g_i - r1 {
        for dc in -c0..g_i - c1 {
            let held: f64 = region
                .iter()
                .map(|&c| {
                    let (r, col) = ((c / g) as isize + dr, (c % g) as isize + dc);
                    share[(r * g_i + col) as usize]
                })
                .sum();
            let distance = dr.abs() + dc.abs();
            // Strictly larger, or as large and nearer: the scan order settles the rest.
            if held > best.0 + 1e-12 || ((held - best.0).abs() <= 1e-12 && distance < best.3) {
                best = (held, dr, dc, distance);
            }
        }
    }
    let (_, dr, dc, _) = best;
    let mut moved: Vec<usize> = region
        .iter()
        .map(|&c| (((c / g) as isize + dr) * g_i + (c % g) as isize + dc) as usize)
        .collect();
    moved.sort_unstable();
    moved
}

/// The translation in pixels (rows, columns) of an h×w image that moves `map`'s centroid to
/// `to` (both on the g×g grid, [`centroid`]).
pub fn shift_to(map: &[f32], to: [f64; 2], g: usize, [h, w]: [usize; 2]) -> [isize; 2] {
    let from = centroid(&l1(map), g);
    let cell = [h as f64 / g as f64, w as f64 / g as f64];
    std::array::from_fn(|a| ((to[a] - from[a]) * cell[a]).round() as isize)
}

/// The pixel mask (h×w, row-major) of grid cells `region` of a g×g grid, binned as the maps
/// were pooled (`grid_bin`).
pub fn pixel_mask(region: &[usize], g: usize, h: usize, w: usize) -> Vec<bool> {
    mask_of_cells(region, g, &pixel_cells(g, h, w))
}

/// Per pixel of an h × w input (row-major), its cell of the g × g grid.
pub fn pixel_cells(g: usize, h: usize, w: usize) -> Vec<usize> {
    (0..h * w).map(|p| pixel_cell(p, g, h, w)).collect()
}

/// The cell of the g × g grid that pixel `p` (row-major, h × w) falls in.
fn pixel_cell(p: usize, g: usize, h: usize, w: usize) -> usize {
    grid_bin(p / w, h, g) * g + grid_bin(p % w, w, g)
}

/// [`pixel_mask`] with the pixels' cells taken once (`pixel_cells`), for a caller that masks
/// many regions of one grid.
pub fn mask_of_cells(region: &[usize], g: usize, cells: &[usize]) -> Vec<bool> {
    let in_region = cells_in(region, g);
    cells.iter().map(|&c| in_region[c]).collect()
}

/// Per cell of the g × g grid, whether it is one of `region`.
fn cells_in(region: &[usize], g: usize) -> Vec<bool> {
    let mut in_region = vec![false; g * g];
    for &c in region {
        in_region[c] = true;
    }
    in_region
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
    fn a_region_moves_to_where_the_image_holds_its_relevance() {
        // 4×4 grid; the region is the 1×2 block at r0c0–r0c1, the image's relevance sits on
        // r2c2–r2c3 (and a little at r0c0).
        let mut map = vec![0.0f32; 16];
        map[10] = 3.0;
        map[11] = 2.0;
        map[0] = 1.0;
        assert_eq!(best_shift(&[0, 1], &map, 4), vec![10, 11]);
        // Relevance already in the region: it stays.
        let mut here = vec![0.0f32; 16];
        here[0] = 1.0;
        here[1] = 1.0;
        assert_eq!(best_shift(&[0, 1], &here, 4), vec![0, 1]);
        // A map without relevance ties everywhere: the smallest move, none.
        assert_eq!(best_shift(&[5, 6], &[0.0; 16], 4), vec![5, 6]);
        // Negative relevance is avoided, not sought (signed shares).
        let mut signed = vec![0.0f32; 16];
        signed[0] = -5.0;
        signed[15] = 1.0;
        assert_eq!(best_shift(&[0], &signed, 4), vec![15]);
    }

    #[test]
    fn a_region_that_spans_the_grid_cannot_move() {
        // The border of a 4×4 grid (a frame) and a full top row (a letterbox band): every
        // translation but none leaves the grid.
        let border: Vec<usize> = (0..16)
            .filter(|c| c / 4 == 0 || c / 4 == 3 || c % 4 == 0 || c % 4 == 3)
            .collect();
        let mut map = vec![0.0f32; 16];
        map[5] = 10.0;
        assert_eq!(best_shift(&border, &map, 4), border);
        // The top row can only move down, whole.
        assert_eq!(best_shift(&[0, 1, 2, 3], &map, 4), vec![4, 5, 6, 7]);
        assert_eq!(best_shift(&[], &map, 4), Vec::<usize>::new());
    }

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
    fn a_marks_region_grows_into_neighbouring_cells_above_a_third_of_the_margin() {
        // An 8×8 excess (the rest's maps all zero): a peak at r7c3 (1.0), r7c4 at 0.6, next to
        // them r6c3 at 0.3 and r7c5 at 0.2 (≥ 0.5/3 of the peak: joined), r6c4 at 0.1 (below:
        // not), and r0c0 at 0.3 away from the region (not joined).
        let mut cluster = vec![0.0f32; 64];
        for (c, v) in [
            (59, 1.0),
            (60, 0.6),
            (51, 0.3),
            (61, 0.2),
            (52, 0.1),
            (0, 0.3),
        ] {
            cluster[c] = v;
        }
        let rest = vec![0.0f32; 64];
        let region = cluster_region(&[&cluster], &[&rest], 8, 0.5);
        assert_eq!(region, vec![51, 59, 60, 61]);
        assert_eq!(describe(&region, 8), "r6c3 r7c3 r7c4 r7c5");
        // With a margin of 1 only the peak seeds it, and a cell joins from a third of it
        // (0.33): r7c4 (0.6) does, r6c3 (0.3) and r7c5 (0.2) do not.
        assert_eq!(cluster_region(&[&cluster], &[&rest], 8, 1.0), vec![59, 60]);
    }

    #[test]
    fn growth_adds_at_most_a_marks_size_largest_first_and_never_to_a_large_region() {
        // 8×8 (a mark: 4 cells): one seed at r3c3 (1.0), its neighbourhood a slow fall-off.
        let g = 8;
        let rest = vec![0.0f32; g * g];
        let mut cluster = vec![0.0f32; g * g];
        cluster[27] = 1.0;
        for (c, v) in [
            (26, 0.4),
            (28, 0.45),
            (19, 0.3),
            (35, 0.35),
            (29, 0.44),
            (30, 0.43),
        ] {
            cluster[c] = v;
        }
        // Four joined, the largest first through the region as it grows: r3c4 (0.45), r3c5
        // (0.44, next to r3c4), r3c6 (0.43), r3c2 (0.4); r4c3 (0.35) and r2c3 (0.3) are left.
        assert_eq!(
            cluster_region(&[&cluster], &[&rest], g, 0.5),
            vec![26, 27, 28, 29, 30]
        );
        // Five cells at the margin (more than a mark): not grown.
        let mut wide = cluster.clone();
        for c in [20, 21, 22, 23, 24] {
            wide[c] = 0.9;
        }
        let region = cluster_region(&[&wide], &[&rest], g, 0.5);
        assert_eq!(region, vec![20, 21, 22, 23, 24, 27]);
    }

    #[test]
    fn a_strip_extends_along_its_line_and_never_sideways() {
        // 8×8, the rest's maps all zero: a ruler down column 0, rows 0–6 at the margin or
        // above (more than a mark), r7c0 at 0.48 of the peak (under the margin of 0.5, above
        // a third of it: joined), and column 1 beside it at 0.45 (never joined: sideways).
        let g = 8;
        let rest = vec![0.0f32; g * g];
        let mut ruler = vec![0.0f32; g * g];
        for r in 0..7 {
            ruler[r * g] = 0.9 + 0.01 * r as f32;
            ruler[r * g + 1] = 0.45;
        }
        ruler[7 * g] = 0.48;
        ruler[7 * g + 1] = 0.45;
        let column: Vec<usize> = (0..g).map(|r| r * g).collect();
        assert_eq!(cluster_region(&[&ruler], &[&rest], g, 0.5), column);
        // Under a third of the margin the end stays out.
        ruler[7 * g] = 0.1;
        assert_eq!(
            cluster_region(&[&ruler], &[&rest], g, 0.5),
            column[..7].to_vec()
        );
        // A caption along the bottom row with a gap at c3 and its ends under the margin: the
        // gap and both ends join; the row above (0.4) does not.
        let mut caption = vec![0.0f32; g * g];
        for c in 1..7 {
            caption[7 * g + c] = if c == 3 { 0.3 } else { 1.0 };
            caption[6 * g + c] = 0.4;
        }
        caption[7 * g] = 0.2;
        caption[7 * g + 7] = 0.25;
        assert_eq!(
            cluster_region(&[&caption], &[&rest], g, 0.5),
            (56..64).collect::<Vec<_>>()
        );
        // Cells in two rows and two columns are not a strip: the region stays at the margin.
        let mut block = vec![0.0f32; g * g];
        for c in [18, 19, 20, 26, 27] {
            block[c] = 1.0;
        }
        block[21] = 0.45;
        assert_eq!(
            cluster_region(&[&block], &[&rest], g, 0.5),
            vec![18, 19, 20, 26, 27]
        );
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

    #[test]
    fn a_maps_centroid_moves_onto_anothers() {
        // 2 × 2 grid: all positive relevance in the top-left cell, some negative elsewhere.
        let top_left = [4.0f32, -1.0, 0.0, 0.0];
        assert_eq!(centroid(&l1(&top_left), 2), [0.0, 0.0]);
        assert_eq!(centroid(&[0.0; 4], 2), [0.5, 0.5]);
        // Onto the bottom-right cell of an 8 × 8 image: 4 pixels down and right.
        assert_eq!(shift_to(&top_left, [1.0, 1.0], 2, [8, 8]), [4, 4]);
        assert_eq!(shift_to(&top_left, [0.0, 0.5], 2, [8, 8]), [0, 2]);
    }

    #[test]
    fn share_in_is_the_l1_normalised_relevance_in_the_cells() {
        let map = [1.0, -1.0, 2.0, 0.0];
        assert!((share_in(&map, &[0, 2]) - 0.75).abs() < 1e-12);
        assert!((share_in(&map, &[1]) + 0.25).abs() < 1e-12);
        assert_eq!(share_in(&[0.0; 4], &[0]), 0.0);
        // A cell off the grid counts nothing.
        assert!((share_in(&map, &[2, 9]) - 0.5).abs() < 1e-12);
    }
}
