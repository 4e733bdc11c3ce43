//! The live fleet view: per site and machine type, how many machines are live, learning,
//! normal, in warning or in alarm, and how many windows arrived in the last minute.
//!
//! The monitors report facts as changes (a machine's status going in and out, each window
//! going in and, a minute of capture time later, out again); differential dataflow keeps the
//! counts incrementally, so each epoch costs what changed, not the size of the fleet. The
//! changed rows are published (to the compacted topic `auscult.fleet`, keyed `site/type`).

use auscult_schemas::MachineId;
use differential_dataflow::operators::count::CountTotal;
use differential_dataflow::operators::threshold::ThresholdTotal;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The group a row of the view describes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FleetKey {
    /// From the machine registry; "" when the machine has no site.
    pub site: String,
    pub machine_type: String,
}

impl FleetKey {
    /// The record key on the fleet topic.
    pub fn topic_key(&self) -> String {
        format!("{}/{}", self.site, self.machine_type)
    }
}

/// Where a machine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MachineStatus {
    Learning,
    Normal,
    Warning,
    Alarm,
}

/// One fact a monitor reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FleetFact {
    Status(MachineId, MachineStatus),
    Window(MachineId),
}

/// What a row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FleetMetric {
    Status(MachineStatus),
    /// Machines with a window in the last minute.
    Live,
    WindowsLastMinute,
}

/// A count of a group's metric going out (-1) or in (+1).
pub type FleetCountChange = (((FleetKey, FleetMetric), isize), isize);

/// The counts per group and metric, maintained incrementally.
pub fn fleet_counts<'scope>(
    facts: VecCollection<'scope, u64, (FleetKey, FleetFact), isize>,
    minute_epochs: u64,
) -> VecCollection<'scope, u64, ((FleetKey, FleetMetric), isize), isize> {
    let statuses = facts.clone().flat_map(|(key, fact)| match fact {
        FleetFact::Status(_, status) => Some((key, FleetMetric::Status(status))),
        FleetFact::Window(_) => None,
    });
    let windows = facts.flat_map(|(key, fact)| match fact {
        FleetFact::Window(machine) => Some((key, machine)),
        FleetFact::Status(..) => None,
    });
    // Each window counts for one minute of capture time.
    let recent = windows.clone().concat(windows.delay(move |epoch| epoch.saturating_add(minute_epochs)).negate());
    let live = recent.clone().distinct_total().map(|(key, _machine)| (key, FleetMetric::Live));
    let window_counts = recent.map(|(key, _machine)| (key, FleetMetric::WindowsLastMinute));
    statuses.concat(live).concat(window_counts).count_total()
}

/// One row of the view, as published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetRow {
    pub site: String,
    pub machine_type: String,
    pub machines_live: i64,
    pub machines_learning: i64,
    pub machines_normal: i64,
    pub alerts_warning: i64,
    pub alerts_alarm: i64,
    pub windows_last_minute: i64,
}

/// The current view, updated from the count changes of finished epochs.
#[derive(Debug, Default)]
pub struct FleetView {
    rows: BTreeMap<FleetKey, FleetRow>,
}

impl FleetView {
    /// Applies an epoch's count changes (a count going out is its row's value going down, a
    /// count coming in its value going up); returns the rows that changed.
    pub fn apply(&mut self, changes: Vec<FleetCountChange>) -> Vec<FleetRow> {
        let mut changed = std::collections::BTreeSet::new();
        for (((key, metric), count), diff) in changes {
            let row = self.rows.entry(key.clone()).or_insert_with(|| FleetRow {
                site: key.site.clone(),
                machine_type: key.machine_type.clone(),
                ..FleetRow::default()
            });
            let delta = (count * diff) as i64;
            match metric {
                FleetMetric::Status(MachineStatus::Learning) => row.machines_learning += delta,
                FleetMetric::Status(MachineStatus::Normal) => row.machines_normal += delta,
                FleetMetric::Status(MachineStatus::Warning) => row.alerts_warning += delta,
                FleetMetric::Status(MachineStatus::Alarm) => row.alerts_alarm += delta,
                FleetMetric::Live => row.machines_live += delta,
                FleetMetric::WindowsLastMinute => row.windows_last_minute += delta,
            }
            changed.insert(key);
        }
        changed.into_iter().filter_map(|key| self.rows.get(&key).cloned()).collect()
    }

    /// Every row, in key order.
    pub fn rows(&self) -> Vec<FleetRow> {
        self.rows.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_changes_become_row_values() {
        let key = FleetKey { site: "hall-a".to_owned(), machine_type: "pump".to_owned() };
        let mut view = FleetView::default();
        let live = (key.clone(), FleetMetric::Live);
        let changed =
            view.apply(vec![((live.clone(), 2), 1), (((key.clone(), FleetMetric::WindowsLastMinute), 30), 1)]);
        assert_eq!(changed.len(), 1);
        assert_eq!((changed[0].machines_live, changed[0].windows_last_minute), (2, 30));
        // The count of live machines goes from 2 to 3: out goes 2, in comes 3.
        let changed = view.apply(vec![((live.clone(), 2), -1), ((live, 3), 1)]);
        assert_eq!(changed[0].machines_live, 3);
        assert_eq!(changed[0].windows_last_minute, 30);
        assert_eq!(key.topic_key(), "hall-a/pump");
    }
}
