//! The relevance dataset as the analysis keeps it (one slim row per map, the prepared
//! features of every map in one matrix) and a group's view of it: the ids, masses and raw
//! values each feature space is built from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray16::Array2;
use spray_store::relevance::{self as rel, ReadOptions};

use crate::error::{AnalyzeError, Result};
use crate::graph::locked;
use crate::settings::Grouping;

/// One map as the analysis keeps it (see `read::read_dataset`).
#[derive(Debug)]
pub(crate) struct AnalysisRow {
    pub image_index: i64,
    pub class_index: i32,
    pub sample_id: String,
    pub path: String,
    /// Σ|R| of the pooled grid (before any normalisation), for the mass contrast.
    pub mass: f64,
    /// Position in reading order (the prepared matrix's row before it is put in row order).
    pub read_at: usize,
    /// The pooled input (3×g×g) for the image-space baseline, when read; taken (left empty)
    /// when its group is analysed. Behind a lock because groups are analysed side by side.
    pub image_grid: Mutex<Option<Vec<f32>>>,
    /// The input's colour statistics (`relevance::colour_stats`), when read.
    pub colour: Option<Vec<f32>>,
    /// How the file was compressed (`relevance::COMPRESSION_STATS` values), when read.
    pub compression: Option<Vec<f32>>,
    /// (part, row in part) of the row in the relevance dataset: where its group's concept
    /// values are read from.
    pub source: (u32, u32),
}

/// Every map of the relevance dataset, in (image_index, class_index) order.
pub(crate) struct Dataset {
    rows: Vec<AnalysisRow>,
    /// Row i is `rows[i]`'s prepared features. Behind a lock so that a group of every row
    /// (grouping = "all") can take the matrix itself instead of a copy; other groups copy
    /// their rows out of it.
    prepared: Mutex<Option<Array2<f32>>>,
    /// The relevance parts, by index (`AnalysisRow::source`).
    parts: Vec<PathBuf>,
}

impl Dataset {
    /// `rows` in row order, `prepared` their features in the same order.
    pub fn new(rows: Vec<AnalysisRow>, prepared: Array2<f32>, parts: Vec<PathBuf>) -> Dataset {
        Dataset {
            rows,
            prepared: Mutex::new(Some(prepared)),
            parts,
        }
    }

    /// The rows of each group, by group key (the class, or −1 for all samples), ascending.
    pub fn groups(&self, grouping: Grouping) -> BTreeMap<i32, Vec<usize>> {
        let mut by_group: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            let key = match grouping {
                Grouping::PerClass => r.class_index,
                Grouping::All => -1,
            };
            by_group.entry(key).or_default().push(i);
        }
        by_group
    }

    /// The group `class` of `members`, named after the relevance dataset's `classes`.
    pub fn group<'a>(
        &'a self,
        class: i32,
        members: &'a [usize],
        classes: &[String],
    ) -> GroupRows<'a> {
        GroupRows {
            dataset: self,
            class,
            name: group_label(class, classes),
            members,
        }
    }
}

/// "all samples", the class's name, or "class N" for an index the dataset does not name.
pub(crate) fn group_label(class: i32, classes: &[String]) -> String {
    if class < 0 {
        "all samples".to_string()
    } else {
        classes
            .get(class as usize)
            .cloned()
            .unwrap_or_else(|| format!("class {class}"))
    }
}

/// One group's rows of the dataset.
pub(crate) struct GroupRows<'a> {
    dataset: &'a Dataset,
    /// The group's key: its class, −1 for all samples.
    pub class: i32,
    pub name: String,
    /// Indices into the dataset's rows, ascending.
    pub members: &'a [usize],
}

impl<'a> GroupRows<'a> {
    fn rows(&self) -> impl Iterator<Item = &'a AnalysisRow> + 'a {
        let rows = &self.dataset.rows;
        self.members.iter().map(move |&i| &rows[i])
    }

    /// (image_index, sample_id, path) per row.
    pub fn ids(&self) -> Vec<(i64, String, String)> {
        self.rows()
            .map(|r| (r.image_index, r.sample_id.clone(), r.path.clone()))
            .collect()
    }

    /// Each row's relevance mass before normalisation.
    pub fn masses(&self) -> Vec<f64> {
        self.rows().map(|r| r.mass).collect()
    }

    /// The group's prepared relevance features: the whole matrix itself when the group holds
    /// every row (it is analysed once), else a copy of its rows.
    pub fn take_relevance(&self) -> Result<Array2<f32>> {
        let mut whole = locked(&self.dataset.prepared);
        if self.members.len() == self.dataset.rows.len() {
            whole.take()
        } else {
            whole
                .as_ref()
                .map(|m| m.select(ndarray16::Axis(0), self.members))
        }
        .ok_or_else(|| {
            AnalyzeError::Internal("the prepared features were already handed out".into())
        })
    }

    /// The rows' pooled inputs, taken out of the dataset (each group is analysed once); empty
    /// for a row without one.
    pub fn take_image_grids(&self) -> Vec<Vec<f32>> {
        self.rows()
            .map(|r| locked(&r.image_grid).take().unwrap_or_default())
            .collect()
    }

