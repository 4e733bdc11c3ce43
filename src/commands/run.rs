//! `auscult run`: the streaming pipeline on WAV files, simulated machines or a Kafka topic.

use crate::summary::{print_run_summary, RunTotals};
use anyhow::{bail, Context, Result};
use auscult_connectors::archive::ArchiveLocation;
use auscult_connectors::edge::{LocalMachines, LocalSource};
use auscult_connectors::events::EventTarget;
use auscult_connectors::kafka::{partition_count, read_changelog};
use auscult_connectors::metrics_endpoint::{MetricsEndpoint, Pages};
use auscult_pipeline::checkpoint::{self, changelog};
use auscult_pipeline::config::StateBackend;
use auscult_pipeline::dataflow::{run, CheckpointPlan, RunPlan, StatePlan, WorkerReport};
use auscult_pipeline::metrics::{PipelineMetrics, WorkerLabel};
use auscult_pipeline::sources::{KafkaSource, SourcePlan};
use auscult_pipeline::Config;
use auscult_schemas::time::rfc3339;
use auscult_schemas::MachineId;
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Timely's own cluster arguments, passed through unchanged.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Worker threads per process (timely's -w).
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Processes in the cluster (timely's -n); with --hostfile.
    #[arg(long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, from 0 (timely's -p).
    #[arg(long = "process", default_value_t = 0)]
    pub process: usize,
    /// File with one host:port per line, one per process (timely's -h).
    #[arg(long = "hostfile")]
    pub hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    /// The argument vector timely's `execute_from_args` reads.
    pub fn timely_args(&self) -> Vec<String> {
        let mut args = vec!["auscult".to_owned(), "-w".to_owned(), self.workers.max(1).to_string()];
        if self.processes > 1 {
            args.extend(["-n".to_owned(), self.processes.to_string(), "-p".to_owned(), self.process.to_string()]);
            if let Some(hostfile) = &self.hostfile {
                args.extend(["-h".to_owned(), hostfile.display().to_string()]);
            }
        }
        args
    }
}

/// Settings a run may override on the command line.
#[derive(Debug, Clone, Args)]
pub struct ModelOverrides {
    /// Seconds of each machine's first audio that teach it what normal is.
    #[arg(long)]
    pub learning_s: Option<f64>,
    /// Frames per scored window.
    #[arg(long)]
    pub window_frames: Option<u32>,
    /// Target share of normal windows over the warning threshold.
    #[arg(long)]
    pub false_alarm_rate: Option<f64>,
    /// Capture time per epoch, ms.
    #[arg(long)]
    pub epoch_ms: Option<u64>,
    /// Audio per chunk, ms.
    #[arg(long)]
    pub chunk_ms: Option<u32>,
    /// Capture time of the first sample of files and simulated machines (RFC 3339).
    #[arg(long)]
    pub start_time: Option<String>,
}

