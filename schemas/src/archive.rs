//! The archive row: one scored or learned window, as analysts read it back.
//!
//! The Parquet archive holds one [`WindowRecord`] per window, laid out as [`archive_schema`]
//! describes, in Hive partitions `date=YYYY-MM-DD/machine_type=TYPE/`. The partition keys are
//! kept out of the files (a column that is also a partition key breaks pyarrow datasets).
//! Column names are constants here so writers and tests spell them once.

use crate::machine::{MachineId, MachineType};
use crate::time::TimestampUs;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

pub const COLUMN_MACHINE_ID: &str = "machine_id";
pub const COLUMN_WINDOW_START: &str = "window_start";
pub const COLUMN_WINDOW_END: &str = "window_end";
pub const COLUMN_FRAME_COUNT: &str = "frame_count";
pub const COLUMN_SAMPLE_RATE: &str = "sample_rate_hz";
pub const COLUMN_LOGMEL_MEAN: &str = "logmel_mean_db";
pub const COLUMN_LOGMEL_STD: &str = "logmel_std_db";
pub const COLUMN_SCORE: &str = "score";
pub const COLUMN_THRESHOLD: &str = "threshold";
pub const COLUMN_ALARM_THRESHOLD: &str = "alarm_threshold";
pub const COLUMN_ALERT_STATE: &str = "alert_state";
pub const COLUMN_PROFILE_STATE: &str = "profile_state";
pub const COLUMN_SOURCE: &str = "source";
/// The partition key folders, outermost first.
pub const PARTITION_DATE: &str = "date";
pub const PARTITION_MACHINE_TYPE: &str = "machine_type";

/// Whether a machine's profile was still learning or already scoring when a window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileState {
    Learning,
    Scoring,
}

/// The machine's alert state after a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Normal,
    Warning,
    Alarm,
}

impl fmt::Display for ProfileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileState::Learning => "learning",
            ProfileState::Scoring => "scoring",
        })
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Normal => "normal",
            AlertState::Warning => "warning",
            AlertState::Alarm => "alarm",
        })
    }
}

/// One window of one machine: its pooled features and what the model made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub machine_id: MachineId,
    /// The partition key; not a column of the file.
    pub machine_type: MachineType,
    /// Capture time of the window's first sample.
    pub window_start_us: TimestampUs,
    /// Capture time just after its last sample.
    pub window_end_us: TimestampUs,
    pub frame_count: u32,
    pub sample_rate_hz: u32,
    /// Per-band mean of the window's log-mel frames, dB.
    pub logmel_mean_db: Vec<f32>,
    /// Per-band standard deviation of the window's log-mel frames, dB.
    pub logmel_std_db: Vec<f32>,
    /// Anomaly score; `None` while the profile is learning.
    pub score: Option<f64>,
    /// Warning threshold in force; `None` while learning.
    pub threshold: Option<f64>,
    /// Alarm threshold in force; `None` while learning.
    pub alarm_threshold: Option<f64>,
    pub alert_state: AlertState,
    pub profile_state: ProfileState,
    /// Where the window's audio came from (`file:PATH`, `kafka:TOPIC/PARTITION@OFFSET`, ...).
    pub source: String,
}

impl WindowRecord {
    /// The order archive rows and tests sort by: machine, then time.
    pub fn sort_key(&self) -> (&MachineId, TimestampUs) {
        (&self.machine_id, self.window_start_us)
    }
}

/// The Arrow schema of an archive file whose windows have `n_mels` bands.
pub fn archive_schema(n_mels: usize) -> Schema {
    let n_mels = i32::try_from(n_mels).expect("mel band counts are small");
    let utc_micros = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
    let band_vector = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), n_mels);
    Schema::new(vec![
        Field::new(COLUMN_MACHINE_ID, DataType::Utf8, false),
        Field::new(COLUMN_WINDOW_START, utc_micros.clone(), false),
        Field::new(COLUMN_WINDOW_END, utc_micros, false),
        Field::new(COLUMN_FRAME_COUNT, DataType::UInt32, false),
        Field::new(COLUMN_SAMPLE_RATE, DataType::UInt32, false),
        Field::new(COLUMN_LOGMEL_MEAN, band_vector.clone(), false),
        Field::new(COLUMN_LOGMEL_STD, band_vector, false),
        Field::new(COLUMN_SCORE, DataType::Float64, true),
        Field::new(COLUMN_THRESHOLD, DataType::Float64, true),
        Field::new(COLUMN_ALARM_THRESHOLD, DataType::Float64, true),
        Field::new(COLUMN_ALERT_STATE, DataType::Utf8, false),
        Field::new(COLUMN_PROFILE_STATE, DataType::Utf8, false),
        Field::new(COLUMN_SOURCE, DataType::Utf8, false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_not_columns() {
        let schema = archive_schema(128);
        assert!(schema.field_with_name(PARTITION_MACHINE_TYPE).is_err());
        assert!(schema.field_with_name(PARTITION_DATE).is_err());
        match schema.field_with_name(COLUMN_LOGMEL_MEAN).unwrap().data_type() {
            DataType::FixedSizeList(_, size) => assert_eq!(*size, 128),
            other => panic!("mean vector is {other:?}"),
        }
    }
}
