//! `auscult report`: one self-contained HTML page of the fleet, its alerts and an evaluation,
//! drawn from the archive, the events and an eval JSON (see the `auscult-report` crate).

use anyhow::{Context, Result};
use auscult_pipeline::Config;
use auscult_report::{write_report, ArchiveLocation, ReportInputs, ReportOutline};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The Parquet archive (`run --archive`): a folder, or an object store URL (`s3://bucket/prefix`,
    /// ...; credentials as for `run`).
    #[arg(long, value_name = "DIR|URL", value_parser = archive_location)]
    pub archive: Option<ArchiveLocation>,
    /// Anomaly events as JSON Lines (`run --events`, or saved from the anomaly topic): the bands
    /// the stream reported for each alert.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// An `auscult eval --json` document: ROC curves and the AUC / pAUC table.
    #[arg(long, value_name = "EVAL.json")]
    pub eval: Option<PathBuf>,
    /// Most machines given a detail section (the most severe alerts first; every machine has
    /// a row in the fleet table).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub detail: usize,
    /// Where the HTML goes.
    #[arg(short = 'o', long = "out", default_value = "report.html", value_name = "FILE")]
    pub out: PathBuf,
}

fn archive_location(text: &str) -> Result<ArchiveLocation, String> {
    ArchiveLocation::parse(text).map_err(|error| error.to_string())
}

pub fn execute(args: ReportArgs, config: Config) -> Result<()> {
    let inputs = ReportInputs {
        archive: args.archive.map(|location| location.with_options(config.archive.store_options.clone())),
        events: args.events,
        eval: args.eval,
        detail_limit: args.detail,
        ..ReportInputs::default()
    };
    let outline = write_report(&inputs, &args.out)?;
    print_outline(&args.out, &outline);
    Ok(())
}

/// Writes a report for `demo` and `eval --report`; returns what went into it.
pub fn write(inputs: &ReportInputs, out: &Path) -> Result<ReportOutline> {
    write_report(inputs, out).with_context(|| format!("report {}", out.display()))
}

/// One sentence on what the report holds, and where it is.
pub fn print_outline(out: &Path, outline: &ReportOutline) {
    for note in &outline.notes {
        eprintln!("report: {note}");
    }
    let mut parts = Vec::new();
    if outline.machines > 0 {
        parts.push(format!(
            "{} machines, {} alerted, {} in detail",
            outline.machines, outline.alerted, outline.detailed
        ));
    }
    if outline.events > 0 {
        parts.push(format!("{} events", outline.events));
    }
    if outline.eval_machines > 0 {
        parts.push(format!("the evaluation of {} machines", outline.eval_machines));
    }
    println!(
        "report: {} ({}; {} KiB; open it in a browser)",
        out.display(),
        parts.join(", "),
        outline.bytes.div_ceil(1024)
    );
}
