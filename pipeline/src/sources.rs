//! The audio sources a run can read, seen by the dataflow as one chunk stream per machine.
//!
//! A [`SourcePlan`] says what to read (WAV files grouped by machine, or simulated machines);
//! each worker opens only the machines it owns (by its [`Placement`]), so no two workers read
//! the same machine and every machine is read. Whatever the source, the dataflow sees the same
//! `AudioChunk`s an edge agent would send over Kafka.

pub use auscult_connectors::edge::{MachineStream, SourceError};
use auscult_connectors::simulator::SimulatedMachineSpec;
use auscult_connectors::wav::MachineFiles;
use auscult_schemas::{partition_of, route_hash, MachineId};
use std::collections::HashMap;

/// What a run reads.
#[derive(Clone)]
pub enum SourcePlan {
    /// WAV files, grouped by machine (from `layout::discover` or a manifest).
    Files { machines: Vec<MachineFiles> },
    /// Simulated machines, each producing `duration_s` seconds of audio.
    Simulated { machines: Vec<SimulatedMachineSpec>, duration_s: f64 },
    /// The audio topic of a Kafka cluster; machines are whoever sends.
    Kafka(KafkaSource),
}

/// Where a Kafka-fed run reads and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    /// The machine registry's compacted topic.
    pub registry_topic: String,
    pub group_id: String,
    /// Partitions of the audio topic when the run started: a machine is owned by the worker
    /// that reads its partition ([`partition_of`]).
    pub partitions: u32,
    /// Stop once every partition is read to its end and nothing arrived for this long
    /// (`None`: run until stopped).
    pub stop_when_idle: Option<std::time::Duration>,
}

impl SourcePlan {
    /// Machines in the plan.
    pub fn machine_count(&self) -> usize {
        match self {
            SourcePlan::Files { machines } => machines.len(),
            SourcePlan::Simulated { machines, .. } => machines.len(),
            SourcePlan::Kafka(_) => 0,
        }
    }

    /// Where each machine of the plan lives among `peers` workers. The plan knows its whole
    /// fleet up front, so machines are spread by their expected work (bytes of audio for files,
    /// seconds for the simulator), largest first onto the least-loaded worker, ties by machine
    /// id. Every worker and process computes the same placement from the same plan.
    pub fn placement(&self, peers: usize) -> Placement {
        let mut loads: Vec<(u64, &MachineId)> = match self {
            SourcePlan::Files { machines } => machines
                .iter()
                .map(|machine| {
                    let bytes = machine.files.iter().filter_map(|path| std::fs::metadata(path).ok()).map(|m| m.len());
                    (bytes.sum(), &machine.machine_id)
                })
                .collect(),
            SourcePlan::Simulated { machines, .. } => machines.iter().map(|spec| (1, &spec.machine_id)).collect(),
            SourcePlan::Kafka(source) => {
                return Placement {
                    peers: peers.max(1) as u64,
                    owner: HashMap::new(),
                    partitions: Some(source.partitions),
                }
            }
        };
        loads.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let peers = peers.max(1);
        let mut worker_load = vec![0u64; peers];
        let mut owner = HashMap::with_capacity(loads.len());
        for (load, machine_id) in loads {
            let (worker, _) =
                worker_load.iter().enumerate().min_by_key(|(worker, total)| (**total, *worker)).unwrap_or((0, &0));
            worker_load[worker] += load.max(1);
            owner.insert(machine_id.clone(), worker as u64);
        }
        Placement { peers: peers as u64, owner, partitions: None }
    }

    /// Opens the machines that worker `index` owns under `placement`.
    pub fn open_for_worker(
        &self,
        index: usize,
        placement: &Placement,
        chunk_ms: u32,
        start_time_us: i64,
    ) -> Vec<MachineStream> {
        let owned = |id: &MachineId| placement.worker_of(id) == index as u64;
        match self {
            SourcePlan::Files { machines } => machines
                .iter()
                .filter(|machine| owned(&machine.machine_id))
                .map(|machine| MachineStream::files(machine.clone(), chunk_ms, start_time_us))
                .collect(),
            SourcePlan::Simulated { machines, duration_s } => machines
                .iter()
                .filter(|spec| owned(&spec.machine_id))
                .map(|spec| MachineStream::simulated(spec.clone(), *duration_s, chunk_ms, start_time_us))
                .collect(),
            SourcePlan::Kafka(_) => Vec::new(),
        }
    }
}