impl ModelOverrides {
    pub fn apply(&self, config: &mut Config) -> Result<()> {
        if let Some(value) = self.learning_s {
            config.model.learning_s = value;
        }
        if let Some(value) = self.window_frames {
            config.model.window_frames = value;
        }
        if let Some(value) = self.false_alarm_rate {
            config.model.false_alarm_rate = value;
            config.model.alarm_false_alarm_rate = config.model.alarm_false_alarm_rate.min(value);
        }
        if let Some(value) = self.epoch_ms {
            config.stream.epoch_ms = value;
        }
        if let Some(value) = self.chunk_ms {
            config.stream.chunk_ms = value;
        }
        if let Some(value) = &self.start_time {
            config.stream.start_time = value.clone();
        }
        config.validate()?;
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A folder of WAV files (DCASE or MIMII layout, or with a manifest.csv).
    #[arg(long, required_unless_present_any = ["simulate", "brokers"], conflicts_with = "simulate")]
    pub input: Option<PathBuf>,
    /// Simulate this many machines instead (a quarter of them develop a fault 100 s after learning).
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Seconds of audio per simulated machine.
    #[arg(long, default_value_t = 480.0)]
    pub duration: f64,
    /// Seed of the simulator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Signal-to-noise ratio of simulated machines over factory background, dB.
    #[arg(long, default_value_t = 6.0)]
    pub snr: f64,
    /// Consume audio chunks from the Kafka audio topic on these brokers (`host:port,...`);
    /// events then go to the anomaly topic unless --events is given.
    #[arg(long, conflicts_with_all = ["input", "simulate"])]
    pub brokers: Option<String>,
    /// Consumer group of the pipeline (offsets are kept per group).
    #[arg(long, default_value = "auscult-pipeline")]
    pub group: String,
    /// With --brokers: stop once the topic is read to its end and idle for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub stop_when_idle: Option<f64>,
    /// Anomaly events as JSON Lines: a file, or - for standard output (the default without --brokers).
    #[arg(long)]
    pub events: Option<String>,
    /// Where the Parquet archive goes (none if absent): a folder, or an object store URL,
    /// `s3://bucket/prefix`, `gs://`, `az://`, `abfss://` or `file:///abs/path` (credentials
    /// and endpoint from the usual environment variables and `[archive.store_options]`).
    #[arg(long, value_name = "DIR|URL", value_parser = archive_location)]
    pub archive: Option<ArchiveLocation>,
    /// With --brokers: checkpoint each machine's state every `stream.checkpoint_s` of capture
    /// time and continue from it on the next run: `kafka` keeps it in the compacted topic
    /// `kafka.state_topic` (no shared disk; any number of processes and hosts), a folder keeps
    /// it there (every process of a cluster must see the same folder; `./kafka` for a folder
    /// of that name). Default: `state.backend`.
    #[arg(long, value_name = "DIR|kafka", requires = "brokers", value_parser = state_arg)]
    pub state: Option<StateArg>,
    /// Also write the run summary as JSON here.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Serve Prometheus metrics (`/metrics`) and health probes (`/healthz`, `/readyz`) on
    /// this address, `host:port` (`metrics.address`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub overrides: ModelOverrides,
}

/// Simulated faults start this long after a machine's learning span, so they are scored.
pub const FAULT_AFTER_LEARNING_S: f64 = 100.0;

/// How simulated machines sound and for how long.
pub struct Simulation {
    pub seed: u64,
    pub snr_db: f64,
    pub duration_s: f64,
}

/// The plan for WAV files in `input` or `simulate` simulated machines (`None` if neither is
/// given); folders skipped while discovering files are noted in `skipped` and on stderr.
pub fn local_plan(
    input: Option<&std::path::Path>,
    simulate: Option<usize>,
    simulation: &Simulation,
    config: &Config,
    skipped: &mut Vec<String>,
) -> Result<Option<SourcePlan>> {
    let Some(source) = local_source(input, simulate, simulation, config) else { return Ok(None) };
    let (machines, skipped_now) = LocalMachines::discover(&source)?;
    for note in &skipped_now {
        eprintln!("skipped: {note}");
    }
    skipped.extend(skipped_now);
    Ok(Some(match machines {
        LocalMachines::Files(machines) => SourcePlan::Files { machines },
        LocalMachines::Simulated { machines, duration_s } => SourcePlan::Simulated { machines, duration_s },
    }))
}

/// What `--input DIR` or `--simulate N` names (`--input` first); `None` for neither.
pub fn local_source<'a>(
    input: Option<&'a std::path::Path>,
    simulate: Option<usize>,
    simulation: &Simulation,
    config: &Config,
) -> Option<LocalSource<'a>> {
    match (input, simulate) {
        (Some(dir), _) => Some(LocalSource::Folder(dir)),
        (None, Some(machines)) => Some(LocalSource::Simulated {
            machines,
            seed: simulation.seed,
            snr_db: simulation.snr_db,
            duration_s: simulation.duration_s,
            fault_onset_s: config.model.learning_s + FAULT_AFTER_LEARNING_S,
        }),
        (None, None) => None,
    }
}

/// A progress bar of the audio bytes this process's workers have read, redrawn a few times a
/// second until dropped (on a terminal only).
struct AudioProgress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AudioProgress {
    fn start(metrics: Arc<PipelineMetrics>, total_bytes: u64, workers: std::ops::Range<usize>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let thread = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} of audio read {elapsed}")
                    .expect("a valid template"),
            );
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let read: u64 = workers
                    .clone()
                    .map(|worker| metrics.bytes_read.get_or_create(&WorkerLabel { worker: worker as u32 }).get())
                    .sum();
                bar.set_position(read.min(total_bytes));
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        });
        Self { done, thread: Some(thread) }
    }
}

impl Drop for AudioProgress {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A local folder; a URL (`s3://bucket/prefix`) is refused rather than taken as a folder named
/// `s3:`. Object storage is not supported yet.
fn archive_location(text: &str) -> Result<ArchiveLocation, String> {
    ArchiveLocation::parse(text).map_err(|error| error.to_string())
}

/// Where `--state` keeps the machines' state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateArg {
    Kafka,
    Folder(PathBuf),
}

fn state_arg(text: &str) -> Result<StateArg, String> {
    match text.split_once("://") {
        _ if text == "kafka" => Ok(StateArg::Kafka),
        Some((scheme, _)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) => Err(format!(
            "{scheme}:// is object storage, where auscult keeps no state: give `kafka` (the state topic) or a local or mounted folder"
        )),
        _ => Ok(StateArg::Folder(PathBuf::from(text))),
    }
}

