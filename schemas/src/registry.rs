//! The machine registry entry: what a plant says about one machine, on the compacted topic
//! `auscult.machines` (key: machine id; value: this JSON; a tombstone deletes the entry).
//!
//! Every field is optional: an entry overrides the pipeline's configuration for its machine
//! only, and takes effect on the machine's next window without a restart.

use crate::machine::MachineType;
use serde::{Deserialize, Serialize};

/// One machine's registry entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<MachineType>,
    /// Where the machine stands; the fleet view groups by it ("" when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The channel to analyse (from 0) instead of the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<u16>,
    /// The target share of normal windows over the warning threshold, instead of the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub false_alarm_rate: Option<f64>,
    /// A fixed warning threshold (score units: about 1 is typical of normal windows) instead of
    /// the calibrated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_threshold: Option<f64>,
    /// A fixed alarm threshold instead of the calibrated one (never below the warning threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_threshold: Option<f64>,
    /// Seconds of audio to learn from, instead of the configured span (while still learning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_s: Option<f64>,
    /// A muted machine is still monitored and archived but raises no events.
    #[serde(default)]
    pub muted: bool,
    /// A retired machine is taken out of service: its state is dropped (and tombstoned on the
    /// state topic), and its chunks are skipped until the entry says otherwise; then it learns
    /// afresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

/// Why a registry record was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry entry is not valid JSON for a machine entry: {0}")]
    Json(String),
    #[error("registry entry: false_alarm_rate {0} is not in (0, 0.5)")]
    FalseAlarmRate(f64),
    #[error("registry entry: learning_s {0} is not a positive number of seconds")]
    LearningSpan(f64),
    #[error("registry entry: {field} {value} is not a positive score")]
    Threshold { field: &'static str, value: f64 },
}

impl MachineEntry {
    /// Parses and checks a record's value.
    pub fn parse(bytes: &[u8]) -> Result<MachineEntry, RegistryError> {
        let entry: MachineEntry =
            serde_json::from_slice(bytes).map_err(|error| RegistryError::Json(error.to_string()))?;
        if let Some(rate) = entry.false_alarm_rate {
            if !(rate > 0.0 && rate < 0.5) {
                return Err(RegistryError::FalseAlarmRate(rate));
            }
        }
        for (field, threshold) in
            [("warning_threshold", entry.warning_threshold), ("alarm_threshold", entry.alarm_threshold)]
        {
            if let Some(value) = threshold.filter(|value| !(value.is_finite() && *value > 0.0)) {
                return Err(RegistryError::Threshold { field, value });
            }
        }
        if let Some(span) = entry.learning_s {
            if !(span.is_finite() && span > 0.0) {
                return Err(RegistryError::LearningSpan(span));
            }
        }
        Ok(entry)
    }

    /// The entry as canonical JSON (the form the dataflow carries and compares).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("entries are plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_values_are_refused() {
        let entry = MachineEntry::parse(br#"{"site":"hall-a","muted":true,"false_alarm_rate":0.0001}"#).unwrap();
        assert_eq!(entry.site.as_deref(), Some("hall-a"));
        assert!(entry.muted);
        assert_eq!(MachineEntry::parse(entry.to_json().as_bytes()).unwrap(), entry);
        assert_eq!(MachineEntry::parse(b"{}").unwrap(), MachineEntry::default());
        assert!(matches!(MachineEntry::parse(br#"{"false_alarm_rate":0.7}"#), Err(RegistryError::FalseAlarmRate(_))));
        assert!(matches!(MachineEntry::parse(br#"{"mute":true}"#), Err(RegistryError::Json(_))));
        assert!(matches!(MachineEntry::parse(br#"{"learning_s":-1}"#), Err(RegistryError::LearningSpan(_))));
        let error = MachineEntry::parse(br#"{"warning_threshold":0}"#).unwrap_err();
        assert_eq!(error.to_string(), "registry entry: warning_threshold 0 is not a positive score");
        let retired = MachineEntry::parse(br#"{"retired":true}"#).unwrap();
        assert!(retired.retired && retired.to_json().contains("\"retired\":true"));
        assert!(!MachineEntry::default().to_json().contains("retired"), "the usual entry's JSON is unchanged");
        let entry = MachineEntry::parse(br#"{"warning_threshold":2.5,"alarm_threshold":9}"#).unwrap();
        assert_eq!((entry.warning_threshold, entry.alarm_threshold), (Some(2.5), Some(9.0)));
    }
}
