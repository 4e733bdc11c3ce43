//! Reading the archive back: what `auscult report` draws from.
//!
//! Analysts read the archive with their own tools; auscult reads it to make its report. The
//! reader walks the Hive folders, skips files still being written (their names start with a
//! dot), and reads only the columns asked for: the band vectors are most of a file's bytes, and
//! a fleet overview needs none of them.

use super::store::StoreSink;
use super::{ArchiveError, ArchiveLocation};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use auscult_schemas::archive::{
    COLUMN_ALARM_THRESHOLD, COLUMN_ALERT_STATE, COLUMN_LOGMEL_MEAN, COLUMN_MACHINE_ID, COLUMN_PROFILE_STATE,
    COLUMN_SCORE, COLUMN_THRESHOLD, COLUMN_WINDOW_END, COLUMN_WINDOW_START, PARTITION_MACHINE_TYPE,
};
use auscult_schemas::time::TimestampUs;
use auscult_schemas::{AlertState, MachineType, ProfileState};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why the archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveReadError {
    #[error("archive {path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("archive {path}: not a readable Parquet file: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("archive {path}: column {column} is missing or of the wrong type")]
    Column { path: PathBuf, column: &'static str },
    #[error("archive {path}: {column} holds {value:?}, which is not a known state")]
    State { path: PathBuf, column: &'static str, value: String },
    #[error("archive {path}: no folder machine_type=TYPE above the file")]
    NoMachineType { path: PathBuf },
    #[error("{reason}")]
    Store { reason: String },
}

/// One archived window, as much of it as was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedWindow {
    pub machine_id: String,
    pub machine_type: MachineType,
    pub window_start_us: TimestampUs,
    pub window_end_us: TimestampUs,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    /// `None` while learning, and in archives written before the column existed.
    pub alarm_threshold: Option<f64>,
    pub alert_state: AlertState,
    pub profile_state: ProfileState,
    /// The per-band mean log-mel, when bands were asked for.
    pub logmel_mean_db: Option<Vec<f32>>,
}

/// The feature settings in a file's footer (`auscult.*` keys), as strings.
pub type FooterSettings = BTreeMap<String, String>;

/// The committed Parquet files under `dir`, in path order. A missing folder is an error; an
/// empty one gives no files.
pub fn archive_files(dir: &Path) -> Result<Vec<PathBuf>, ArchiveReadError> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|source| ArchiveReadError::Io { path: folder.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| ArchiveReadError::Io { path: folder.clone(), source })?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(|source| ArchiveReadError::Io { path: path.clone(), source })?;
            if kind.is_dir() {
                folders.push(path);
            } else if name.ends_with(".parquet") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The machine type of a file, from its `machine_type=TYPE` folder.
fn machine_type_of(path: &Path) -> Result<MachineType, ArchiveReadError> {
    let prefix = format!("{PARTITION_MACHINE_TYPE}=");
    path.ancestors()
        .filter_map(|folder| folder.file_name()?.to_str()?.strip_prefix(&prefix))
        .find_map(|name| MachineType::new(name).ok())
        .ok_or_else(|| ArchiveReadError::NoMachineType { path: path.to_owned() })
}

/// Reads every window of the archive under `dir`, calling `visit` for each, file by file in
/// path order (within a file, by machine and time). The band vectors are read only if
/// `with_bands`; `keep_machine` skips other machines' rows before they are copied. Returns the
/// footer settings of the first file (empty when there is none).
pub fn read_windows(
    location: &ArchiveLocation,
    with_bands: bool,
    keep_machine: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(ArchivedWindow),
) -> Result<FooterSettings, ArchiveReadError> {
    let mut settings = FooterSettings::new();
    let mut keep_first = |index: usize, footer: FooterSettings| {
        if index == 0 {
            settings = footer;
        }
    };
    match location {
        ArchiveLocation::Folder(dir) => {
            for (index, path) in archive_files(dir)?.iter().enumerate() {
                let file = File::open(path).map_err(|source| ArchiveReadError::Io { path: path.to_owned(), source })?;
                keep_first(index, read_file(path, file, with_bands, keep_machine, visit)?);
            }
        }
        ArchiveLocation::Store(store) => {
            let store_error = |error: ArchiveError| ArchiveReadError::Store { reason: error.to_string() };
            let store = StoreSink::open(store).map_err(store_error)?;
            for (index, relative) in store.parquet_objects().map_err(store_error)?.iter().enumerate() {
                let contents = store.get(relative).map_err(store_error)?;
                let name = PathBuf::from(store.url_of(relative));
                keep_first(index, read_file(&name, contents, with_bands, keep_machine, visit)?);
            }
        }
    }
    Ok(settings)
}

fn read_file<R: ChunkReader + 'static>(
    path: &Path,
    contents: R,
    with_bands: bool,
    keep_machine: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(ArchivedWindow),
) -> Result<FooterSettings, ArchiveReadError> {
    let parquet_error = |reason: String| ArchiveReadError::Parquet { path: path.to_owned(), reason };
    let machine_type = machine_type_of(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(contents).map_err(|e| parquet_error(e.to_string()))?;
    let footer: FooterSettings = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with("auscult."))
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let mut wanted = vec![
        COLUMN_MACHINE_ID,
        COLUMN_WINDOW_START,
        COLUMN_WINDOW_END,
        COLUMN_SCORE,
        COLUMN_THRESHOLD,
        COLUMN_ALARM_THRESHOLD,
        COLUMN_ALERT_STATE,
        COLUMN_PROFILE_STATE,
    ];
    if with_bands {
        wanted.push(COLUMN_LOGMEL_MEAN);
    }
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, field)| wanted.contains(&field.name().as_str()))
        .map(|(index, _)| index)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder.with_projection(mask).build().map_err(|e| parquet_error(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_error(e.to_string()))?;
        visit_batch(path, &batch, &machine_type, with_bands, keep_machine, visit)?;
    }
    Ok(footer)
}

