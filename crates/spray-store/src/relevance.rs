//! Stage 1's output: `<out>/relevance/part-NNNNN.parquet` (one row per explained
//! (image, class)) and `<out>/relevance/errors-NNNNN.parquet` (inputs that could not be used).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::columns;
use crate::io::{io_err, parquet_err};
use crate::{write_batches_atomically, Result, StoreError};

/// The version of the relevance parts' columns, part of the stage's fingerprint: a cached
/// dataset written without a column the analysis now reads is recomputed, not silently used
/// without it. 2: `image_colour`. 3: `logits` (so that a layout's `logits` describes every
/// part of the dataset). 4: `image_blocks`. 5: `image_compression` (the block statistics
/// and the quality the file was last saved at) in its place.
pub const SCHEMA_VERSION: u32 = 5;

/// Which optional columns a relevance dataset carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelevanceLayout {
    /// Grid sizes g of the sum-pooled maps, each stored as `grid_<g>` (g*g values, row-major).
    pub grids: Vec<usize>,
    /// Whether `map` (the channel-summed map, sum-pooled to at most `map_max_side`) is stored.
    pub store_map: bool,
    /// Whether the preprocessed input is stored: `image_grid_<g>` (3*g*g values, channel-major,
    /// average-pooled) for the image-space baseline, and a small PNG `thumbnail`.
    pub store_images: bool,
    /// The layers of the `concept` column (relevance per channel of intermediate layers,
    /// `spray_lrp::ConceptLayer`), side by side in this order; empty when there is no such
    /// column (no layers asked for, a model without them, datasets written before it existed).
    #[serde(default)]
    pub concept_layers: Vec<ConceptLayerInfo>,
    /// Whether `image_colour` is stored: the preprocessed input's global colour statistics
    /// per channel ([`COLOUR_STATS`]), for the colour space of the analysis. A pixel heatmap
    /// sums relevance over channels, so a shortcut that is a colour (a cast, a white balance)
    /// has no place in it; these numbers are where such groups are looked for.
    #[serde(default)]
    pub colour_stats: bool,
    /// Whether `image_compression` is stored: how the decoded file was compressed
    /// ([`COMPRESSION_STATS`] values: its JPEG block statistics, `spray_dataset::block_stats`,
    /// and the quality it was last saved at, `spray_dataset::jpeg_quality`), for the
    /// compression space of the analysis: a source that compresses harder leaves blocks over
    /// the whole image, which no heatmap holds in one place.
    #[serde(default)]
    pub compression_stats: bool,
    /// Whether `logits` is stored: the model's pre-softmax outputs for the image, every class,
    /// from the same forward pass as the relevance. Why: the verify stage needs other classes'
    /// images' logits before any change (the recipients of its transplants), and scoring them
    /// again was a tenth of the images it scored. Absent in datasets written before it
    /// existed and in imported attributions; the verify stage then scores them.
    #[serde(default)]
    pub logits: bool,
}

/// Values of the `image_colour` column: the mean of each RGB channel (pixels in [0, 1]), then
/// the natural log of each channel's standard deviation (floored at 1/255; a log because a
/// cast or gain scales a channel's spread, which a log turns into a shift).
pub const COLOUR_STATS: usize = 6;

/// Values of the `image_compression` column: the luma's log step ratio on JPEG's 8-pixel grid
/// against off it, across rows then across columns (`spray_dataset::block_stats`; 0 for a
/// file that is not a JPEG), then the libjpeg quality the file was last saved at
/// (`spray_dataset::jpeg_quality`; 100 for a lossless file, and for a JPEG without a table).
pub const COMPRESSION_STATS: usize = 3;

/// Where the quality sits in an `image_compression` row: after the block statistics, which
/// are the values before it.
pub const QUALITY_AT: usize = 2;

