//! `auscult eval`: detection quality on a labelled corpus (DCASE 2020 Task 2 or MIMII layout),
//! through the same features and model code as the stream.

use anyhow::{bail, Result};
use auscult_connectors::layout::discover_labelled;
use auscult_pipeline::eval::metrics::{harmonic_mean, mean};
use auscult_pipeline::eval::{evaluate, split_corpus, MachineResult};
use auscult_pipeline::Config;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The corpus root.
    pub dir: PathBuf,
    /// Worker threads (machines are evaluated in parallel).
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Show the deviating bands of each anomalous test clip.
    #[arg(long)]
    pub explain: bool,
    /// Frames per scored window.
    #[arg(long)]
    pub window_frames: Option<u32>,
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

pub fn execute(args: EvalArgs, mut config: Config) -> Result<()> {
    if let Some(frames) = args.window_frames {
        config.model.window_frames = frames;
    }
    config.validate()?;
    let corpus = discover_labelled(&args.dir)?;
    for note in &corpus.skipped {
        eprintln!("skipped: {note}");
    }
    let machines = split_corpus(&corpus.files);
    if machines.is_empty() {
        bail!("{}: no labelled clips in the DCASE or MIMII layout", args.dir.display());
    }
    let started = Instant::now();
    let progress = ProgressBar::new(machines.len() as u64);
    progress.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} machines {msg}").expect("a valid template"));
    let outcomes = evaluate(&machines, &config, args.workers, &|row: &MachineResult| {
        progress.set_message(row.machine_id.to_string());
        progress.inc(1);
    });
    progress.finish_and_clear();
    let elapsed_s = started.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(row) => rows.push(row),
            Err(error) => eprintln!("not evaluated: {error}"),
        }
    }
    println!(
        "{:<8} {:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6}",
        "type", "machine", "train", "test", "AUC", "pAUC", "thresh", "FAR", "recall", "F1"
    );
    let mut by_type: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for row in &rows {
        println!(
            "{:<8} {:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6}",
            row.machine_type.as_str(),
            row.machine_id.as_str(),
            row.train_clips,
            row.test_normal + row.test_anomalous,
            fmt(row.auc),
            fmt(row.pauc),
            row.threshold.map_or("-".to_owned(), |t| format!("{t:.2}")),
            fmt(row.false_alarm_rate),
            fmt(row.recall),
            fmt(row.f1)
        );
        let entry = by_type.entry(row.machine_type.to_string()).or_default();
        entry.0.extend(row.auc);
        entry.1.extend(row.pauc);
        for skipped in &row.skipped {
            eprintln!("skipped: {skipped}");
        }
        if args.explain {
            for clip in row.clips.iter().filter(|clip| clip.anomalous) {
                let bands: Vec<String> = clip
                    .top_bands
                    .iter()
                    .map(|b| format!("{:.0}-{:.0} Hz ({:+.1} sd)", b.low_hz, b.high_hz, b.deviation_sd))
                    .collect();
                println!("    {} score {:.2}: {}", clip.path.display(), clip.score, bands.join(", "));
            }
        }
    }
    let all_auc: Vec<f64> = rows.iter().filter_map(|r| r.auc).collect();
    let all_pauc: Vec<f64> = rows.iter().filter_map(|r| r.pauc).collect();
    println!();
    println!("{:<25} {:>7} {:>7} {:>9} {:>9}", "", "AUC", "pAUC", "hmean AUC", "hmean pAUC");
    let mut per_type = serde_json::Map::new();
    for (machine_type, (aucs, paucs)) in &by_type {
        println!(
            "{:<25} {:>7} {:>7} {:>9} {:>9}",
            format!("mean {machine_type}"),
            fmt(mean(aucs)),
            fmt(mean(paucs)),
            fmt(harmonic_mean(aucs)),
            fmt(harmonic_mean(paucs))
        );
        per_type.insert(machine_type.clone(), json!({"auc": mean(aucs), "pauc": mean(paucs), "hmean_auc": harmonic_mean(aucs), "hmean_pauc": harmonic_mean(paucs)}));
    }
    println!(
        "{:<25} {:>7} {:>7} {:>9} {:>9}",
        "mean (all machines)",
        fmt(mean(&all_auc)),
        fmt(mean(&all_pauc)),
        fmt(harmonic_mean(&all_auc)),
        fmt(harmonic_mean(&all_pauc))
    );
    println!("{} machines in {elapsed_s:.2} s", rows.len());
    if let Some(path) = &args.json {
        let document = json!({
            "rows": rows,
            "mean": {"auc": mean(&all_auc), "pauc": mean(&all_pauc)},
            "harmonic_mean": {"auc": harmonic_mean(&all_auc), "pauc": harmonic_mean(&all_pauc)},
            "per_type": per_type,
            "elapsed_s": elapsed_s,
            "window_frames": config.model.window_frames,
        });
        std::fs::write(path, serde_json::to_string_pretty(&document).expect("plain data"))?;
    }
    Ok(())
}
