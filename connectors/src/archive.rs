//! The Parquet archive: every learned or scored window, for offline analytics.
//!
//! Rows are written in Hive partitions `date=YYYY-MM-DD/machine_type=TYPE/` (the partition keys
//! are not columns: a column that is also a Hive key breaks pyarrow datasets), sorted by
//! (machine, window start), zstd-compressed, with the feature settings in each file's footer.
//! A file appears only when complete: it is written under a temporary name in its folder,
//! synced, renamed, and the folder synced. Names are deterministic
//! (`part-{batch:012}-w{worker:03}-{index:03}.parquet`, the batch being its first epoch), so a
//! batch written again after a restart replaces its file instead of doubling rows. That is safe
//! because a restored run writes only epochs after its checkpoint's boundary (the pipeline
//! starts its input there): a file it replaces held nothing durable.

pub mod location;
pub mod reader;
mod store;

pub use location::{ArchiveLocation, LocationError, StoreLocation};

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array};
use auscult_schemas::archive::{archive_schema, PARTITION_DATE, PARTITION_MACHINE_TYPE};
use auscult_schemas::time::utc_date;
use auscult_schemas::WindowRecord;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where and how the archive is written.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveConfig {
    /// A folder, or an object store URL.
    pub location: ArchiveLocation,
    /// Most rows in one file; a larger batch is split into several files.
    pub max_rows_per_file: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    pub zstd_level: i32,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            location: ArchiveLocation::Folder(PathBuf::from("archive")),
            max_rows_per_file: 250_000,
            row_group_rows: 65_536,
            zstd_level: 3,
        }
    }
}

/// Why rows could not be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {path}: cannot create or write: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("archive {path}: Parquet writer failed: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("archive {url}: {reason}")]
    Store { url: String, reason: String },
    #[error("archive: zstd level {level} is not valid: {reason}")]
    BadLevel { level: i32, reason: String },
}

/// A file the writer committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedFile {
    pub path: PathBuf,
    pub rows: usize,
    pub bytes: u64,
}

/// Totals so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// Writes batches of window rows as Parquet files.
pub struct ArchiveWriter {
    config: ArchiveConfig,
    worker: usize,
    metadata: Vec<(String, String)>,
    properties_compression: Compression,
    stats: ArchiveStats,
    sink: Sink,
}

/// Where committed files go.
enum Sink {
    Folder(PathBuf),
    Store(store::StoreSink),
}

