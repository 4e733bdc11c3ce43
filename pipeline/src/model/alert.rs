//! The alert state machine: hysteresis so one loud window does not page anybody.
//!
//! An alert opens when `k` of the last `n` spans are over a level's threshold, escalates
//! from warning to alarm when `k` of the last `n` are over the alarm threshold, and closes
//! after `m` windows in a row below the warning threshold. The `n` spans counted are the ones
//! that do not overlap: every `stride`-th window back from the newest, where `stride` is the
//! windows per span. Overlapping spans share their audio, so one loud moment raises several
//! in a row; counting them as separate evidence would let a single click open an alert. The
//! state is a few flags per machine, so it is cheap to keep and to checkpoint.

use crate::config::AlertConfig;
use auscult_schemas::{AlertLevel, AlertState, EventKind};
use std::collections::VecDeque;

/// What one window did to the alert, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertTransition {
    pub kind: EventKind,
    pub level: AlertLevel,
}

/// The alert state of one machine.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertTracker {
    /// From the run's configuration (not checkpointed: a restart may change it).
    #[serde(skip)]
    config: AlertConfig,
    /// Windows between the spans counted (the windows per span).
    #[serde(skip)]
    stride: usize,
    /// For each of the last `(n - 1) * stride + 1` windows: over warning, over alarm.
    recent: VecDeque<(bool, bool)>,
    state: AlertState,
    windows_below: usize,
}

impl AlertTracker {
    /// A tracker counting every `stride`-th window (1: every window).
    pub fn new(config: AlertConfig, stride: usize) -> Self {
        let stride = stride.max(1);
        let mut tracker = Self { recent: VecDeque::new(), config, stride, state: AlertState::Normal, windows_below: 0 };
        tracker.recent.reserve(tracker.history());
        tracker
    }

    /// Windows of history the open rule looks at.
    fn history(&self) -> usize {
        (self.config.open_n.max(1) - 1) * self.stride + 1
    }

    /// Takes the configuration of this run (after a restore from a checkpoint).
    pub fn configure(&mut self, config: AlertConfig, stride: usize) {
        self.config = config;
        self.stride = stride.max(1);
        while self.recent.len() > self.history() {
            self.recent.pop_front();
        }
    }

    /// The state after the last window.
    pub fn state(&self) -> AlertState {
        self.state
    }

    /// Feeds one window's score; returns the transition it caused.
    pub fn observe(&mut self, score: f64, warning_threshold: f64, alarm_threshold: f64) -> Option<AlertTransition> {
        let over_warning = score > warning_threshold;
        let over_alarm = score > alarm_threshold;
        if self.recent.len() == self.history() {
            self.recent.pop_front();
        }
        self.recent.push_back((over_warning, over_alarm));
        let counted = || self.recent.iter().rev().step_by(self.stride);
        let warnings = counted().filter(|(warning, _)| *warning).count();
        let alarms = counted().filter(|(_, alarm)| *alarm).count();
        let k = self.config.open_k;
        match self.state {
            AlertState::Normal if warnings >= k => {
                let level = if alarms >= k { AlertLevel::Alarm } else { AlertLevel::Warning };
                self.state = state_of(level);
                self.windows_below = 0;
                Some(AlertTransition { kind: EventKind::Opened, level })
            }
            AlertState::Normal => None,
            open => {
                self.windows_below = if over_warning { 0 } else { self.windows_below + 1 };
                if self.windows_below >= self.config.close_m {
                    let level = if open == AlertState::Alarm { AlertLevel::Alarm } else { AlertLevel::Warning };
                    self.state = AlertState::Normal;
                    self.recent.clear();
                    self.windows_below = 0;
                    Some(AlertTransition { kind: EventKind::Closed, level })
                } else if open == AlertState::Warning && alarms >= k {
                    self.state = AlertState::Alarm;
                    Some(AlertTransition { kind: EventKind::Escalated, level: AlertLevel::Alarm })
                } else {
                    None
                }
            }
        }
    }
}

fn state_of(level: AlertLevel) -> AlertState {
    match level {
        AlertLevel::Warning => AlertState::Warning,
        AlertLevel::Alarm => AlertState::Alarm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scores: &[f64]) -> Vec<(usize, EventKind, AlertLevel)> {
        run_with_stride(scores, 1)
    }

    fn run_with_stride(scores: &[f64], stride: usize) -> Vec<(usize, EventKind, AlertLevel)> {
        let mut tracker = AlertTracker::new(AlertConfig::default(), stride);
        scores
            .iter()
            .enumerate()
            .filter_map(|(index, &score)| tracker.observe(score, 1.0, 5.0).map(|t| (index, t.kind, t.level)))
            .collect()
    }

    #[test]
    fn a_single_loud_window_does_not_open_an_alert() {
        assert!(run(&[0.5, 9.0, 0.5, 0.5, 9.0, 0.5, 0.5]).is_empty());
    }

    #[test]
    fn two_of_three_open_and_three_quiet_close() {
        let events = run(&[0.5, 2.0, 0.5, 2.0, 2.0, 0.5, 0.5, 0.5, 0.5]);
        assert_eq!(
            events,
            vec![(3, EventKind::Opened, AlertLevel::Warning), (7, EventKind::Closed, AlertLevel::Warning)]
        );
    }

    #[test]
    fn a_warning_escalates_to_alarm_and_closes_as_alarm() {
        let events = run(&[2.0, 2.0, 9.0, 9.0, 0.1, 0.1, 0.1]);
        assert_eq!(
            events,
            vec![
                (1, EventKind::Opened, AlertLevel::Warning),
                (3, EventKind::Escalated, AlertLevel::Alarm),
                (6, EventKind::Closed, AlertLevel::Alarm)
            ]
        );
    }

    #[test]
    fn a_window_over_the_threshold_restarts_the_quiet_count() {
        let events = run(&[2.0, 2.0, 0.5, 0.5, 2.0, 0.5, 0.5, 0.5]);
        assert_eq!(
            events,
            vec![(1, EventKind::Opened, AlertLevel::Warning), (7, EventKind::Closed, AlertLevel::Warning)]
        );
    }

    #[test]
    fn overlapping_spans_count_once_and_spans_a_stride_apart_open() {
        // A loud moment raises four overlapping spans in a row: one piece of evidence.
        assert!(run_with_stride(&[0.5, 2.0, 2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 0.5, 0.5], 4).is_empty());
        // Over the threshold at windows 1 and 5, a span apart: two pieces of evidence.
        let scores = [0.5, 2.0, 0.5, 0.5, 0.5, 2.0, 0.5, 0.5, 0.5];
        assert_eq!(
            run_with_stride(&scores, 4),
            vec![(5, EventKind::Opened, AlertLevel::Warning), (8, EventKind::Closed, AlertLevel::Warning)]
        );
    }
}