    /// The rows' colour statistics; an error names the first row read without them.
    pub fn colours(&self) -> Result<Vec<&'a [f32]>> {
        self.statistics("colour", |r| r.colour.as_deref())
    }

    /// The rows' compression statistics; an error names the first row read without them.
    pub fn compression(&self) -> Result<Vec<&'a [f32]>> {
        self.statistics("compression", |r| r.compression.as_deref())
    }

    /// Each row's per-image statistics of one kind (`what`); an error names the first row
    /// read without them.
    fn statistics(
        &self,
        what: &str,
        of: impl Fn(&'a AnalysisRow) -> Option<&'a [f32]>,
    ) -> Result<Vec<&'a [f32]>> {
        self.rows()
            .map(|r| {
                of(r).ok_or_else(|| {
                    self.corrupt(
                        r,
                        &format!("has no {what} statistics, though the manifest stores them"),
                    )
                })
            })
            .collect()
    }

    /// The concept column of the group's rows, read from the parts that hold them (one part
    /// at a time), so that only the groups in flight hold concept values.
    pub fn concepts(&self) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); self.members.len()];
        let mut by_part: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
        for (k, r) in self.rows().enumerate() {
            let (part, row) = r.source;
            by_part.entry(part).or_default().push((row, k));
        }
        let options = ReadOptions {
            concept: true,
            ..Default::default()
        };
        for (part, wanted) in by_part {
            let path = self.part(part);
            let mut records = rel::read_part(path, &options)?;
            for (row, k) in wanted {
                out[k] = records
                    .get_mut(row as usize)
                    .and_then(|r| r.concept.take())
                    .ok_or_else(|| AnalyzeError::CorruptInput {
                        path: path.display().to_string(),
                        reason: format!(
                            "row {row} has no concept column (the part changed since it was read?)"
                        ),
                    })?;
            }
        }
        Ok(out)
    }

    /// An error naming the part and row of the group's row `k` (its position in `members`).
    pub fn corrupt_at(&self, k: usize, reason: &str) -> AnalyzeError {
        match self.members.get(k) {
            Some(&i) => self.corrupt(&self.dataset.rows[i], reason),
            None => AnalyzeError::Internal(format!("{}: no row {k}: {reason}", self.name)),
        }
    }

    fn corrupt(&self, r: &AnalysisRow, reason: &str) -> AnalyzeError {
        AnalyzeError::CorruptInput {
            path: self.part(r.source.0).display().to_string(),
            reason: format!("row {} ('{}') {reason}", r.source.1, r.sample_id),
        }
    }

    fn part(&self, part: u32) -> &'a Path {
        self.dataset
            .parts
            .get(part as usize)
            .map_or(Path::new("<unknown part>"), |p| p.as_path())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(image_index: i64, class_index: i32, read_at: usize) -> AnalysisRow {
        AnalysisRow {
            image_index,
            class_index,
            sample_id: format!("s{image_index}-{class_index}"),
            path: format!("{image_index}.png"),
            mass: image_index as f64,
            read_at,
            image_grid: Mutex::new(Some(vec![image_index as f32; 3])),
            colour: (image_index != 3).then(|| vec![0.5; 6]),
            compression: (image_index != 2).then(|| vec![0.25, 0.25, 90.0]),
            source: (0, read_at as u32),
        }
    }

    fn dataset() -> Dataset {
        let rows = vec![row(0, 1, 0), row(1, 0, 1), row(2, 1, 2), row(3, 0, 3)];
        let prepared = Array2::from_shape_fn((4, 2), |(i, j)| (10 * i + j) as f32);
        Dataset::new(rows, prepared, vec![PathBuf::from("part-00000.parquet")])
    }

    #[test]
    fn groups_are_classes_or_everything() {
        let d = dataset();
        let per_class = d.groups(Grouping::PerClass);
        assert_eq!(per_class.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(per_class[&0], vec![1, 3]);
        assert_eq!(per_class[&1], vec![0, 2]);
        let all = d.groups(Grouping::All);
        assert_eq!(all[&-1], vec![0, 1, 2, 3]);
    }

    #[test]
    fn groups_are_named_after_their_class() {
        let classes = vec!["cat".to_string(), "dog".to_string()];
        assert_eq!(group_label(-1, &classes), "all samples");
        assert_eq!(group_label(1, &classes), "dog");
        assert_eq!(group_label(7, &classes), "class 7");
    }

    #[test]
    fn a_group_copies_its_rows_and_the_whole_group_takes_the_matrix() {
        let d = dataset();
        let classes = Vec::new();
        let members = [1, 3];
        let some = d.group(0, &members, &classes);
        assert_eq!(
            some.take_relevance().unwrap().column(0).to_vec(),
            [10.0, 30.0]
        );
        assert_eq!(some.masses(), vec![1.0, 3.0]);
        assert_eq!(some.ids()[1], (3, "s3-0".to_string(), "3.png".to_string()));
        // the image grids are handed out once
        assert_eq!(some.take_image_grids(), vec![vec![1.0; 3], vec![3.0; 3]]);
        assert_eq!(some.take_image_grids(), vec![Vec::<f32>::new(); 2]);
        let all_members = [0, 1, 2, 3];
        let all = d.group(-1, &all_members, &classes);
        assert_eq!(all.take_relevance().unwrap().nrows(), 4);
        assert!(matches!(
            all.take_relevance(),
            Err(AnalyzeError::Internal(_))
        ));
    }

    #[test]
    fn a_row_without_its_statistics_is_named_with_its_part() {
        let d = dataset();
        let classes = Vec::new();
        let members = [0, 2];
        assert_eq!(d.group(1, &members, &classes).colours().unwrap().len(), 2);
        let members = [1, 3];
        let err = d.group(0, &members, &classes).colours().unwrap_err();
        assert!(matches!(err, AnalyzeError::CorruptInput { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("part-00000.parquet: row 3 ('s3-0')"),
            "{text}"
        );
        // The compression statistics the same way, for the row without them (image 2).
        let members = [1, 3];
        assert_eq!(
            d.group(0, &members, &classes).compression().unwrap().len(),
            2
        );
        let members = [0, 2];
        let err = d.group(1, &members, &classes).compression().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("row 2 ('s2-1') has no compression statistics"),
            "{text}"
        );
    }
}
