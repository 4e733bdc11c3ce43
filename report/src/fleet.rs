//! The fleet as the report sees it: per machine, its score series, its alert spans and its
//! counts, folded from the archive's windows one at a time (no band vectors needed).
//!
//! An alert span is a run of windows whose `alert_state` is not `normal`: the state the stream's
//! alert logic was in after each window, so the spans are the alerts the stream opened and
//! closed, with no second opinion computed here.

use auscult_connectors::archive::reader::ArchivedWindow;
use auscult_schemas::time::TimestampUs;
use auscult_schemas::{AlertState, MachineType, ProfileState};
use std::collections::BTreeMap;

/// One alert: from the first window that was not normal to the last one.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpan {
    pub start_us: TimestampUs,
    pub end_us: TimestampUs,
    /// The highest level reached.
    pub level: AlertState,
    /// Whether the machine's last archived window was still in the alert.
    pub open: bool,
}

/// One point of a score timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScorePoint {
    pub time_us: TimestampUs,
    pub score: f64,
    pub warning: Option<f64>,
    pub alarm: Option<f64>,
}

/// What the archive says of one machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSeries {
    pub machine_id: String,
    pub machine_type: MachineType,
    pub windows_learned: u64,
    pub windows_scored: u64,
    /// Seconds of capture time covered by its windows (overlaps counted once, gaps not at all).
    pub audio_s: f64,
    pub first_us: TimestampUs,
    pub last_us: TimestampUs,
    pub max_score: Option<f64>,
    pub last_state: AlertState,
    pub last_profile: ProfileState,
    pub spans: Vec<AlertSpan>,
    /// Every scored window, in time order.
    pub points: Vec<ScorePoint>,
    covered_until_us: TimestampUs,
}

impl MachineSeries {
    fn new(window: &ArchivedWindow) -> Self {
        Self {
            machine_id: window.machine_id.clone(),
            machine_type: window.machine_type.clone(),
            windows_learned: 0,
            windows_scored: 0,
            audio_s: 0.0,
            first_us: window.window_start_us,
            last_us: window.window_end_us,
            max_score: None,
            last_state: AlertState::Normal,
            last_profile: ProfileState::Learning,
            spans: Vec::new(),
            points: Vec::new(),
            covered_until_us: window.window_start_us,
        }
    }

    /// Adds a window that is not earlier than the last one added.
    fn add(&mut self, window: &ArchivedWindow) {
        match window.profile_state {
            ProfileState::Learning => self.windows_learned += 1,
            ProfileState::Scoring => self.windows_scored += 1,
        }
        let covered_from = window.window_start_us.max(self.covered_until_us);
        if window.window_end_us > covered_from {
            self.audio_s += (window.window_end_us - covered_from) as f64 / 1e6;
            self.covered_until_us = window.window_end_us;
        }
        self.last_us = self.last_us.max(window.window_end_us);
        if let Some(score) = window.score {
            self.max_score = Some(self.max_score.map_or(score, |max| max.max(score)));
            self.points.push(ScorePoint {
                time_us: window.window_start_us,
                score,
                warning: window.threshold,
                alarm: window.alarm_threshold,
            });
        }
        let alerting = window.alert_state != AlertState::Normal;
        match self.spans.last_mut() {
            Some(span) if span.open && alerting => {
                span.end_us = window.window_end_us;
                span.level = span.level.max(window.alert_state);
            }
            Some(span) if span.open => span.open = false,
            _ if alerting => self.spans.push(AlertSpan {
                start_us: window.window_start_us,
                end_us: window.window_end_us,
                level: window.alert_state,
                open: true,
            }),
            _ => {}
        }
        self.last_state = window.alert_state;
        self.last_profile = window.profile_state;
    }

    /// The machine's status after its last window: learning, normal, warning or alarm.
    pub fn status(&self) -> &'static str {
        match (self.last_profile, self.last_state) {
            (ProfileState::Learning, _) => "learning",
            (_, AlertState::Normal) => "normal",
            (_, AlertState::Warning) => "warning",
            (_, AlertState::Alarm) => "alarm",
        }
    }
}

/// Every machine in the archive, by id.
#[derive(Debug, Default)]
pub struct Fleet {
    pub machines: BTreeMap<String, MachineSeries>,
    /// Windows that arrived out of time order within a machine and were set aside.
    pub out_of_order: u64,
}

impl Fleet {
    /// Folds in one window. The archive holds each machine's rows in time order within a file,
    /// and files in epoch order; a window earlier than the machine's last one is counted and
    /// left out rather than bending the timeline back.
    pub fn add(&mut self, window: &ArchivedWindow) {
        let series = self.machines.entry(window.machine_id.clone()).or_insert_with(|| MachineSeries::new(window));
        if series.points.last().is_some_and(|last| window.window_start_us < last.time_us) {
            self.out_of_order += 1;
            return;
        }
        series.add(window);
    }