impl ArchiveWriter {
    /// A writer for timely worker `worker`; `metadata` goes into every file's footer.
    pub fn new(config: ArchiveConfig, worker: usize, metadata: Vec<(String, String)>) -> Result<Self, ArchiveError> {
        let level = ZstdLevel::try_new(config.zstd_level)
            .map_err(|error| ArchiveError::BadLevel { level: config.zstd_level, reason: error.to_string() })?;
        let sink = match &config.location {
            ArchiveLocation::Folder(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| ArchiveError::Io { path: dir.clone(), source })?;
                Sink::Folder(dir.clone())
            }
            ArchiveLocation::Store(location) => Sink::Store(store::StoreSink::open(location)?),
        };
        Ok(Self {
            properties_compression: Compression::ZSTD(level),
            config,
            worker,
            metadata,
            stats: ArchiveStats::default(),
            sink,
        })
    }

    pub fn stats(&self) -> ArchiveStats {
        self.stats
    }

    /// Writes one finished batch (the rows of whole epochs); returns the files committed.
    pub fn write_batch(&mut self, batch_id: u64, rows: Vec<WindowRecord>) -> Result<Vec<CommittedFile>, ArchiveError> {
        let mut partitions: BTreeMap<(String, String, usize), Vec<WindowRecord>> = BTreeMap::new();
        for row in rows {
            let key = (utc_date(row.window_start_us), row.machine_type.to_string(), row.logmel_mean_db.len());
            partitions.entry(key).or_default().push(row);
        }
        let band_counts: BTreeMap<(String, String), usize> =
            partitions.keys().fold(BTreeMap::new(), |mut counts, (date, kind, _)| {
                *counts.entry((date.clone(), kind.clone())).or_insert(0) += 1;
                counts
            });
        let mut committed = Vec::new();
        for ((date, machine_type, n_mels), mut rows) in partitions {
            rows.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            let partition = format!("{PARTITION_DATE}={date}/{PARTITION_MACHINE_TYPE}={machine_type}");
            if let Sink::Folder(dir) = &self.sink {
                let folder = dir.join(&partition);
                std::fs::create_dir_all(&folder).map_err(|source| ArchiveError::Io { path: folder.clone(), source })?;
            }
            // Only a partition holding several band counts needs them in the name.
            let bands_suffix = if band_counts[&(date.clone(), machine_type.clone())] > 1 {
                format!("-m{n_mels}")
            } else {
                String::new()
            };
            for (index, piece) in rows.chunks(self.config.max_rows_per_file.max(1)).enumerate() {
                let name = format!("part-{batch_id:012}-w{:03}-{index:03}{bands_suffix}.parquet", self.worker);
                let file = match &self.sink {
                    Sink::Folder(dir) => self.write_file(&dir.join(&partition).join(name), piece, n_mels)?,
                    Sink::Store(store) => self.write_object(store, &format!("{partition}/{name}"), piece, n_mels)?,
                };
                self.stats.files += 1;
                self.stats.rows += file.rows as u64;
                self.stats.bytes += file.bytes;
                committed.push(file);
            }
        }
        Ok(committed)
    }

    fn write_file(&self, path: &Path, rows: &[WindowRecord], n_mels: usize) -> Result<CommittedFile, ArchiveError> {
        let folder = path.parent().expect("archive files live in a partition folder");
        let file_name = path.file_name().expect("archive files have a name").to_string_lossy();
        let temporary = folder.join(format!(".{file_name}.tmp"));
        let result = self.write_temporary(&temporary, path, rows, n_mels);
        if result.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        let bytes = result?;
        std::fs::rename(&temporary, path).map_err(|source| ArchiveError::Io { path: path.to_owned(), source })?;
        File::open(folder)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| ArchiveError::Io { path: folder.to_owned(), source })?;
        Ok(CommittedFile { path: path.to_owned(), rows: rows.len(), bytes })
    }

    /// Encodes the rows into an anonymous temporary file, then uploads it whole.
    fn write_object(
        &self,
        store: &store::StoreSink,
        relative: &str,
        rows: &[WindowRecord],
        n_mels: usize,
    ) -> Result<CommittedFile, ArchiveError> {
        let url = store.url_of(relative);
        let local = tempfile::tempfile()
            .map_err(|e| ArchiveError::Store { url: url.clone(), reason: format!("no temporary file: {e}") })?;
        let (file, bytes) = self.encode(local, Path::new(&url), rows, n_mels)?;
        store.put_file(relative, file, bytes)?;
        Ok(CommittedFile { path: PathBuf::from(url), rows: rows.len(), bytes })
    }

    fn write_temporary(
        &self,
        temporary: &Path,
        path: &Path,
        rows: &[WindowRecord],
        n_mels: usize,
    ) -> Result<u64, ArchiveError> {
        let file = File::create(temporary).map_err(|source| ArchiveError::Io { path: temporary.to_owned(), source })?;
        let (file, bytes) = self.encode(file, path, rows, n_mels)?;
        file.sync_all().map_err(|source| ArchiveError::Io { path: temporary.to_owned(), source })?;
        Ok(bytes)
    }

    /// Writes the rows as one Parquet file into `file`; returns it and its length.
    fn encode(
        &self,
        file: File,
        path: &Path,
        rows: &[WindowRecord],
        n_mels: usize,
    ) -> Result<(File, u64), ArchiveError> {
        let parquet_error = |error: parquet::errors::ParquetError| ArchiveError::Parquet {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let batch = to_record_batch(rows, n_mels)
            .map_err(|error| ArchiveError::Parquet { path: path.to_owned(), reason: error.to_string() })?;
        let mut rates: Vec<u32> = rows.iter().map(|row| row.sample_rate_hz).collect();
        rates.sort_unstable();
        rates.dedup();
        let rates: Vec<String> = rates.iter().map(u32::to_string).collect();
        let mut metadata: Vec<KeyValue> =
            self.metadata.iter().map(|(key, value)| KeyValue::new(key.clone(), value.clone())).collect();
        metadata.push(KeyValue::new("auscult.sample_rates_hz".to_owned(), rates.join(",")));
        metadata.push(KeyValue::new("auscult.rows".to_owned(), rows.len().to_string()));
        let properties = WriterProperties::builder()
            .set_compression(self.properties_compression)
            .set_max_row_group_row_count(Some(self.config.row_group_rows.max(1)))
            .set_key_value_metadata(Some(metadata))
            .build();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).map_err(parquet_error)?;
        writer.write(&batch).map_err(parquet_error)?;
        let file = writer.into_inner().map_err(parquet_error)?;
        let bytes =
            file.metadata().map(|m| m.len()).map_err(|source| ArchiveError::Io { path: path.to_owned(), source })?;
        Ok((file, bytes))
    }
}

