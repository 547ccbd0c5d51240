//! Typed column access and construction, with errors that name the file and column.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, FixedSizeListArray, Float32Array, Float64Array,
    Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float32Type, Float64Type, Int32Type, Int64Type,
};

use crate::{Result, StoreError};

pub(crate) fn item_field(dtype: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dtype, false))
}

pub(crate) fn fixed_f32_type(len: usize) -> DataType {
    DataType::FixedSizeList(item_field(DataType::Float32), len as i32)
}

pub(crate) fn list_type(item: DataType) -> DataType {
    DataType::List(item_field(item))
}

pub(crate) fn strings<S: AsRef<str>>(values: impl Iterator<Item = S>) -> ArrayRef {
    Arc::new(
        values
            .map(|s| Some(s.as_ref().to_owned()))
            .collect::<StringArray>(),
    )
}

pub(crate) fn i32s(values: impl Iterator<Item = i32>) -> ArrayRef {
    Arc::new(values.collect::<Int32Array>())
}

pub(crate) fn i64s(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

pub(crate) fn f32s(values: impl Iterator<Item = f32>) -> ArrayRef {
    Arc::new(values.collect::<Float32Array>())
}

pub(crate) fn f64s(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}

pub(crate) fn binaries<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> ArrayRef {
    Arc::new(values.collect::<BinaryArray>())
}

/// Rows of equal length `len` as a FixedSizeList<Float32>.
pub(crate) fn fixed_f32<'a>(rows: impl Iterator<Item = &'a [f32]>, len: usize) -> ArrayRef {
    let mut flat = Vec::new();
    for row in rows {
        debug_assert_eq!(row.len(), len);
        flat.extend_from_slice(row);
    }
    let values = Arc::new(Float32Array::from(flat));
    Arc::new(FixedSizeListArray::new(
        item_field(DataType::Float32),
        len as i32,
        values,
        None,
    ))
}

fn list_of<T: Copy, R: AsRef<[T]>>(rows: &[R], values: ArrayRef, item: DataType) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.as_ref().len()));
    Arc::new(ListArray::new(item_field(item), offsets, values, None))
}

pub(crate) fn list_i32(rows: &[Vec<i32>]) -> ArrayRef {
    let values = Arc::new(Int32Array::from(rows.concat()));
    list_of(rows, values, DataType::Int32)
}

/// A list column of the rows (owned or borrowed).
pub(crate) fn list_f32<R: AsRef<[f32]>>(rows: &[R]) -> ArrayRef {
    let values: Vec<f32> = rows.iter().flat_map(|r| r.as_ref()).copied().collect();
    list_of(
        rows,
        Arc::new(Float32Array::from(values)),
        DataType::Float32,
    )
}

pub(crate) fn list_f64(rows: &[Vec<f64>]) -> ArrayRef {
    let values = Arc::new(Float64Array::from(rows.concat()));
    list_of(rows, values, DataType::Float64)
}