/// libjpeg's scale of the standard quantisation tables for `quality` (1–100), in percent:
/// 5000 / q below 50, 200 − 2q from it (quality 50: 100, 98: 4, 30: 167; 100: 0, which
/// is also what a lossless file reads). Why the analysis and the verify stage use it rather
/// than the quality: the steps grow with it linearly, so the detail a file lost does, while
/// the quality's scale crowds the hard compressions (10 to 30 is 500 to 167) together.
pub fn quantiser_scale(quality: f32) -> f32 {
    let q = quality.clamp(1.0, 100.0);
    if q < 50.0 {
        5000.0 / q
    } else {
        200.0 - 2.0 * q
    }
}

/// The `image_colour` values of an RGB image ([`COLOUR_STATS`]), at full resolution: the
/// spread of a channel lives in its pixel noise, which pooling would average away.
pub fn colour_stats(rgb: &[u8]) -> Vec<f32> {
    let n = (rgb.len() / 3).max(1) as f64;
    let mut sum = [0.0f64; 3];
    let mut sq = [0.0f64; 3];
    for px in rgb.chunks_exact(3) {
        for c in 0..3 {
            let v = f64::from(px[c]) / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
    }
    let mean = sum.map(|s| s / n);
    let mut out: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    for c in 0..3 {
        let var = (sq[c] / n - mean[c] * mean[c]).max(0.0);
        out.push(var.sqrt().max(1.0 / 255.0).ln() as f32);
    }
    out
}

/// One layer of the `concept` column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConceptLayerInfo {
    /// The model's node whose output's relevance it is.
    pub node: String,
    pub channels: usize,
}

impl RelevanceLayout {
    /// Width of the `concept` column (0: none).
    pub fn concept_width(&self) -> usize {
        self.concept_layers.iter().map(|l| l.channels).sum()
    }

    /// Where each concept layer's channels sit in the column.
    pub fn concept_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let mut start = 0;
        self.concept_layers
            .iter()
            .map(|l| {
                start += l.channels;
                start - l.channels..start
            })
            .collect()
    }
}

/// One explained (image, class).
#[derive(Debug, Clone, PartialEq)]
pub struct RelevanceRecord {
    /// Position of the image in the dataset's deterministic order.
    pub image_index: i64,
    pub sample_id: String,
    pub path: String,
    /// The class whose relevance this row holds.
    pub class_index: i32,
    pub class_name: String,
    /// All ground-truth labels of the image (empty when unlabelled).
    pub labels: Vec<i32>,
    /// Pre-softmax output of `class_index`.
    pub target_logit: f32,
    pub predicted_class: i32,
    /// Total relevance at the input.
    pub relevance_sum: f32,
    /// |relevance_sum − target_logit| / max(|target_logit|, 1e-12): how much relevance the
    /// rules absorbed (biases, ε, αβ) or created.
    pub conservation_error: f32,
    /// One sum-pooled map per `RelevanceLayout::grids` entry.
    pub grids: Vec<Vec<f32>>,
    /// Channel-summed map (height, width, values) when `store_map`.
    pub map: Option<(i32, i32, Vec<f32>)>,
    /// One pooled input per grid when `store_images`.
    pub image_grids: Vec<Vec<f32>>,
    /// PNG of the preprocessed input when `store_images`.
    pub thumbnail: Option<Vec<u8>>,
    /// Relevance per channel of the concept layers when the layout has them.
    pub concept: Option<Vec<f32>>,
    /// The input's colour statistics ([`colour_stats`]) when the layout has them.
    pub colour: Option<Vec<f32>>,
    /// How the file was compressed ([`COMPRESSION_STATS`] values) when the layout has it.
    pub compression: Option<Vec<f32>>,
    /// The model's pre-softmax outputs, every class (`RelevanceLayout::logits`).
    pub logits: Option<Vec<f32>>,
}

/// An input that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    pub image_index: i64,
    pub sample_id: String,
    pub path: String,
    pub reason: String,
}