/// Reads what earlier runs checkpointed, from the configured backend (`None`: no checkpoints).
/// From the changelog, this process keeps only the machines its workers own.
fn restore_state(config: &Config, source: &SourcePlan, cluster: &ClusterArgs) -> Result<Option<CheckpointPlan>> {
    let brokers = match source {
        SourcePlan::Kafka(kafka) => kafka.brokers.clone(),
        _ if config.state.backend == StateBackend::None => return Ok(None),
        _ => bail!("state checkpoints (state.backend) need a Kafka source: give --brokers"),
    };
    match (config.state.backend, &config.state.dir) {
        (StateBackend::None, _) => Ok(None),
        (StateBackend::Folder, None) => bail!("state.backend = \"folder\" needs state.dir"),
        (StateBackend::Folder, Some(dir)) => {
            let restored = checkpoint::restore(dir, config)?;
            match restored.covered_until_us {
                Some(covered) => eprintln!(
                    "restored {} machine(s) from {} ({} file(s)), state up to {}",
                    restored.monitors.len(),
                    dir.display(),
                    restored.files.len(),
                    rfc3339(covered)
                ),
                None => eprintln!("no checkpoint in {}: every machine starts learning", dir.display()),
            }
            Ok(Some(CheckpointPlan {
                store: StatePlan::Folder(dir.clone()),
                restored: Arc::new(Mutex::new(restored.monitors)),
                covered_until_us: restored.covered_until_us,
            }))
        }
        (StateBackend::Kafka, _) => {
            let topic = config.kafka.state_topic.clone();
            let started = Instant::now();
            let workers = cluster.workers.max(1);
            let peers = workers * cluster.processes.max(1);
            let mine = cluster.process * workers..(cluster.process + 1) * workers;
            let placement = source.placement(peers);
            let owned = |key: &str| {
                changelog::machine_of_key(key)
                    .is_some_and(|machine| mine.contains(&(placement.worker_of(&machine) as usize)))
            };
            let contents = read_changelog(&brokers, &topic, owned)
                .with_context(|| format!("the state topic {topic} (`auscult topics` creates it, compacted)"))?;
            let (records, bytes, state_partitions) = (contents.records_read, contents.bytes_kept, contents.partitions);
            let found = changelog::restore(contents, &topic, config)?;
            let monitors = found.restored.monitors;
            match found.restored.covered_until_us {
                Some(covered) => eprintln!(
                    "restored {} machine(s) of this process's workers from kafka:{topic} ({records} record(s) read, {bytes} byte(s) kept, in {:.2} s), state up to {}",
                    monitors.len(),
                    started.elapsed().as_secs_f64(),
                    rfc3339(covered)
                ),
                None => eprintln!("no state of this process's machines in kafka:{topic} ({records} record(s) read): they start learning"),
            }
            let mut parts_to_drop: HashMap<MachineId, Vec<String>> = found.parts_in_force.into_iter().collect();
            for (machine, keys) in found.stale_parts {
                parts_to_drop.entry(machine).or_default().extend(keys);
            }
            parts_to_drop.retain(|_, keys| !keys.is_empty());
            Ok(Some(CheckpointPlan {
                store: StatePlan::Changelog {
                    brokers,
                    topic,
                    encoding: changelog::StateEncoding::new(config, state_partitions, config.state.max_record_bytes),
                    parts_to_drop: Arc::new(Mutex::new(parts_to_drop)),
                },
                restored: Arc::new(Mutex::new(monitors)),
                covered_until_us: found.restored.covered_until_us,
            }))
        }
    }
}

