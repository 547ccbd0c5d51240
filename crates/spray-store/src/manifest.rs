//! Manifests given as Parquet: `path` (Utf8), `label` or `labels` (Int32/Int64/Utf8, or a list
//! of those), optional `sample_id` (Utf8).

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};

use crate::columns;
use crate::{Result, StoreError};

/// One manifest row; labels as written (class names or indices), resolved by the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub path: String,
    pub labels: Vec<String>,
    pub sample_id: Option<String>,
}

fn cell_strings(array: &dyn Array, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    if let Some(a) = array.as_primitive_opt::<Int32Type>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = array.as_string_opt::<i32>() {
        return Some(a.value(i).to_owned());
    }
    if let Some(a) = array.as_string_opt::<i64>() {
        return Some(a.value(i).to_owned());
    }
    None
}

pub fn read_parquet(path: &Path) -> Result<Vec<ManifestRow>> {
    columns::read_rows(path, |c| {
        let batch = c.batch;
        let mut out = Vec::new();
        let paths = c.strings("path")?;
        let ids = if c.has("sample_id") {
            Some(c.strings("sample_id")?)
        } else {
            None
        };
        let labels_col = batch
            .column_by_name("labels")
            .or_else(|| batch.column_by_name("label"));
        for i in 0..batch.num_rows() {
            let labels = match labels_col {
                None => Vec::new(),
                Some(col) => {
                    if let Some(list) = col.as_list_opt::<i32>() {
                        let row = list.value(i);
                        (0..row.len())
                            .filter_map(|j| cell_strings(row.as_ref(), j))
                            .collect()
                    } else {
                        let cell =
                            cell_strings(col.as_ref(), i).ok_or_else(|| StoreError::Schema {
                                path: c.path.to_owned(),
                                column: "label".into(),
                                message: format!("unsupported type {}", col.data_type()),
                            });
                        if col.is_null(i) {
                            Vec::new()
                        } else {
                            vec![cell?]
                        }
                    }
                }
            };
            out.push(ManifestRow {
                path: paths[i].clone(),
                labels,
                sample_id: ids.as_ref().map(|v| v[i].clone()).filter(|s| !s.is_empty()),
            });
        }
        Ok(out)
    })
}
