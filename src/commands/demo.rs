//! `auscult demo`: the first thing a newcomer runs. Simulates a small fleet (a quarter of the
//! machines develop a fault 100 s after their 5 learning minutes), runs the real pipeline on 2 workers
//! with events and an archive, and prints what it heard and how to query the archive.

use crate::commands::run::{write_summary_json, FAULT_AFTER_LEARNING_S};
use crate::summary::{print_run_summary, RunTotals};
use anyhow::{Context, Result};
use auscult_connectors::archive::ArchiveLocation;
use auscult_connectors::events::EventTarget;
use auscult_connectors::simulator::{fleet, FleetSpec};
use auscult_pipeline::dataflow::{run, RunPlan};
use auscult_pipeline::sources::SourcePlan;
use auscult_pipeline::Config;
use auscult_report::ReportInputs;
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Machines to simulate.
    #[arg(long, default_value_t = 8)]
    pub machines: usize,
    /// Seconds of audio per machine (the first `learning_s`, 300 by default, are learned as normal).
    #[arg(long, default_value_t = 480.0)]
    pub duration: f64,
    /// Worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    pub workers: usize,
    /// Simulator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where the events and the archive go (default: a new auscult-demo-N folder in the
    /// system's temp folder, `$TMPDIR` or /tmp).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn execute(args: DemoArgs, config: Config) -> Result<()> {
    let out = match args.out {
        Some(out) => {
            if out.exists() {
                std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
            }
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            out
        }
        None => fresh_folder(&std::env::temp_dir())?,
    };
    println!("auscult demo: writing to {}", out.display());
    let events_path = out.join("events.jsonl");
    let archive_dir = out.join("archive");
    let fleet_spec = FleetSpec {
        machines: args.machines,
        seed: args.seed,
        fault_onset_s: config.model.learning_s + FAULT_AFTER_LEARNING_S,
        ..FleetSpec::default()
    };
    let machines = fleet(&fleet_spec);
    println!(
        "auscult demo: {} simulated machines, {:.0} s of 16 kHz audio each, {} workers; the first {:.0} s of each machine are learned as normal.",
        machines.len(),
        args.duration,
        args.workers,
        config.model.learning_s
    );
    for spec in &machines {
        if let Some((fault, onset_s)) = &spec.fault {
            println!("  {} will develop {fault} at {onset_s:.0} s", spec.machine_id);
        }
    }
    let plan = RunPlan {
        config,
        source: SourcePlan::Simulated { machines, duration_s: args.duration },
        events: Some(EventTarget::File(events_path.clone())),
        archive: Some(ArchiveLocation::Folder(archive_dir.clone())),
        fleet: None,
        checkpoints: None,
        stop: Default::default(),
        metrics: None,
    };
    let started = Instant::now();
    let reports =
        run(plan, vec!["auscult".to_owned(), "-w".to_owned(), args.workers.to_string()]).map_err(anyhow::Error::msg)?;
    let totals = RunTotals::new(&reports, Vec::new(), started.elapsed());
    println!();
    print_run_summary(&mut std::io::stdout(), &totals, Some(&archive_dir.display()))?;
    write_summary_json(&out.join("summary.json"), &reports, &totals)?;
    println!("\nanomaly events (JSON Lines): {}", events_path.display());
    let query = format!(
        "SELECT machine_type, machine_id, count(*) AS windows, max(score) AS max_score, \
         count(*) FILTER (WHERE alert_state <> 'normal') AS alert_windows \
         FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY machine_id",
        archive_dir.display()
    );
    println!("query the archive with DuckDB, from its command-line tool or from Python (pip install duckdb):");
    println!("  duckdb -c \"{query}\"");
    println!("  python3 -c \"import duckdb; duckdb.sql(\\\"{query}\\\").show()\"");
    let report_path = out.join("report.html");
    let inputs = ReportInputs {
        archive: Some(ArchiveLocation::Folder(archive_dir)),
        events: Some(events_path),
        ..ReportInputs::default()
    };
    let outline = crate::commands::report::write(&inputs, &report_path)?;
    println!();
    crate::commands::report::print_outline(&report_path, &outline);
    Ok(())
}

/// A new folder `auscult-demo-N` under `parent` (the first N not taken).
fn fresh_folder(parent: &std::path::Path) -> Result<PathBuf> {
    for n in 1..=10_000u32 {
        let candidate = parent.join(format!("auscult-demo-{n}"));
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot create {}", candidate.display())),
        }
    }
    anyhow::bail!("{}: 10,000 auscult-demo folders already exist; give --out", parent.display())
}
