//! Checkpoints in a compacted Kafka topic (`run --state kafka`): the state of each machine as
//! records keyed by its id, so that a cluster needs no shared disk, and a process that starts
//! on another host, or a cluster rescaled to another number of processes, finds every
//! machine's state where the audio is.
//!
//! A machine's state at a boundary is one record, key the machine id, value a versioned
//! [`StateRecord`] holding the same bincode [`MonitorSnapshot`] as a checkpoint file. A state
//! longer than `state.max_record_bytes` is split: its parts go first, each under a key of its
//! own (`<machine>/part/<covered µs>/<index>`), then the record under the machine id that names
//! them; the parts of the version before are tombstoned once the new record is acknowledged,
//! so the record in force always finds its parts. All records of one machine go to one
//! partition, in order.
//!
//! Unlike a folder checkpoint, a record is written only after every sink has made the
//! boundary's outputs durable ("StateChangelog" waits for them), and offsets are committed
//! only after every worker's records are acknowledged. So whatever record is newest for a
//! machine, its outputs are durable and the committed offsets are not past what it has seen:
//! a restart takes each machine's newest record, and the audio replayed from the committed
//! offsets that the state has already heard is dropped by its sequence numbers. One key per
//! machine is then enough, and compaction can drop every older version.

use super::{settings_fingerprint, CheckpointError, Restored};
use crate::config::Config;
use crate::model::{MachineMonitor, MonitorSnapshot};
use auscult_connectors::kafka::{ChangelogContents, ChangelogRecord};
use auscult_schemas::{route_hash, MachineId};
use bincode::Options;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Version of the state record layout.
pub const FORMAT: u32 = 2;
/// Between a machine id and the rest of a part's key (a machine id has no `/`).
const PART_INFIX: &str = "/part/";

/// The value of a state record.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StateRecord {
    format: u32,
    /// The feature and model settings the state was learned with.
    settings: String,
    /// The capture time the state covers up to (exclusive), µs.
    covered_until_us: i64,
    body: Body,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum Body {
    /// The bincode snapshot, whole.
    Whole(Vec<u8>),
    /// The snapshot is in `parts` part records of this version, concatenated in order.
    Parts { parts: u32, bytes: u64 },
    /// One piece of a snapshot split in parts.
    Part(Vec<u8>),
}

/// The records that hold one machine's state as of a boundary, in the order to send them (a
/// value `None` is a tombstone: the machine was retired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    pub machine_id: MachineId,
    pub records: Vec<(i32, String, Option<Vec<u8>>)>,
}

impl MachineState {
    /// The keys of its part records (none when the state is one record).
    pub fn part_keys(&self) -> impl Iterator<Item = &str> {
        self.records.iter().map(|(_, key, _)| key.as_str()).filter(|key| key.contains(PART_INFIX))
    }

    /// Its records as the changelog writer takes them.
    pub fn into_records(self) -> impl Iterator<Item = ChangelogRecord> {
        self.records.into_iter().map(|(partition, key, value)| ChangelogRecord { partition, key, value })
    }
}

/// How this run encodes state records.
#[derive(Debug, Clone)]
pub struct StateEncoding {
    settings: String,
    partitions: u32,
    max_record_bytes: usize,
}

impl StateEncoding {
    /// For a topic of `partitions` partitions and records of at most `max_record_bytes`.
    pub fn new(config: &Config, partitions: u32, max_record_bytes: usize) -> Self {
        Self { settings: settings_fingerprint(config), partitions: partitions.max(1), max_record_bytes }
    }

    /// The longest record this encoding makes, bytes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The partition of a machine's records.
    pub fn partition_of(&self, machine_id: &MachineId) -> i32 {
        (route_hash(machine_id) % u64::from(self.partitions)) as i32
    }