/// The pooling that defines the `grid_<g>` columns (and that analysis repeats on `map` when a
/// grid was not stored). Bin of pixel `p` of `n` in `bins` bins: pixel p goes to bin ⌊p·bins/n⌋, so every
/// pixel lands in exactly one bin and sums are kept (also when `bins` does not divide `n`, or
/// exceeds it: then some bins stay empty).
pub fn grid_bin(p: usize, n: usize, bins: usize) -> usize {
    p * bins / n
}

/// Sum-pool an h×w map to gh×gw cells (row-major). The total is preserved.
pub fn sum_pool(map: &[f32], h: usize, w: usize, gh: usize, gw: usize) -> Vec<f32> {
    let mut out = vec![0.0f64; gh * gw];
    for y in 0..h {
        let by = grid_bin(y, h, gh);
        for x in 0..w {
            out[by * gw + grid_bin(x, w, gw)] += map[y * w + x] as f64;
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

pub fn grid_column(g: usize) -> String {
    format!("grid_{g}")
}

pub fn image_grid_column(g: usize) -> String {
    format!("image_grid_{g}")
}

pub fn schema(layout: &RelevanceLayout) -> Arc<Schema> {
    let mut fields = vec![
        Field::new("image_index", DataType::Int64, false),
        Field::new("sample_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("class_index", DataType::Int32, false),
        Field::new("class_name", DataType::Utf8, false),
        Field::new("labels", columns::list_type(DataType::Int32), false),
        Field::new("target_logit", DataType::Float32, false),
        Field::new("predicted_class", DataType::Int32, false),
        Field::new("relevance_sum", DataType::Float32, false),
        Field::new("conservation_error", DataType::Float32, false),
    ];
    for &g in &layout.grids {
        fields.push(Field::new(
            grid_column(g),
            columns::fixed_f32_type(g * g),
            false,
        ));
    }
    if layout.store_map {
        fields.push(Field::new("map_height", DataType::Int32, false));
        fields.push(Field::new("map_width", DataType::Int32, false));
        fields.push(Field::new(
            "map",
            columns::list_type(DataType::Float32),
            false,
        ));
    }
    if layout.store_images {
        for &g in &layout.grids {
            fields.push(Field::new(
                image_grid_column(g),
                columns::fixed_f32_type(3 * g * g),
                false,
            ));
        }
        fields.push(Field::new("thumbnail", DataType::Binary, true));
    }
    if layout.concept_width() > 0 {
        let c = layout.concept_width();
        fields.push(Field::new("concept", columns::fixed_f32_type(c), false));
    }
    if layout.colour_stats {
        fields.push(Field::new(
            "image_colour",
            columns::fixed_f32_type(COLOUR_STATS),
            false,
        ));
    }
    if layout.compression_stats {
        fields.push(Field::new(
            "image_compression",
            columns::fixed_f32_type(COMPRESSION_STATS),
            false,
        ));
    }
    if layout.logits {
        fields.push(Field::new(
            "logits",
            columns::list_type(DataType::Float32),
            false,
        ));
    }
    Arc::new(Schema::new(fields))
}

pub fn to_batch(layout: &RelevanceLayout, rows: &[RelevanceRecord]) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = vec![
        columns::i64s(rows.iter().map(|r| r.image_index)),
        columns::strings(rows.iter().map(|r| &r.sample_id)),
        columns::strings(rows.iter().map(|r| &r.path)),
        columns::i32s(rows.iter().map(|r| r.class_index)),
        columns::strings(rows.iter().map(|r| &r.class_name)),
        columns::list_i32(&rows.iter().map(|r| r.labels.clone()).collect::<Vec<_>>()),
        columns::f32s(rows.iter().map(|r| r.target_logit)),
        columns::i32s(rows.iter().map(|r| r.predicted_class)),
        columns::f32s(rows.iter().map(|r| r.relevance_sum)),
        columns::f32s(rows.iter().map(|r| r.conservation_error)),
    ];
    for (i, &g) in layout.grids.iter().enumerate() {
        if rows
            .iter()
            .any(|r| r.grids.get(i).map(|v| v.len()) != Some(g * g))
        {
            return Err(row_error(format!("a row lacks its {g}x{g} grid")));
        }
        arrays.push(columns::fixed_f32(
            rows.iter().map(|r| r.grids[i].as_slice()),
            g * g,
        ));
    }
    if layout.store_map {
        let maps = every_row(rows, "map", |r| r.map.as_ref().map(|m| m.2.as_slice()))?;
        let sides = rows.iter().filter_map(|r| r.map.as_ref());
        arrays.push(columns::i32s(sides.clone().map(|m| m.0)));
        arrays.push(columns::i32s(sides.map(|m| m.1)));
        arrays.push(columns::list_f32(&maps));
    }
    if layout.store_images {
        for (i, &g) in layout.grids.iter().enumerate() {
            if rows
                .iter()
                .any(|r| r.image_grids.get(i).map(|v| v.len()) != Some(3 * g * g))
            {
                return Err(row_error(format!("a row lacks its {g}x{g} image grid")));
            }
            arrays.push(columns::fixed_f32(
                rows.iter().map(|r| r.image_grids[i].as_slice()),
                3 * g * g,
            ));
        }
        arrays.push(columns::binaries(
            rows.iter().map(|r| r.thumbnail.as_deref()),
        ));
    }
    if layout.concept_width() > 0 {
        let c = layout.concept_width();
        let what = format!("concept relevance of {c} channels");
        let concepts = every_row(rows, &what, |r| of_width(&r.concept, c))?;
        arrays.push(columns::fixed_f32(concepts.into_iter(), c));
    }
    if layout.colour_stats {
        let colours = every_row(rows, "colour statistics", |r| {
            of_width(&r.colour, COLOUR_STATS)
        })?;
        arrays.push(columns::fixed_f32(colours.into_iter(), COLOUR_STATS));
    }
    if layout.compression_stats {
        let compression = every_row(rows, "compression statistics", |r| {
            of_width(&r.compression, COMPRESSION_STATS)
        })?;
        arrays.push(columns::fixed_f32(
            compression.into_iter(),
            COMPRESSION_STATS,
        ));
    }
    if layout.logits {
        arrays.push(columns::list_f32(&every_row(rows, "logits", |r| {
            r.logits.as_deref()
        })?));
    }
    RecordBatch::try_new(schema(layout), arrays).map_err(|e| row_error(e.to_string()))
}

/// Each row's value of an optional column the layout has (`field`: none where a row lacks it
/// or has it at the wrong width); a row without it is refused, not written short.
fn every_row<'r>(
    rows: &'r [RelevanceRecord],
    what: &str,
    field: impl Fn(&'r RelevanceRecord) -> Option<&'r [f32]>,
) -> Result<Vec<&'r [f32]>> {
    rows.iter()
        .map(|r| field(r).ok_or_else(|| row_error(format!("a row lacks its {what}"))))
        .collect()
}

/// Rows that cannot be written as the layout says.
fn row_error(message: String) -> StoreError {
    StoreError::Schema {
        path: "<relevance rows>".into(),
        column: "grid".into(),
        message,
    }
}

/// A column's value where it has `width` values.
fn of_width(v: &Option<Vec<f32>>, width: usize) -> Option<&[f32]> {
    v.as_deref().filter(|v| v.len() == width)
}

pub fn write_part(path: &Path, layout: &RelevanceLayout, rows: &[RelevanceRecord]) -> Result<()> {
    let batch = to_batch(layout, rows)?;
    write_batches_atomically(path, schema(layout), &[batch])
}

/// What to read back. Only the columns asked for are decoded (`ReadOptions::columns`):
/// skipping the wide ones keeps a stage's memory and time at the grid size.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Grids to read (empty: none).
    pub grids: Vec<usize>,
    pub map: bool,
    /// Read the pooled inputs (`image_grid_<g>` of the grids asked for).
    pub images: bool,
    /// Read the `thumbnail` column (the report's pictures; nothing else needs them).
    pub thumbnails: bool,
    /// Read the `concept` column when the part has one.
    pub concept: bool,
    /// Read the `image_colour` column when the part has one.
    pub colour: bool,
    /// Read the `image_compression` column when the part has one.
    pub compression: bool,
    /// Read the `logits` column when the part has one.
    pub logits: bool,
}

impl ReadOptions {
    /// The columns `read_part` decodes: those every part has (the schema of a layout with no
    /// optional column), and the optional ones asked for.
    fn columns(&self) -> Vec<String> {
        let bare = RelevanceLayout {
            grids: Vec::new(),
            store_map: false,
            store_images: false,
            concept_layers: Vec::new(),
            colour_stats: false,
            compression_stats: false,
            logits: false,
        };
        let mut names: Vec<String> = schema(&bare)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        names.extend(self.grids.iter().map(|&g| grid_column(g)));
        if self.images {
            names.extend(self.grids.iter().map(|&g| image_grid_column(g)));
        }
        if self.thumbnails {
            names.push("thumbnail".into());
        }
        if self.map {
            names.extend(["map", "map_height", "map_width"].map(String::from));
        }
        let optional = [
            (self.concept, "concept"),
            (self.colour, "image_colour"),
            (self.compression, "image_compression"),
            (self.logits, "logits"),
        ];
        names.extend(
            optional
                .iter()
                .filter(|(wanted, _)| *wanted)
                .map(|(_, name)| name.to_string()),
        );
        names
    }
}

pub fn read_part(path: &Path, options: &ReadOptions) -> Result<Vec<RelevanceRecord>> {
    columns::read_rows_of(path, Some(&options.columns()), |c| {
        let batch = c.batch;
        let mut out = Vec::new();
        let image_index = c.i64s("image_index")?;
        let sample_id = c.strings("sample_id")?;
        let paths = c.strings("path")?;
        let class_index = c.i32s("class_index")?;
        let class_name = c.strings("class_name")?;
        let labels = c.i32_rows("labels")?;
        let target_logit = c.f32s("target_logit")?;
        let predicted = c.i32s("predicted_class")?;
        let relevance_sum = c.f32s("relevance_sum")?;
        let conservation = c.f32s("conservation_error")?;
        let grids: Vec<Vec<Vec<f32>>> = options
            .grids
            .iter()
            .map(|&g| c.f32_rows(&grid_column(g)))
            .collect::<Result<_>>()?;
        let image_grids: Vec<Vec<Vec<f32>>> = if options.images {
            options
                .grids
                .iter()
                .map(|&g| c.f32_rows(&image_grid_column(g)))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let (map_h, map_w, maps) = if options.map && c.has("map") {
            (
                c.i32s("map_height")?,
                c.i32s("map_width")?,
                c.f32_rows("map")?,
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        let thumbs = if options.thumbnails && c.has("thumbnail") {
            c.binaries("thumbnail")?
        } else {
            Vec::new()
        };
        let concepts = if options.concept && c.has("concept") {
            c.f32_rows("concept")?
        } else {
            Vec::new()
        };
        let colours = if options.colour && c.has("image_colour") {
            c.f32_rows("image_colour")?
        } else {
            Vec::new()
        };
        let compression = if options.compression && c.has("image_compression") {
            c.f32_rows("image_compression")?
        } else {
            Vec::new()
        };
        let logits = if options.logits && c.has("logits") {
            c.f32_rows("logits")?
        } else {
            Vec::new()
        };
        for i in 0..batch.num_rows() {
            out.push(RelevanceRecord {
                image_index: image_index[i],
                sample_id: sample_id[i].clone(),
                path: paths[i].clone(),
                class_index: class_index[i],
                class_name: class_name[i].clone(),
                labels: labels[i].clone(),
                target_logit: target_logit[i],
                predicted_class: predicted[i],
                relevance_sum: relevance_sum[i],
                conservation_error: conservation[i],
                grids: grids.iter().map(|g| g[i].clone()).collect(),
                map: maps.get(i).map(|m| (map_h[i], map_w[i], m.clone())),
                image_grids: image_grids.iter().map(|g| g[i].clone()).collect(),
                thumbnail: thumbs.get(i).cloned().flatten(),
                concept: concepts.get(i).cloned(),
                colour: colours.get(i).cloned(),
                compression: compression.get(i).cloned(),
                logits: logits.get(i).cloned(),
            });
        }
        Ok(out)
    })
}

/// The grid sizes a relevance part file carries (from its `grid_<g>` columns).
pub fn stored_grids(path: &Path) -> Result<Vec<usize>> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| parquet_err(path, e))?;
    let mut grids: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .filter_map(|f| f.name().strip_prefix("grid_")?.parse().ok())
        .collect();
    grids.sort_unstable();
    Ok(grids)
}

fn error_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("image_index", DataType::Int64, false),
        Field::new("sample_id", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

pub fn write_errors(path: &Path, rows: &[ErrorRecord]) -> Result<()> {
    let arrays: Vec<ArrayRef> = vec![
        columns::i64s(rows.iter().map(|r| r.image_index)),
        columns::strings(rows.iter().map(|r| &r.sample_id)),
        columns::strings(rows.iter().map(|r| &r.path)),
        columns::strings(rows.iter().map(|r| &r.reason)),
    ];
    let batch = RecordBatch::try_new(error_schema(), arrays).map_err(|e| parquet_err(path, e))?;
    write_batches_atomically(path, error_schema(), &[batch])
}

pub fn read_errors(path: &Path) -> Result<Vec<ErrorRecord>> {
    columns::read_rows(path, |c| {
        let batch = c.batch;
        let mut out = Vec::new();
        let idx = c.i64s("image_index")?;
        let ids = c.strings("sample_id")?;
        let paths = c.strings("path")?;
        let reasons = c.strings("reason")?;
        for i in 0..batch.num_rows() {
            out.push(ErrorRecord {
                image_index: idx[i],
                sample_id: ids[i].clone(),
                path: paths[i].clone(),
                reason: reasons[i].clone(),
            });
        }
        Ok(out)
    })
}

/// What the stage wrote into `<out>/relevance/_dataset.json`: enough for later stages (and
/// later shards) to know the dataset without reopening it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelevanceManifest {
    /// Hash of everything that determines the output (model, rules, preprocessing, samples,
    /// settings): parts from different inputs are never mixed.
    pub fingerprint: String,
    pub classes: Vec<String>,
    pub images: usize,
    pub parts: usize,
    pub layout: RelevanceLayout,
}

pub fn part_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("part-{part:05}.parquet"))
}

pub fn errors_path(dir: &Path, part: usize) -> PathBuf {
    dir.join(format!("errors-{part:05}.parquet"))
}

pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("_dataset.json")
}

/// Read `_dataset.json` of a relevance folder.
pub fn read_manifest(dir: &Path) -> Result<RelevanceManifest> {
    let path = manifest_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        StoreError::Incomplete(format!(
            "{}: {e} (has the relevance stage run into this folder?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Incomplete(format!("{}: {e}", path.display())))
}

/// The part files of a finished relevance dataset; an error names the missing parts.
pub fn finished_parts(dir: &Path) -> Result<(RelevanceManifest, Vec<PathBuf>)> {
    let manifest = read_manifest(dir)?;
    let missing: Vec<usize> = (0..manifest.parts)
        .filter(|&p| !part_path(dir, p).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Incomplete(format!(
            "{}: {} of {} parts missing (first: {:?}); run the remaining shards",
            dir.display(),
            missing.len(),
            manifest.parts,
            &missing[..missing.len().min(5)]
        )));
    }
    Ok((
        manifest.clone(),
        (0..manifest.parts).map(|p| part_path(dir, p)).collect(),
    ))
}
