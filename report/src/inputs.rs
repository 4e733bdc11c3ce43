//! The report's two optional inputs besides the archive: the anomaly events (JSON Lines, as
//! the file sink writes them or as a consumer of the topic saves them) and an `auscult eval
//! --json` document.

use auscult_schemas::time::{parse_rfc3339, TimestampUs};
use auscult_schemas::{AnomalyEvent, BandDeviation};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why an input could not be used at all (a bad line of events is skipped, not fatal).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an auscult eval JSON document: {reason}")]
    Eval { path: PathBuf, reason: String },
    #[error("the evaluation's results do not have the shape of an eval JSON document: {reason}")]
    EvalValue { reason: String },
}

/// An event with its window start as a timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    pub start_us: TimestampUs,
    pub event: AnomalyEvent,
}

/// The events by machine, in file order, and the lines that were not events.
#[derive(Debug, Default)]
pub struct Events {
    pub by_machine: BTreeMap<String, Vec<TimedEvent>>,
    /// `FILE:LINE: reason`, one per line skipped.
    pub skipped: Vec<String>,
}

impl Events {
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Io { path: path.to_owned(), source })?;
        let mut events = Events::default();
        for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            let parsed = serde_json::from_str::<AnomalyEvent>(line).map_err(|e| e.to_string()).and_then(|event| {
                parse_rfc3339(&event.window_start)
                    .map(|start_us| TimedEvent { start_us, event: event.clone() })
                    .ok_or_else(|| format!("window_start {:?} is not an RFC 3339 time", event.window_start))
            });
            match parsed {
                Ok(timed) => events.by_machine.entry(timed.event.machine_id.to_string()).or_default().push(timed),
                Err(reason) => {
                    events.skipped.push(format!("{}:{}: not an anomaly event: {reason}", path.display(), index + 1))
                }
            }
        }
        Ok(events)
    }

    /// The bands of the last opening or escalation of `machine` at or after `from_us` and before
    /// `until_us`: what the stream said when it raised the alert of that span.
    pub fn bands_within(&self, machine: &str, from_us: TimestampUs, until_us: TimestampUs) -> Option<&[BandDeviation]> {
        self.by_machine
            .get(machine)?
            .iter()
            .rev()
            .filter(|timed| timed.event.kind != auscult_schemas::EventKind::Closed)
            .find(|timed| timed.start_us >= from_us && timed.start_us < until_us)
            .map(|timed| timed.event.top_bands.as_slice())
    }

    pub fn count(&self) -> usize {
        self.by_machine.values().map(Vec::len).sum()
    }
}

/// One test clip's score in an eval document.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalClip {
    pub anomalous: bool,
    pub score: f64,
}

/// One row of an eval document: a machine, or one fold of a machine.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalRow {
    pub machine_type: String,
    pub machine_id: String,
    #[serde(default)]
    pub fold: Option<usize>,
    pub auc: Option<f64>,
    pub pauc: Option<f64>,
    pub recall: Option<f64>,
    pub false_alarm_rate: Option<f64>,
    pub clips: Vec<EvalClip>,
}

/// The parts of `auscult eval --json` the report draws.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalDocument {
    pub rows: Vec<EvalRow>,
    #[serde(default)]
    pub folds: Option<usize>,
}

impl EvalDocument {
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Io { path: path.to_owned(), source })?;
        serde_json::from_str(&text).map_err(|e| InputError::Eval { path: path.to_owned(), reason: e.to_string() })
    }

    pub fn from_value(value: serde_json::Value) -> Result<Self, InputError> {
        serde_json::from_value(value).map_err(|e| InputError::EvalValue { reason: e.to_string() })
    }

    /// The rows grouped by machine (type, id), folds in order.
    pub fn by_machine(&self) -> BTreeMap<(&str, &str), Vec<&EvalRow>> {
        let mut machines: BTreeMap<(&str, &str), Vec<&EvalRow>> = BTreeMap::new();
        for row in &self.rows {
            machines.entry((row.machine_type.as_str(), row.machine_id.as_str())).or_default().push(row);
        }
        machines
    }
}

/// The ROC curve of scores where larger means more anomalous: (false positive rate, true
/// positive rate) from (0, 0) to (1, 1), one step per distinct score (tied scores move both
/// rates at once, as the trapezoidal AUC counts them). Empty without both classes.
pub fn roc_curve(clips: &[EvalClip]) -> Vec<(f64, f64)> {
    let positives = clips.iter().filter(|c| c.anomalous).count() as f64;
    let negatives = clips.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Vec::new();
    }
    let mut sorted: Vec<&EvalClip> = clips.iter().collect();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut curve = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (index, clip) in sorted.iter().enumerate() {
        if clip.anomalous {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if sorted.get(index + 1).is_none_or(|next| next.score != clip.score) {
            curve.push((fp / negatives, tp / positives));
        }
    }
    curve
}

/// The area under a curve from [`roc_curve`] (trapezoids).
pub fn area(curve: &[(f64, f64)]) -> f64 {
    curve.windows(2).map(|pair| (pair[1].0 - pair[0].0) * (pair[1].1 + pair[0].1) / 2.0).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clips(scores: &[(f64, bool)]) -> Vec<EvalClip> {
        scores.iter().map(|&(score, anomalous)| EvalClip { anomalous, score }).collect()
    }

    #[test]
    fn the_roc_area_is_the_share_of_pairs_ranked_right() {
        // 3 anomalous x 4 normal = 12 pairs; ranked right: 4 + 4 + 1, plus one tie counted half.
        let scores =
            clips(&[(9.0, true), (5.0, true), (4.0, false), (3.0, false), (2.0, true), (2.0, false), (1.0, false)]);
        let curve = roc_curve(&scores);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
        assert!((area(&curve) - 9.5 / 12.0).abs() < 1e-12, "{}", area(&curve));
        assert!(roc_curve(&clips(&[(1.0, true)])).is_empty());
    }

    #[test]
    fn a_bad_event_line_is_skipped_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let good = r#"{"schema":"auscult.anomaly-event/1","event_id":"00000000000000aa","machine_id":"fan-0","machine_type":"fan","kind":"opened","level":"warning","window_start":"2026-01-01T00:05:00Z","window_end":"2026-01-01T00:05:02Z","score":4.0,"threshold":2.0,"top_bands":[{"band":3,"low_hz":100.0,"high_hz":200.0,"deviation_sd":5.5}],"learned_audio_s":300.0}"#;
        std::fs::write(&path, format!("{good}\n{{\"truncated\n\n")).unwrap();
        let events = Events::read(&path).unwrap();
        assert_eq!(events.count(), 1);
        assert_eq!(events.skipped.len(), 1);
        assert!(events.skipped[0].contains("events.jsonl:2: not an anomaly event"), "{:?}", events.skipped);
        let start = parse_rfc3339("2026-01-01T00:05:00Z").unwrap();
        let bands = events.bands_within("fan-0", start, start + 1).unwrap();
        assert_eq!(bands[0].band, 3);
        assert!(events.bands_within("fan-0", start + 1, start + 10).is_none());
    }
}
