//! `auscult agent`: the edge agent's command line. Cuts audio (WAV files, raw PCM on stdin,
//! or simulated machines) into chunks and produces them to the audio topic, keyed by machine
//! id, paced at real time or faster, and says at the end what was delivered, failed or
//! dropped. The agent's logic is `auscult_connectors::edge`; this file turns flags and the
//! configuration into its settings.

use anyhow::{bail, Context, Result};
use auscult_connectors::edge::{send_merged, LocalMachines, LocalSource, Pacer, SentPerMachine, StdinAudio};
use auscult_connectors::kafka::{AgentMetrics, ChunkProducer, DeliveryReport, KafkaConfig, ProducerSettings};
use auscult_connectors::metrics_endpoint::{MetricsConfig, MetricsEndpoint, Pages};
use auscult_schemas::{MachineId, MachineType, SampleFormat};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Kafka bootstrap brokers (default: `kafka.brokers` of the configuration).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic to produce to (default: `kafka.audio_topic`, auscult.audio).
    #[arg(long)]
    pub topic: Option<String>,
    /// Replay WAV files: a folder in the DCASE or MIMII layout, or with a manifest.csv.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["simulate", "stdin"])]
    pub input: Option<PathBuf>,
    /// Simulate this many machines (a quarter develop a fault 100 s after learning).
    #[arg(long, value_name = "N", conflicts_with = "stdin")]
    pub simulate: Option<usize>,
    /// Read raw interleaved PCM from standard input (e.g. from `arecord -t raw`).
    #[arg(long, requires_all = ["machine_id", "machine_type"])]
    pub stdin: bool,
    /// Machine id of the audio on stdin.
    #[arg(long)]
    pub machine_id: Option<String>,
    /// Machine type of the audio on stdin.
    #[arg(long)]
    pub machine_type: Option<String>,
    /// Sample rate of the audio on stdin, Hz.
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// Channels of the audio on stdin.
    #[arg(long, default_value_t = 1)]
    pub channels: u16,
    /// Sample format of the audio on stdin: u8, s16le, s24le, s32le or f32le.
    #[arg(long, default_value = "s16le", value_parser = parse_format)]
    pub format: SampleFormat,
    /// Seconds of audio per simulated machine.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// Simulator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated machines' signal over background, dB.
    #[arg(long, default_value_t = 6.0)]
    pub snr: f64,
    /// Replay speed: 1 is real time, 10 ten times faster, 0 as fast as the broker takes it.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Capture time of the first sample (RFC 3339); default: now.
    #[arg(long)]
    pub start_time: Option<String>,
    /// Serve Prometheus metrics (`/metrics`) and health probes (`/healthz`, `/readyz`) on
    /// this address, `host:port` (`metrics.address`).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

fn parse_format(text: &str) -> Result<SampleFormat, String> {
    match text {
        "u8" => Ok(SampleFormat::U8),
        "s16le" | "S16_LE" => Ok(SampleFormat::S16le),
        "s24le" | "S24_3LE" => Ok(SampleFormat::S24le),
        "s32le" | "S32_LE" => Ok(SampleFormat::S32le),
        "f32le" | "FLOAT_LE" => Ok(SampleFormat::F32le),
        other => Err(format!("unknown sample format '{other}' (u8, s16le, s24le, s32le, f32le)")),
    }
}

/// What the agent takes from the configuration (`main` reads the whole file): the agent does
/// not depend on the pipeline.
pub struct AgentSettings {
    pub kafka: KafkaConfig,
    pub metrics: MetricsConfig,
    /// Audio per chunk, ms (`stream.chunk_ms`).
    pub chunk_ms: u32,
    /// When the faulty ones of `--simulate` machines start to fail, s into their audio.
    pub simulated_fault_onset_s: f64,
}