/// The rows as one Arrow batch of [`archive_schema`].
fn to_record_batch(rows: &[WindowRecord], n_mels: usize) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = Arc::new(archive_schema(n_mels));
    let band_list = |pick: fn(&WindowRecord) -> &Vec<f32>| -> ArrayRef {
        let item = arrow_schema::Field::new("item", arrow_schema::DataType::Float32, false);
        let mut builder = FixedSizeListBuilder::with_capacity(
            Float32Builder::with_capacity(rows.len() * n_mels),
            n_mels as i32,
            rows.len(),
        )
        .with_field(Arc::new(item));
        for row in rows {
            builder.values().append_slice(pick(row));
            builder.append(true);
        }
        Arc::new(builder.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.machine_id.as_str()))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|row| row.window_start_us))
                .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|row| row.window_end_us)).with_timezone("UTC"),
        ),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|row| row.frame_count))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|row| row.sample_rate_hz))),
        band_list(|row| &row.logmel_mean_db),
        band_list(|row| &row.logmel_std_db),
        Arc::new(Float64Array::from_iter(rows.iter().map(|row| row.score))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|row| row.threshold))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|row| row.alarm_threshold))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.alert_state.to_string()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.profile_state.to_string()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.source.as_str()))),
    ];
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, FixedSizeListArray};
    use auscult_schemas::{AlertState, MachineId, MachineType, ProfileState};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    const DAY_US: i64 = 86_400_000_000;

    fn row(machine: &str, kind: &str, start_us: i64, score: Option<f64>) -> WindowRecord {
        WindowRecord {
            machine_id: MachineId::new(machine).unwrap(),
            machine_type: MachineType::new(kind).unwrap(),
            window_start_us: start_us,
            window_end_us: start_us + 1_000_000,
            frame_count: 32,
            sample_rate_hz: 16_000,
            logmel_mean_db: (0..4).map(|band| band as f32 + start_us as f32 * 1e-9).collect(),
            logmel_std_db: vec![0.5; 4],
            score,
            threshold: score.map(|_| 2.0),
            alarm_threshold: score.map(|_| 3.0),
            alert_state: AlertState::Normal,
            profile_state: if score.is_some() { ProfileState::Scoring } else { ProfileState::Learning },
            source: format!("file:/{machine}.wav"),
        }
    }

    fn read(path: &Path) -> (RecordBatch, std::collections::HashMap<String, String>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
        (arrow_select_concat(&batches), metadata)
    }

    fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
        assert_eq!(batches.len(), 1, "one row group expected in tests");
        batches[0].clone()
    }

    #[test]
    fn partitions_by_date_and_type_with_sorted_rows_and_footer_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            ArchiveConfig { location: ArchiveLocation::Folder(dir.path().to_owned()), ..ArchiveConfig::default() };
        let mut writer = ArchiveWriter::new(config, 1, vec![("auscult.n_mels".to_owned(), "4".to_owned())]).unwrap();
        let rows = vec![
            row("pump-2", "pump", 5_000_000, Some(1.5)),
            row("fan-1", "fan", 2_000_000, None),
            row("fan-0", "fan", 3_000_000, Some(0.7)),
            row("fan-0", "fan", 1_000_000, None),
            row("fan-0", "fan", DAY_US + 1, Some(9.0)),
        ];
        let files = writer.write_batch(7, rows).unwrap();
        let names: Vec<String> =
            files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            vec![
                "date=1970-01-01/machine_type=fan/part-000000000007-w001-000.parquet",
                "date=1970-01-01/machine_type=pump/part-000000000007-w001-000.parquet",
                "date=1970-01-02/machine_type=fan/part-000000000007-w001-000.parquet",
            ]
        );
        let (batch, metadata) = read(&files[0].path);
        assert_eq!(batch.num_rows(), 3);
        assert!(batch.schema().field_with_name("machine_type").is_err());
        assert!(batch.schema().field_with_name("date").is_err());
        let ids: Vec<&str> =
            batch.column(0).as_any().downcast_ref::<StringArray>().unwrap().iter().map(|v| v.unwrap()).collect();
        assert_eq!(ids, vec!["fan-0", "fan-0", "fan-1"]);
        let starts = batch.column(1).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!(starts.values().to_vec(), vec![1_000_000, 3_000_000, 2_000_000]);
        assert_eq!(starts.timezone(), Some("UTC"));
        let means = batch.column(5).as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        assert_eq!(means.value_length(), 4);
        let scores = batch.column(7).as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(scores.is_null(0) && scores.value(1) == 0.7 && scores.is_null(2));
        assert_eq!(metadata["auscult.n_mels"], "4");
        assert_eq!(metadata["auscult.sample_rates_hz"], "16000");
        assert_eq!(metadata["auscult.rows"], "3");
        assert_eq!(writer.stats().rows, 5);
    }

    #[test]
    fn large_batches_are_split_and_recommits_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let config = ArchiveConfig {
            location: ArchiveLocation::Folder(dir.path().to_owned()),
            max_rows_per_file: 2,
            ..ArchiveConfig::default()
        };
        let mut writer = ArchiveWriter::new(config, 0, Vec::new()).unwrap();
        let rows: Vec<WindowRecord> = (0..5).map(|i| row("fan-0", "fan", i * 1_000_000, Some(1.0))).collect();
        let first = writer.write_batch(3, rows.clone()).unwrap();
        assert_eq!(first.iter().map(|f| f.rows).collect::<Vec<_>>(), vec![2, 2, 1]);
        let contents: Vec<Vec<u8>> = first.iter().map(|f| std::fs::read(&f.path).unwrap()).collect();
        let again = writer.write_batch(3, rows).unwrap();
        assert_eq!(
            again.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
            first.iter().map(|f| f.path.clone()).collect::<Vec<_>>()
        );
        for (file, content) in again.iter().zip(&contents) {
            assert_eq!(&std::fs::read(&file.path).unwrap(), content);
        }
        let folder = first[0].path.parent().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert!(writer.write_batch(4, Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn an_unwritable_archive_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let config =
            ArchiveConfig { location: ArchiveLocation::Folder(blocker.join("archive")), ..ArchiveConfig::default() };
        let error = ArchiveWriter::new(config, 0, Vec::new()).err().unwrap();
        assert!(error.to_string().contains("file/archive"), "{error}");
    }
}