    /// The records of `monitor`'s state covering capture times before `covered_until_us`.
    pub fn encode(&self, monitor: &MachineMonitor, covered_until_us: i64) -> MachineState {
        let machine_id = monitor.machine_id().clone();
        let snapshot = bincode::DefaultOptions::new().serialize(&monitor.snapshot()).expect("plain data");
        let partition = self.partition_of(&machine_id);
        let record = |body| {
            let record = StateRecord { format: FORMAT, settings: self.settings.clone(), covered_until_us, body };
            bincode::DefaultOptions::new().serialize(&record).expect("plain data")
        };
        // The settings and framing take a few hundred bytes of the record.
        let piece = self.max_record_bytes.saturating_sub(self.settings.len() + 256).max(1024);
        let mut records = Vec::new();
        if snapshot.len() <= piece {
            records.push((partition, machine_id.to_string(), Some(record(Body::Whole(snapshot)))));
        } else {
            let mut parts = 0u32;
            for (index, bytes) in snapshot.chunks(piece).enumerate() {
                let key = format!("{machine_id}{PART_INFIX}{covered_until_us}/{index}");
                records.push((partition, key, Some(record(Body::Part(bytes.to_vec())))));
                parts += 1;
            }
            let manifest = Body::Parts { parts, bytes: snapshot.len() as u64 };
            records.push((partition, machine_id.to_string(), Some(record(manifest))));
        }
        MachineState { machine_id, records }
    }

    /// The tombstone of a retired machine's record (its parts are tombstoned after it).
    pub fn retire(&self, machine_id: &MachineId) -> MachineState {
        let record = (self.partition_of(machine_id), machine_id.to_string(), None);
        MachineState { machine_id: machine_id.clone(), records: vec![record] }
    }

    /// The tombstones of part records no longer named by the state in force.
    pub fn tombstones<'a>(
        &self,
        machine_id: &MachineId,
        keys: impl Iterator<Item = &'a str> + 'a,
    ) -> impl Iterator<Item = ChangelogRecord> + 'a {
        let partition = self.partition_of(machine_id);
        keys.map(move |key| ChangelogRecord { partition, key: key.to_owned(), value: None })
    }
}

/// The machine a changelog key belongs to.
pub fn machine_of_key(key: &str) -> Option<MachineId> {
    MachineId::new(key.split_once(PART_INFIX).map_or(key, |(machine, _)| machine)).ok()
}

/// What a restart from the changelog found: the machines, and the part keys each one's record
/// in force does not name (left by a crash between a new version and the tombstones of the
/// old one), which the owner tombstones at its next write.
#[derive(Default)]
pub struct RestoredChangelog {
    pub restored: Restored,
    pub stale_parts: Vec<(MachineId, Vec<String>)>,
    /// The part keys each restored machine's record names.
    pub parts_in_force: Vec<(MachineId, Vec<String>)>,
}

