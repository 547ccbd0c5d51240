//! Atomic file writing and Parquet plumbing shared by all tables.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{Result, StoreError};

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A Parquet or Arrow failure on the file at `path`.
pub(crate) fn parquet_err(path: &Path, e: impl ToString) -> StoreError {
    StoreError::Parquet {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The temporary name a file is written under before it is renamed into place. Readers list
/// only `*.parquet` / `*.json`, so a temporary file is never mistaken for a finished one.
pub fn tmp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write `bytes` to `path` so that the file is either absent or complete: write a temporary
/// file in the same folder, fsync it, rename it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let tmp = tmp_path_for(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    Ok(())
}

/// Write record batches as one zstd-compressed Parquet file, atomically.
pub fn write_batches_atomically(
    path: &Path,
    schema: Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    let tmp = tmp_path_for(path);
    let perr = |e: parquet::errors::ParquetError| parquet_err(path, e);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(perr)?))
            .build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(perr)?;
        for batch in batches {
            writer.write(batch).map_err(perr)?;
        }
        let file = writer.into_inner().map_err(perr)?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Read all record batches of a Parquet file.
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    read_batches_of(path, None)
}

/// Read the record batches of a Parquet file with only the top-level columns named in
/// `columns` (`None`: every column). A name the file lacks is not an error here: the batch
/// has no such column, and a reader that needs it says so (`Columns::has`). Why: Parquet
/// stores columns apart, and a relevance part's wide columns (full-resolution maps,
/// thumbnails) are most of its bytes — a stage that needs its grids should not decode them.
pub fn read_batches_of(path: &Path, columns: Option<&[String]>) -> Result<Vec<RecordBatch>> {
    let perr = |e: parquet::errors::ParquetError| parquet_err(path, e);
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    if let Some(names) = columns {
        let schema = builder.parquet_schema();
        let roots: Vec<usize> = schema
            .root_schema()
            .get_fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| names.iter().any(|n| n == field.name()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::roots(schema, roots);
        builder = builder.with_projection(mask);
    }
    let reader = builder.with_batch_size(4096).build().map_err(perr)?;
    reader
        .map(|b| b.map_err(|e| parquet_err(path, e)))
        .collect()
}

/// The finished Parquet files whose names start with `prefix` in `dir`, sorted by name
/// (temporary files start with a dot and are skipped). A missing folder has none.
pub fn list_parquet(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".parquet") && !name.starts_with('.') {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}