pub fn execute(args: AgentArgs, config: AgentSettings) -> Result<()> {
    if !(args.speed >= 0.0 && args.speed.is_finite()) {
        bail!("--speed {} is not allowed: give 0 (as fast as possible) or a positive factor", args.speed);
    }
    let start_time_us = match &args.start_time {
        Some(text) => auscult_schemas::time::parse_rfc3339(text)
            .with_context(|| format!("--start-time {text} is not RFC 3339 (e.g. 2026-01-01T00:00:00Z)"))?,
        None => now_us(),
    };
    let kafka = &config.kafka;
    let settings = ProducerSettings {
        brokers: args.brokers.clone().unwrap_or_else(|| kafka.brokers.clone()),
        topic: args.topic.clone().unwrap_or_else(|| kafka.audio_topic.clone()),
        client_id: "auscult-agent".to_owned(),
        buffer_max_bytes: kafka.agent_buffer_bytes,
        full_buffer_wait: Duration::from_secs(1),
        delivery_timeout: Duration::from_secs(kafka.agent_delivery_timeout_s),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot install a signal handler")?;
    }
    let mut producer = ChunkProducer::connect(settings.clone())?;
    let _endpoint = match args.metrics.as_ref().or(config.metrics.address.as_ref()) {
        Some(address) => {
            let endpoint = MetricsEndpoint::serve(address, Arc::new(AgentPages(producer.metrics())))?;
            eprintln!("auscult agent: metrics on http://{}/metrics", endpoint.address());
            Some(endpoint)
        }
        None => None,
    };
    eprintln!("auscult agent: producing to {} on {}", settings.topic, settings.brokers);
    let mut sent = SentPerMachine::new();
    let chunk_ms = config.chunk_ms;
    if args.stdin {
        let audio = StdinAudio {
            machine_id: MachineId::new(args.machine_id.clone().unwrap_or_default())
                .map_err(|error| anyhow::anyhow!("--machine-id: {error}"))?,
            machine_type: MachineType::new(args.machine_type.clone().unwrap_or_default())
                .map_err(|error| anyhow::anyhow!("--machine-type: {error}"))?,
            sample_rate_hz: args.rate,
            channels: args.channels,
            sample_format: args.format,
            chunk_ms,
            start_time_us,
        };
        audio.send_all(&mut std::io::stdin().lock(), &mut producer, &stop, &mut sent)?;
    } else {
        let mut streams = local_machines(&args, &config)?.open_all(chunk_ms, start_time_us);
        send_merged(&mut streams, &mut producer, &Pacer::new(start_time_us, args.speed), &stop, &mut sent)?;
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("auscult agent: stopping on a signal; flushing what was sent");
    }
    let report = producer.flush(Duration::from_secs(30));
    print_report(&sent, &report);
    if report.failed + report.dropped + report.unflushed > 0 {
        bail!(
            "{} chunk(s) not delivered: {} failed, {} dropped (buffer full), {} unacknowledged at exit{}",
            report.failed + report.dropped + report.unflushed,
            report.failed,
            report.dropped,
            report.unflushed,
            report.last_error.map(|error| format!("; last error: {error}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// What the agent's endpoint serves: it is alive while it runs, and ready while its producer
/// is connected to a broker (librdkafka's statistics, every second).
struct AgentPages(Arc<AgentMetrics>);

impl Pages for AgentPages {
    fn metrics(&self) -> String {
        self.0.encode()
    }
    fn healthy(&self) -> Result<(), String> {
        Ok(())
    }
    fn ready(&self) -> Result<(), String> {
        if self.0.connected() {
            Ok(())
        } else {
            Err("not connected to any broker".to_owned())
        }
    }
}

/// The machines `--input` or `--simulate` names; skipped files are said on stderr.
fn local_machines(args: &AgentArgs, config: &AgentSettings) -> Result<LocalMachines> {
    let source = match (&args.input, args.simulate) {
        (Some(dir), _) => LocalSource::Folder(dir),
        (None, Some(machines)) => LocalSource::Simulated {
            machines,
            seed: args.seed,
            snr_db: args.snr,
            duration_s: args.duration,
            fault_onset_s: config.simulated_fault_onset_s,
        },
        (None, None) => bail!("give --input DIR, --simulate N or --stdin"),
    };
    let (machines, skipped) = LocalMachines::discover(&source)?;
    for note in skipped {
        eprintln!("skipped: {note}");
    }
    Ok(machines)
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64)
}

fn print_report(sent: &SentPerMachine, report: &DeliveryReport) {
    for (machine, chunks) in sent {
        eprintln!("  {machine:<16} {chunks} chunks sent");
    }
    eprintln!(
        "auscult agent: {} chunks sent, {} delivered, {} failed, {} dropped, {} unacknowledged{}",
        report.sent,
        report.delivered,
        report.failed,
        report.dropped,
        report.unflushed,
        if report.resent > 0 {
            format!(" ({} sent again after a failed delivery)", report.resent)
        } else {
            String::new()
        }
    );
}