fn visit_batch(
    path: &Path,
    batch: &RecordBatch,
    machine_type: &MachineType,
    with_bands: bool,
    keep_machine: &dyn Fn(&str) -> bool,
    visit: &mut dyn FnMut(ArchivedWindow),
) -> Result<(), ArchiveReadError> {
    let missing = |column: &'static str| ArchiveReadError::Column { path: path.to_owned(), column };
    let column = |name: &'static str| batch.column_by_name(name).ok_or_else(|| missing(name));
    let strings = |name: &'static str| column(name)?.as_string_opt::<i32>().ok_or_else(|| missing(name));
    let times =
        |name: &'static str| column(name)?.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(|| missing(name));
    let floats = |name: &'static str| column(name)?.as_primitive_opt::<Float64Type>().ok_or_else(|| missing(name));
    let machine_ids = strings(COLUMN_MACHINE_ID)?;
    let starts = times(COLUMN_WINDOW_START)?;
    let ends = times(COLUMN_WINDOW_END)?;
    let scores = floats(COLUMN_SCORE)?;
    let thresholds = floats(COLUMN_THRESHOLD)?;
    // Archives written before the alarm threshold was archived have no such column.
    let alarm_thresholds =
        batch.column_by_name(COLUMN_ALARM_THRESHOLD).and_then(|c| c.as_primitive_opt::<Float64Type>());
    let alert_states = strings(COLUMN_ALERT_STATE)?;
    let profile_states = strings(COLUMN_PROFILE_STATE)?;
    let bands = if with_bands {
        Some(column(COLUMN_LOGMEL_MEAN)?.as_fixed_size_list_opt().ok_or_else(|| missing(COLUMN_LOGMEL_MEAN))?)
    } else {
        None
    };
    let optional =
        |array: &arrow_array::PrimitiveArray<Float64Type>, row: usize| (!array.is_null(row)).then(|| array.value(row));
    for row in 0..batch.num_rows() {
        let machine_id = machine_ids.value(row);
        if !keep_machine(machine_id) {
            continue;
        }
        let alert_state = match alert_states.value(row) {
            "normal" => AlertState::Normal,
            "warning" => AlertState::Warning,
            "alarm" => AlertState::Alarm,
            other => {
                return Err(ArchiveReadError::State {
                    path: path.to_owned(),
                    column: COLUMN_ALERT_STATE,
                    value: other.to_owned(),
                })
            }
        };
        let profile_state = match profile_states.value(row) {
            "learning" => ProfileState::Learning,
            "scoring" => ProfileState::Scoring,
            other => {
                return Err(ArchiveReadError::State {
                    path: path.to_owned(),
                    column: COLUMN_PROFILE_STATE,
                    value: other.to_owned(),
                })
            }
        };
        let logmel_mean_db = match bands {
            Some(list) => {
                let values = list.value(row);
                let values = values.as_primitive_opt::<Float32Type>().ok_or_else(|| missing(COLUMN_LOGMEL_MEAN))?;
                Some(values.values().to_vec())
            }
            None => None,
        };
        visit(ArchivedWindow {
            machine_id: machine_id.to_owned(),
            machine_type: machine_type.clone(),
            window_start_us: starts.value(row),
            window_end_us: ends.value(row),
            score: optional(scores, row),
            threshold: optional(thresholds, row),
            alarm_threshold: alarm_thresholds.and_then(|array| optional(array, row)),
            alert_state,
            profile_state,
            logmel_mean_db,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveConfig, ArchiveWriter};
    use auscult_schemas::{MachineId, WindowRecord};

    fn row(machine: &str, kind: &str, start_us: i64, score: Option<f64>, alert: AlertState) -> WindowRecord {
        WindowRecord {
            machine_id: MachineId::new(machine).unwrap(),
            machine_type: MachineType::new(kind).unwrap(),
            window_start_us: start_us,
            window_end_us: start_us + 1_000_000,
            frame_count: 32,
            sample_rate_hz: 16_000,
            logmel_mean_db: vec![start_us as f32 * 1e-6, -1.0, 2.5],
            logmel_std_db: vec![0.5; 3],
            score,
            threshold: score.map(|_| 2.0),
            alarm_threshold: score.map(|_| 4.0),
            alert_state: alert,
            profile_state: if score.is_some() { ProfileState::Scoring } else { ProfileState::Learning },
            source: "test".to_owned(),
        }
    }

    #[test]
    fn reads_back_what_the_writer_wrote_with_and_without_bands() {
        let dir = tempfile::tempdir().unwrap();
        let config = ArchiveConfig {
            location: crate::archive::ArchiveLocation::Folder(dir.path().to_owned()),
            ..ArchiveConfig::default()
        };
        let mut writer = ArchiveWriter::new(config, 0, vec![("auscult.n_mels".to_owned(), "3".to_owned())]).unwrap();
        writer
            .write_batch(
                1,
                vec![
                    row("fan-0", "fan", 1_000_000, None, AlertState::Normal),
                    row("fan-0", "fan", 2_000_000, Some(3.0), AlertState::Warning),
                    row("pump-1", "pump", 1_000_000, Some(0.5), AlertState::Normal),
                ],
            )
            .unwrap();
        // A file still being written is not part of the archive.
        std::fs::write(dir.path().join("date=1970-01-01/machine_type=fan/.part-x.parquet.tmp"), b"partial").unwrap();

        let mut windows = Vec::new();
        let settings =
            read_windows(&ArchiveLocation::Folder(dir.path().to_owned()), true, &|_| true, &mut |w| windows.push(w))
                .unwrap();
        assert_eq!(settings.get("auscult.n_mels").map(String::as_str), Some("3"));
        assert_eq!(windows.len(), 3);
        let warned = &windows[1];
        assert_eq!(warned.machine_id, "fan-0");
        assert_eq!(warned.machine_type.as_str(), "fan");
        assert_eq!((warned.score, warned.threshold, warned.alarm_threshold), (Some(3.0), Some(2.0), Some(4.0)));
        assert_eq!(warned.alert_state, AlertState::Warning);
        assert_eq!(warned.logmel_mean_db.as_deref(), Some(&[2.0, -1.0, 2.5][..]));
        assert_eq!(windows[0].profile_state, ProfileState::Learning);
        assert_eq!(windows[0].score, None);

        let mut pumps = Vec::new();
        read_windows(
            &ArchiveLocation::Folder(dir.path().to_owned()),
            false,
            &|machine| machine.starts_with("pump"),
            &mut |w| pumps.push(w),
        )
        .unwrap();
        assert_eq!(pumps.len(), 1);
        assert_eq!(pumps[0].logmel_mean_db, None);
        assert_eq!(pumps[0].machine_type.as_str(), "pump");
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("date=2026-01-01/machine_type=fan");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("part-1.parquet"), b"not parquet").unwrap();
        let error = read_windows(&ArchiveLocation::Folder(dir.path().to_owned()), false, &|_| true, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(error.contains("part-1.parquet") && error.contains("not a readable Parquet file"), "{error}");
        let missing = read_windows(&ArchiveLocation::Folder(dir.path().join("nowhere")), false, &|_| true, &mut |_| {})
            .unwrap_err();
        assert!(missing.to_string().contains("nowhere"), "{missing}");
    }
}