/// Every row of the Parquet file at `path`: `rows` turns one batch's columns into its rows.
pub(crate) fn read_rows<T>(
    path: &std::path::Path,
    rows: impl FnMut(&Columns<'_>) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    read_rows_of(path, None, rows)
}

/// [`read_rows`] with only the top-level `columns` decoded (`None`: all;
/// `io::read_batches_of`).
pub(crate) fn read_rows_of<T>(
    path: &std::path::Path,
    columns: Option<&[String]>,
    mut rows: impl FnMut(&Columns<'_>) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let name = path.display().to_string();
    let mut out = Vec::new();
    for batch in crate::io::read_batches_of(path, columns)? {
        out.extend(rows(&Columns {
            path: &name,
            batch: &batch,
        })?);
    }
    Ok(out)
}

/// Reads columns of one batch by name.
pub(crate) struct Columns<'a> {
    pub path: &'a str,
    pub batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn err(&self, column: &str, message: impl Into<String>) -> StoreError {
        StoreError::Schema {
            path: self.path.to_owned(),
            column: column.to_owned(),
            message: message.into(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    fn column(&self, name: &str) -> Result<&'a ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| self.err(name, "missing"))
    }

    pub fn strings(&self, name: &str) -> Result<Vec<String>> {
        let col = self.column(name)?;
        let arr = col
            .as_string_opt::<i32>()
            .ok_or_else(|| self.err(name, format!("expected Utf8, found {}", col.data_type())))?;
        Ok((0..arr.len())
            .map(|i| {
                if arr.is_null(i) {
                    String::new()
                } else {
                    arr.value(i).to_owned()
                }
            })
            .collect())
    }

    /// A Utf8 column of typed values (an enum spelled as text).
    pub fn parsed<T>(&self, name: &str) -> Result<Vec<T>>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.strings(name)?
            .iter()
            .map(|v| v.parse().map_err(|e: T::Err| self.err(name, e.to_string())))
            .collect()
    }

    /// A primitive column of type `T`.
    fn primitives<T: ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<T::Native>> {
        let col = self.column(name)?;
        let arr = col.as_primitive_opt::<T>().ok_or_else(|| {
            self.err(
                name,
                format!("expected {}, found {}", T::DATA_TYPE, col.data_type()),
            )
        })?;
        Ok(arr.values().to_vec())
    }

    pub fn i32s(&self, name: &str) -> Result<Vec<i32>> {
        self.primitives::<Int32Type>(name)
    }

    pub fn i64s(&self, name: &str) -> Result<Vec<i64>> {
        self.primitives::<Int64Type>(name)
    }

    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        self.primitives::<Float32Type>(name)
    }

    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        self.primitives::<Float64Type>(name)
    }

    pub fn binaries(&self, name: &str) -> Result<Vec<Option<Vec<u8>>>> {
        let col = self.column(name)?;
        let arr = col
            .as_binary_opt::<i32>()
            .ok_or_else(|| self.err(name, format!("expected Binary, found {}", col.data_type())))?;
        Ok((0..arr.len())
            .map(|i| (!arr.is_null(i)).then(|| arr.value(i).to_vec()))
            .collect())
    }

    /// A FixedSizeList<Float32> or List<Float32> column as one Vec per row.
    pub fn f32_rows(&self, name: &str) -> Result<Vec<Vec<f32>>> {
        let col = self.column(name)?;
        if let Some(arr) = col.as_fixed_size_list_opt() {
            let values = arr
                .values()
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| self.err(name, "expected Float32 items"))?;
            let len = arr.value_length() as usize;
            let start = arr.offset() * len;
            return Ok((0..arr.len())
                .map(|i| values.values()[start + i * len..start + (i + 1) * len].to_vec())
                .collect());
        }
        if let Some(arr) = col.as_list_opt::<i32>() {
            return self.list_items::<Float32Type>(name, arr);
        }
        Err(self.err(
            name,
            format!("expected a list of Float32, found {}", col.data_type()),
        ))
    }

    pub fn f64_rows(&self, name: &str) -> Result<Vec<Vec<f64>>> {
        self.list_rows::<Float64Type>(name)
    }

    pub fn i32_rows(&self, name: &str) -> Result<Vec<Vec<i32>>> {
        self.list_rows::<Int32Type>(name)
    }

    /// A List<T> column as one Vec per row.
    fn list_rows<T: ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<Vec<T::Native>>> {
        let col = self.column(name)?;
        let arr = col
            .as_list_opt::<i32>()
            .ok_or_else(|| self.err(name, format!("expected List, found {}", col.data_type())))?;
        self.list_items::<T>(name, arr)
    }

    fn list_items<T: ArrowPrimitiveType>(
        &self,
        name: &str,
        arr: &ListArray,
    ) -> Result<Vec<Vec<T::Native>>> {
        (0..arr.len())
            .map(|i| {
                arr.value(i)
                    .as_primitive_opt::<T>()
                    .map(|p| p.values().to_vec())
                    .ok_or_else(|| self.err(name, format!("expected {} items", T::DATA_TYPE)))
            })
            .collect()
    }
}