/// Rebuilds the machines of `contents` (the newest record of each key the reader kept) into
/// monitors configured by `config`.
pub fn restore(
    contents: ChangelogContents,
    topic: &str,
    config: &Config,
) -> Result<RestoredChangelog, CheckpointError> {
    let expected = settings_fingerprint(config);
    let mut values = contents.values;
    let place = |key: &str, (partition, offset): (i32, i64)| {
        PathBuf::from(format!("kafka:{topic}/{partition}@{offset} ({key})"))
    };
    let decode = |key: &str, at: (i32, i64), value: &[u8]| -> Result<StateRecord, CheckpointError> {
        let record: StateRecord = bincode::DefaultOptions::new()
            .with_limit(value.len() as u64 + 1)
            .deserialize(value)
            .map_err(|cause| CheckpointError::Decode { path: place(key, at), cause })?;
        if record.format != FORMAT {
            return Err(CheckpointError::Format { path: place(key, at), found: record.format });
        }
        if record.settings != expected {
            return Err(CheckpointError::Settings {
                path: place(key, at),
                found: record.settings,
                expected: expected.clone(),
            });
        }
        Ok(record)
    };
    let mut machines: Vec<String> = values.keys().filter(|key| !key.contains(PART_INFIX)).cloned().collect();
    machines.sort();
    let mut restored = RestoredChangelog::default();
    for key in machines {
        let Some((partition, offset, value)) = values.remove(&key) else { continue };
        let at = (partition, offset);
        let record = decode(&key, at, &value)?;
        let (snapshot_bytes, part_keys) = match record.body {
            Body::Whole(bytes) => (bytes, Vec::new()),
            Body::Parts { parts, bytes } => {
                let mut joined = Vec::with_capacity(usize::try_from(bytes).unwrap_or(0).min(64 << 20));
                let mut keys = Vec::new();
                for index in 0..parts {
                    let part_key = format!("{key}{PART_INFIX}{}/{index}", record.covered_until_us);
                    let Some((part_partition, part_offset, part)) = values.remove(&part_key) else {
                        let reason = format!("part {index} of {parts} ({part_key}) is missing");
                        return Err(CheckpointError::Record { path: place(&key, at), reason });
                    };
                    match decode(&part_key, (part_partition, part_offset), &part)?.body {
                        Body::Part(piece) => joined.extend_from_slice(&piece),
                        _ => {
                            let reason = format!("{part_key} is not a part record");
                            return Err(CheckpointError::Record { path: place(&key, at), reason });
                        }
                    }
                    keys.push(part_key);
                }
                (joined, keys)
            }
            Body::Part(_) => {
                let reason = "a part record under a machine's own key".to_owned();
                return Err(CheckpointError::Record { path: place(&key, at), reason });
            }
        };
        let snapshot: MonitorSnapshot<'static> = bincode::DefaultOptions::new()
            .with_limit(snapshot_bytes.len() as u64 + 1)
            .deserialize(&snapshot_bytes)
            .map_err(|cause| CheckpointError::Decode { path: place(&key, at), cause })?;
        let monitor = MachineMonitor::restore(snapshot, config)
            .map_err(|cause| CheckpointError::Restore { path: place(&key, at), cause })?;
        restored.restored.covered_until_us = restored.restored.covered_until_us.max(Some(record.covered_until_us));
        restored.parts_in_force.push((monitor.machine_id().clone(), part_keys));
        restored.restored.monitors.push(monitor);
        restored.restored.files.push(place(&key, at));
    }
    // What is left are parts that no record in force names.
    let mut stale: std::collections::BTreeMap<MachineId, Vec<String>> = Default::default();
    for key in values.into_keys() {
        if let Some(machine) = machine_of_key(&key) {
            stale.entry(machine).or_default().push(key);
        }
    }
    restored.stale_parts = stale.into_iter().collect();
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{audio, chunk, config};
    use super::*;
    use crate::model::MonitorOutput;
    use auscult_schemas::MachineType;
    use std::collections::HashMap;

    /// A broker's view after these sends: the newest value of each key, tombstones applied.
    fn compacted(sent: impl IntoIterator<Item = ChangelogRecord>) -> ChangelogContents {
        let mut contents = ChangelogContents::default();
        let mut offsets: HashMap<i32, i64> = HashMap::new();
        for record in sent {
            let offset = offsets.entry(record.partition).or_default();
            *offset += 1;
            match record.value {
                Some(value) => {
                    contents.values.insert(record.key, (record.partition, *offset, value));
                }
                None => {
                    contents.values.remove(&record.key);
                }
            }
        }
        contents
    }

    fn learned(machine: &MachineId, chunks: u64, config: &Config) -> MachineMonitor {
        let mut monitor = MachineMonitor::new(machine.clone(), MachineType::new("fan").unwrap(), config);
        let mut out = MonitorOutput::default();
        for sequence in 0..chunks {
            monitor.accept(&chunk(machine, sequence, &audio(sequence, u64::MAX)), &mut out).unwrap();
        }
        monitor
    }

    #[test]
    fn a_state_too_long_for_one_record_is_split_and_restored_whole_from_the_newest_version() {
        let config = config();
        let machine = MachineId::new("pump-07").unwrap();
        let monitor = learned(&machine, 120, &config);
        let whole = StateEncoding::new(&config, 3, 1 << 20).encode(&monitor, 30_000_000);
        assert_eq!(whole.records.len(), 1, "fits one record");
        let encoding = StateEncoding::new(&config, 3, 8 * 1024);
        let first = encoding.encode(&monitor, 30_000_000);
        assert!(first.records.len() > 3, "{} records", first.records.len());
        assert!(first.records.iter().all(|(partition, _, value)| {
            *partition == encoding.partition_of(&machine) && value.as_ref().unwrap().len() <= 8 * 1024
        }));
        assert_eq!(first.records.last().unwrap().1, "pump-07", "the record naming the parts goes last");
        let old_parts: Vec<String> = first.part_keys().map(str::to_owned).collect();

        // A newer version, then the old parts' tombstones: the newest state comes back.
        let newer = learned(&machine, 160, &config);
        let second = encoding.encode(&newer, 40_000_000);
        let mut sent: Vec<ChangelogRecord> = first.into_records().collect();
        sent.extend(second.clone().into_records());
        sent.extend(encoding.tombstones(&machine, old_parts.iter().map(String::as_str)));
        let back = restore(compacted(sent.clone()), "auscult.state", &config).unwrap();
        assert_eq!(back.restored.covered_until_us, Some(40_000_000));
        assert_eq!(back.restored.monitors.len(), 1);
        assert_eq!(back.restored.monitors[0].stats().chunks, 160);
        assert!(back.stale_parts.is_empty());
        assert_eq!(back.parts_in_force[0].1, second.part_keys().map(str::to_owned).collect::<Vec<_>>());

        // A crash before the tombstones: the old parts are reported stale, the state is the newest.
        let untidy = sent[..sent.len() - old_parts.len()].to_vec();
        let back = restore(compacted(untidy), "auscult.state", &config).unwrap();
        assert_eq!(back.restored.monitors[0].stats().chunks, 160);
        assert_eq!(back.stale_parts.len(), 1);
        let (stale_machine, mut stale_keys) = back.stale_parts.into_iter().next().unwrap();
        let mut expected_keys = old_parts.clone();
        expected_keys.sort();
        stale_keys.sort();
        assert_eq!((stale_machine, stale_keys), (machine, expected_keys));
    }

    #[test]
    fn a_retired_machine_is_not_restored_and_its_parts_go_too() {
        let config = config();
        let encoding = StateEncoding::new(&config, 2, 8 * 1024);
        let (kept, retired) = (MachineId::new("fan-01").unwrap(), MachineId::new("fan-02").unwrap());
        let mut sent: Vec<ChangelogRecord> =
            encoding.encode(&learned(&kept, 40, &config), 10_000_000).into_records().collect();
        let state = encoding.encode(&learned(&retired, 40, &config), 10_000_000);
        let parts: Vec<String> = state.part_keys().map(str::to_owned).collect();
        sent.extend(state.into_records());
        sent.extend(encoding.retire(&retired).into_records());
        sent.extend(encoding.tombstones(&retired, parts.iter().map(String::as_str)));
        let back = restore(compacted(sent), "auscult.state", &config).unwrap();
        let machines: Vec<&str> = back.restored.monitors.iter().map(|monitor| monitor.machine_id().as_str()).collect();
        assert_eq!(machines, ["fan-01"]);
        assert!(back.stale_parts.is_empty());
    }

    #[test]
    fn a_restored_machine_scores_as_the_one_that_wrote_it() {
        let config = config();
        let machine = MachineId::new("fan-03").unwrap();
        let mut monitor = learned(&machine, 100, &config);
        let state = StateEncoding::new(&config, 4, 1 << 20).encode(&monitor, 25_000_000);
        let back = restore(compacted(state.into_records()), "auscult.state", &config).unwrap();
        let mut restored = back.restored.monitors.into_iter().next().unwrap();
        let (mut expected, mut got) = (MonitorOutput::default(), MonitorOutput::default());
        for sequence in 100..200 {
            let chunk = chunk(&machine, sequence, &audio(sequence, u64::MAX));
            monitor.accept(&chunk, &mut expected).unwrap();
            restored.accept(&chunk, &mut got).unwrap();
        }
        assert!(expected.windows.iter().any(|window| window.score.is_some()), "it scores by then");
        assert_eq!(got.windows, expected.windows);
    }

    #[test]
    fn other_settings_a_missing_part_or_damage_are_refused_naming_the_record() {
        let config = config();
        let machine = MachineId::new("valve-02").unwrap();
        let monitor = learned(&machine, 40, &config);
        let encoding = StateEncoding::new(&config, 2, 8 * 1024);
        let state = encoding.encode(&monitor, 10_000_000);
        let mut other = config.clone();
        other.features.n_mels = 64;
        let error = restore(compacted(state.clone().into_records()), "auscult.state", &other).err().unwrap();
        let text = error.to_string();
        assert!(text.contains("kafka:auscult.state/") && text.contains("n_mels=128"), "{text}");
        let missing: Vec<ChangelogRecord> = state.clone().into_records().skip(1).collect();
        let text = restore(compacted(missing), "auscult.state", &config).err().unwrap().to_string();
        assert!(text.contains("part 0 of") && text.contains("valve-02"), "{text}");
        let mut damaged: Vec<ChangelogRecord> = state.into_records().collect();
        damaged.last_mut().unwrap().value = Some(b"not a state record".to_vec());
        let text = restore(compacted(damaged), "auscult.state", &config).err().unwrap().to_string();
        assert!(text.contains("unreadable") && text.contains("(valve-02)"), "{text}");
    }

    #[test]
    fn a_part_key_names_its_machine() {
        assert_eq!(machine_of_key("fan-01").unwrap().as_str(), "fan-01");
        assert_eq!(machine_of_key("fan-01/part/120000000/3").unwrap().as_str(), "fan-01");
        assert!(machine_of_key("not a machine").is_none());
    }
}