/// Which worker owns each machine: the plan's own machines as [`SourcePlan::placement`] spread
/// them; from Kafka, the worker that reads the machine's partition ([`partition_of`]: the
/// consumer of worker `w` reads the partitions `p` with `p mod peers = w`); any other machine
/// (one that only appears in a file or simulated stream) by [`route_hash`].
///
/// A machine whose chunks arrive on another partition (a producer with another partitioner,
/// or a topic that has grown) is still owned by this rule: its chunks are exchanged to the
/// owner, which costs a copy but keeps one state and its order. A restart with another
/// partition count moves the restored state to the new owners.
#[derive(Debug, Clone)]
pub struct Placement {
    peers: u64,
    owner: HashMap<MachineId, u64>,
    partitions: Option<u32>,
}

impl Placement {
    /// The worker index (below the number of peers) that owns `machine_id`.
    pub fn worker_of(&self, machine_id: &MachineId) -> u64 {
        if let Some(partitions) = self.partitions {
            return partition_of(machine_id, partitions) as u64 % self.peers;
        }
        self.owner.get(machine_id).copied().unwrap_or_else(|| route_hash(machine_id) % self.peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auscult_connectors::simulator::{fleet, FleetSpec};

    #[test]
    fn a_known_fleet_is_spread_evenly_and_every_worker_agrees() {
        let plan = SourcePlan::Simulated {
            machines: fleet(&FleetSpec { machines: 33, ..FleetSpec::default() }),
            duration_s: 1.0,
        };
        for peers in [1, 2, 3, 4] {
            let placement = plan.placement(peers);
            let mut per_worker = vec![0usize; peers];
            let SourcePlan::Simulated { machines, .. } = &plan else { unreachable!() };
            for spec in machines {
                let worker = placement.worker_of(&spec.machine_id);
                assert!(worker < peers as u64);
                per_worker[worker as usize] += 1;
            }
            let (least, most) = (per_worker.iter().min().unwrap(), per_worker.iter().max().unwrap());
            assert!(most - least <= 1, "{peers} workers: {per_worker:?}");
            let again = plan.placement(peers);
            assert!(machines
                .iter()
                .all(|spec| again.worker_of(&spec.machine_id) == placement.worker_of(&spec.machine_id)));
        }
    }

    #[test]
    fn a_machine_the_plan_does_not_know_goes_by_route_hash() {
        let plan = SourcePlan::Simulated { machines: Vec::new(), duration_s: 1.0 };
        let stranger = MachineId::new("pump-99").unwrap();
        assert_eq!(plan.placement(3).worker_of(&stranger), route_hash(&stranger) % 3);
    }

    #[test]
    fn from_kafka_a_machine_belongs_to_the_reader_of_its_partition() {
        let source = KafkaSource {
            brokers: "localhost:9092".into(),
            topic: "auscult.audio".into(),
            dlq_topic: "auscult.audio.dlq".into(),
            registry_topic: "auscult.machines".into(),
            group_id: "auscult".into(),
            partitions: 4,
            stop_when_idle: None,
        };
        let plan = SourcePlan::Kafka(source);
        for peers in [1usize, 2, 3, 6] {
            let placement = plan.placement(peers);
            for i in 0..50 {
                let machine = MachineId::new(format!("valve-{i:02}")).unwrap();
                // The consumer of worker w reads the partitions p with p mod peers = w.
                let reader = partition_of(&machine, 4) as u64 % peers as u64;
                assert_eq!(placement.worker_of(&machine), reader, "{machine} on {peers} workers");
            }
        }
    }
}