pub fn execute(args: RunArgs, mut config: Config) -> Result<()> {
    args.overrides.apply(&mut config)?;
    if let Some(address) = &args.metrics {
        config.metrics.address = Some(address.clone());
    }
    // Served from the start, so that `/readyz` says so while the state is restored. A run on
    // files at a terminal keeps them too, for its progress bar.
    let workers = args.cluster.workers.max(1);
    let first_worker = args.cluster.process * workers;
    let show_progress = args.input.is_some() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let metrics = (config.metrics.address.is_some() || show_progress)
        .then(|| Arc::new(PipelineMetrics::new(first_worker, workers, config.metrics.machine_labels)));
    let _endpoint = match (&config.metrics.address, &metrics) {
        (Some(address), Some(metrics)) => {
            let endpoint = MetricsEndpoint::serve(address, Arc::new(PipelinePages(Arc::clone(metrics))))?;
            eprintln!("metrics on http://{}/metrics", endpoint.address());
            Some(endpoint)
        }
        _ => None,
    };
    let mut skipped = Vec::new();
    let simulation = Simulation { seed: args.seed, snr_db: args.snr, duration_s: args.duration };
    let mut source = match local_plan(args.input.as_deref(), args.simulate, &simulation, &config, &mut skipped)? {
        Some(plan) => plan,
        None => match &args.brokers {
            Some(brokers) => SourcePlan::Kafka(KafkaSource {
                brokers: brokers.clone(),
                // Asked of the broker below, once the state is read.
                partitions: 0,
                topic: config.kafka.audio_topic.clone(),
                dlq_topic: config.kafka.dlq_topic.clone(),
                registry_topic: config.kafka.machines_topic.clone(),
                group_id: args.group.clone(),
                stop_when_idle: args.stop_when_idle.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
            }),
            None => bail!("give --input DIR, --simulate N or --brokers HOST:PORT"),
        },
    };
    let events = match (&args.events, &args.brokers) {
        (Some(text), _) => EventTarget::parse(text),
        (None, Some(brokers)) => {
            EventTarget::Kafka { brokers: brokers.clone(), topic: config.kafka.anomalies_topic.clone() }
        }
        (None, None) => EventTarget::Stdout,
    };
    let fleet = args
        .brokers
        .as_ref()
        .map(|brokers| EventTarget::Kafka { brokers: brokers.clone(), topic: config.kafka.fleet_topic.clone() });
    if let Some(state) = &args.state {
        match state {
            StateArg::Kafka => config.state.backend = StateBackend::Kafka,
            StateArg::Folder(dir) => {
                config.state.backend = StateBackend::Folder;
                config.state.dir = Some(dir.clone());
            }
        }
    }
    // A state folder is read before the broker is asked anything, so a damaged checkpoint
    // fails at once; the changelog needs the partition count first, to know who owns what.
    let from_changelog = config.state.backend == StateBackend::Kafka;
    let mut checkpoints = if from_changelog { None } else { restore_state(&config, &source, &args.cluster)? };
    if let SourcePlan::Kafka(kafka) = &mut source {
        kafka.partitions = partition_count(&kafka.brokers, &kafka.topic, Duration::from_secs(10))?;
    }
    if from_changelog {
        checkpoints = restore_state(&config, &source, &args.cluster)?;
    }
    // A Kafka-fed run stops cleanly on SIGINT or SIGTERM: what it read is processed, made
    // durable and committed (a second signal ends it at once).
    let stop = Arc::new(AtomicBool::new(false));
    if args.brokers.is_some() {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
                .context("cannot install a signal handler")?;
        }
    }
    let plan = RunPlan {
        config,
        source,
        events: Some(events),
        archive: args.archive.clone(),
        fleet,
        checkpoints,
        stop,
        metrics,
    };
    let started = Instant::now();
    let progress = match (&plan.source, &plan.metrics) {
        (SourcePlan::Files { machines }, Some(metrics)) if show_progress => {
            let bytes =
                machines.iter().flat_map(|machine| &machine.files).filter_map(|path| std::fs::metadata(path).ok());
            Some(AudioProgress::start(
                Arc::clone(metrics),
                bytes.map(|m| m.len()).sum(),
                first_worker..first_worker + workers,
            ))
        }
        _ => None,
    };
    let reports = run(plan, args.cluster.timely_args()).map_err(anyhow::Error::msg).context("the dataflow failed");
    drop(progress);
    let reports = reports?;
    let totals = RunTotals::new(&reports, skipped, started.elapsed());
    print_run_summary(&mut std::io::stderr(), &totals, args.archive.as_ref().map(|a| a as &dyn std::fmt::Display))?;
    if let Some(path) = &args.summary_json {
        write_summary_json(path, &reports, &totals)?;
    }
    let sink_errors: Vec<&String> = reports.iter().flat_map(|report| &report.sink_errors).collect();
    let sink_error_count: u64 = reports.iter().map(|report| report.sink_error_count).sum();
    if !sink_errors.is_empty() {
        bail!("{sink_error_count} output error(s); first: {}", sink_errors[0]);
    }
    Ok(())
}

/// What the pipeline's endpoint serves.
struct PipelinePages(Arc<PipelineMetrics>);

impl Pages for PipelinePages {
    fn metrics(&self) -> String {
        self.0.encode()
    }
    fn healthy(&self) -> Result<(), String> {
        self.0.healthy()
    }
    fn ready(&self) -> Result<(), String> {
        self.0.ready()
    }
}

pub fn write_summary_json(path: &std::path::Path, reports: &[WorkerReport], totals: &RunTotals) -> Result<()> {
    let document = serde_json::json!({ "totals": totals, "workers": reports });
    let text = serde_json::to_string_pretty(&document).expect("reports are plain data");
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
