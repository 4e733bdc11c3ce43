//! The anomaly event: what auscult tells the plant.
//!
//! One JSON object per event, described by `schemas/anomaly-event.schema.json` (whose `$id`
//! names [`EVENT_SCHEMA_ID`]). An alert is a span of time: it is `opened` at a level, may be
//! `escalated` from warning to alarm, and is `closed`. The event id is a hash of what the event
//! is about, not of when it was emitted, so a replay of the same audio gives the same ids and a
//! downstream consumer can drop duplicates.

use crate::machine::{mix64, MachineId, MachineType};
use crate::time::TimestampUs;
use serde::{Deserialize, Serialize};

/// The schema every event names in its `schema` field.
pub const EVENT_SCHEMA_ID: &str = "auscult.anomaly-event/1";

/// The JSON Schema of an event, as shipped in `schemas/anomaly-event.schema.json`.
pub const EVENT_JSON_SCHEMA: &str = include_str!("../anomaly-event.schema.json");

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The alert began: k of the last n windows were over the level's threshold.
    Opened,
    /// An open warning became an alarm.
    Escalated,
    /// m windows in a row were below the warning threshold.
    Closed,
}

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// Over the threshold calibrated to the configured false-alarm rate.
    Warning,
    /// Over the stricter alarm threshold.
    Alarm,
}

/// One mel band that deviates, and how far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandDeviation {
    /// Index of the lowest mel band of the deviating group of bands, 0 is the lowest.
    pub band: u16,
    /// Lower edge of the band, Hz.
    pub low_hz: f64,
    /// Upper edge of the band, Hz.
    pub high_hz: f64,
    /// Signed distance from the normal profile in standard deviations (positive: louder).
    pub deviation_sd: f64,
}

/// One anomaly event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyEvent {
    /// Always [`EVENT_SCHEMA_ID`].
    pub schema: String,
    /// Deterministic: a hash of machine, kind, level and window start (16 hex digits).
    pub event_id: String,
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub kind: EventKind,
    pub level: AlertLevel,
    /// Start of the window that triggered the event, RFC 3339 UTC.
    pub window_start: String,
    /// End of that window, RFC 3339 UTC.
    pub window_end: String,
    /// The window's anomaly score (larger is more anomalous).
    pub score: f64,
    /// The threshold of `level` for this machine.
    pub threshold: f64,
    /// The most deviating bands, largest first.
    pub top_bands: Vec<BandDeviation>,
    /// Seconds of audio the machine's normal profile has learned from.
    pub learned_audio_s: f64,
}

/// The deterministic id of an event.
pub fn event_id(machine_id: &MachineId, kind: EventKind, level: AlertLevel, window_start_us: TimestampUs) -> String {
    let mut hash = crate::machine::route_hash(machine_id);
    for part in [kind as u64, level as u64 + 16, window_start_us as u64] {
        hash = mix64(hash ^ part.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_what_the_event_is_about() {
        let fan = MachineId::new("fan-1").unwrap();
        let pump = MachineId::new("pump-1").unwrap();
        let id = event_id(&fan, EventKind::Opened, AlertLevel::Warning, 1_000);
        assert_eq!(id, event_id(&fan, EventKind::Opened, AlertLevel::Warning, 1_000));
        assert_eq!(id.len(), 16);
        assert_ne!(id, event_id(&pump, EventKind::Opened, AlertLevel::Warning, 1_000));
        assert_ne!(id, event_id(&fan, EventKind::Closed, AlertLevel::Warning, 1_000));
        assert_ne!(id, event_id(&fan, EventKind::Opened, AlertLevel::Alarm, 1_000));
        assert_ne!(id, event_id(&fan, EventKind::Opened, AlertLevel::Warning, 1_001));
    }

    #[test]
    fn the_shipped_json_schema_names_this_version() {
        let schema: serde_json::Value = serde_json::from_str(EVENT_JSON_SCHEMA).unwrap();
        assert_eq!(schema["properties"]["schema"]["const"], EVENT_SCHEMA_ID);
    }
}