    /// The machines that alerted, the most severe first (alarm before warning, then by highest
    /// score), at most `limit`.
    pub fn alerted(&self, limit: usize) -> Vec<&MachineSeries> {
        let mut alerted: Vec<&MachineSeries> = self.machines.values().filter(|m| !m.spans.is_empty()).collect();
        alerted.sort_by(|a, b| {
            let level = |m: &MachineSeries| m.spans.iter().map(|s| s.level).max();
            level(b)
                .cmp(&level(a))
                .then(b.max_score.unwrap_or(0.0).total_cmp(&a.max_score.unwrap_or(0.0)))
                .then(a.machine_id.cmp(&b.machine_id))
        });
        alerted.truncate(limit);
        alerted
    }
}

/// At most `limit` points of a timeline, keeping each bucket's highest score (a peak that
/// opened an alert must not vanish from the picture) and the thresholds in force there.
pub fn thin_out(points: &[ScorePoint], limit: usize) -> Vec<ScorePoint> {
    if points.len() <= limit || limit == 0 {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(limit);
    points
        .chunks(bucket)
        .map(|chunk| *chunk.iter().max_by(|a, b| a.score.total_cmp(&b.score)).expect("chunks are not empty"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_s: i64, score: Option<f64>, state: AlertState) -> ArchivedWindow {
        ArchivedWindow {
            machine_id: "fan-0".to_owned(),
            machine_type: MachineType::new("fan").unwrap(),
            window_start_us: start_s * 1_000_000,
            window_end_us: start_s * 1_000_000 + 2_000_000,
            score,
            threshold: score.map(|_| 2.0),
            alarm_threshold: score.map(|_| 5.0),
            alert_state: state,
            profile_state: if score.is_some() { ProfileState::Scoring } else { ProfileState::Learning },
            logmel_mean_db: None,
        }
    }

    #[test]
    fn spans_follow_the_alert_state_and_keep_the_highest_level() {
        use AlertState::*;
        let mut fleet = Fleet::default();
        let states =
            [(None, Normal), (Some(1.0), Normal), (Some(3.0), Warning), (Some(6.0), Alarm), (Some(1.0), Normal)];
        for (second, (score, state)) in states.into_iter().enumerate() {
            fleet.add(&window(second as i64, score, state));
        }
        fleet.add(&window(5, Some(4.0), Warning));
        let fan = &fleet.machines["fan-0"];
        assert_eq!(fan.spans.len(), 2);
        assert_eq!(fan.spans[0], AlertSpan { start_us: 2_000_000, end_us: 5_000_000, level: Alarm, open: false });
        assert!(fan.spans[1].open, "the last window is still in the second alert");
        assert_eq!((fan.windows_learned, fan.windows_scored), (1, 5));
        assert_eq!(fan.max_score, Some(6.0));
        assert_eq!(fan.status(), "warning");
        // Windows of 2 s starting every second cover 7 s, not 12.
        assert!((fan.audio_s - 7.0).abs() < 1e-9, "{}", fan.audio_s);
    }

    #[test]
    fn a_window_earlier_than_the_last_is_counted_and_left_out() {
        let mut fleet = Fleet::default();
        fleet.add(&window(10, Some(1.0), AlertState::Normal));
        fleet.add(&window(3, Some(9.0), AlertState::Normal));
        assert_eq!(fleet.out_of_order, 1);
        assert_eq!(fleet.machines["fan-0"].points.len(), 1);
    }

    #[test]
    fn thinning_keeps_every_bucket_peak() {
        let points: Vec<ScorePoint> = (0..1000)
            .map(|i| ScorePoint {
                time_us: i,
                score: if i == 537 { 99.0 } else { (i % 7) as f64 },
                warning: None,
                alarm: None,
            })
            .collect();
        let thin = thin_out(&points, 100);
        assert_eq!(thin.len(), 100);
        assert!(thin.iter().any(|p| p.score == 99.0 && p.time_us == 537));
        assert!(thin.windows(2).all(|w| w[0].time_us < w[1].time_us));
        assert_eq!(thin_out(&points[..50], 100).len(), 50);
    }

    #[test]
    fn alerted_machines_come_alarm_first_then_by_score() {
        let mut fleet = Fleet::default();
        let mut add = |id: &str, score: f64, state: AlertState| {
            let mut w = window(1, Some(score), state);
            w.machine_id = id.to_owned();
            fleet.add(&w);
        };
        add("a", 50.0, AlertState::Warning);
        add("b", 8.0, AlertState::Alarm);
        add("c", 1.0, AlertState::Normal);
        add("d", 70.0, AlertState::Warning);
        let order: Vec<&str> = fleet.alerted(10).iter().map(|m| m.machine_id.as_str()).collect();
        assert_eq!(order, ["b", "d", "a"]);
        assert_eq!(fleet.alerted(1).len(), 1);
    }
}
