//! The alert state machine: hysteresis so one loud window does not page anybody.
//!
//! An alert opens when `k` of the last `n` windows are over a level's threshold, escalates
//! from warning to alarm when `k` of the last `n` are over the alarm threshold, and closes
//! after `m` windows in a row below the warning threshold. The state is a few integers per
//! machine, so it is cheap to keep and to checkpoint.

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
    /// For each of the last `n` windows: over warning, over alarm.
    recent: VecDeque<(bool, bool)>,
    state: AlertState,
    windows_below: usize,
}

impl AlertTracker {
    pub fn new(config: AlertConfig) -> Self {
        Self { recent: VecDeque::with_capacity(config.open_n), config, state: AlertState::Normal, windows_below: 0 }
    }

    /// Takes the configuration of this run (after a restore from a checkpoint).
    pub fn configure(&mut self, config: AlertConfig) {
        while self.recent.len() > config.open_n {
            self.recent.pop_front();
        }
        self.config = config;
    }

    /// The state after the last window.
    pub fn state(&self) -> AlertState {
        self.state
    }

    /// Feeds one window's score; returns the transition it caused.
    pub fn observe(&mut self, score: f64, warning_threshold: f64, alarm_threshold: f64) -> Option<AlertTransition> {
        let over_warning = score > warning_threshold;
        let over_alarm = score > alarm_threshold;
        if self.recent.len() == self.config.open_n {
            self.recent.pop_front();
        }
        self.recent.push_back((over_warning, over_alarm));
        let warnings = self.recent.iter().filter(|(warning, _)| *warning).count();
        let alarms = self.recent.iter().filter(|(_, alarm)| *alarm).count();
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
        let mut tracker = AlertTracker::new(AlertConfig::default());
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
}
