//! `auscult eval`: detection quality on a labelled corpus (DCASE 2020 Task 2 or MIMII layout),
//! through the same features and model code as the stream; with `--folds K`, K-fold
//! cross-validation of an unsplit (MIMII-layout) corpus.

use anyhow::{bail, Context, Result};
use auscult_connectors::layout::discover_labelled;
use auscult_pipeline::eval::folds::fold_corpus;
use auscult_pipeline::eval::metrics::{harmonic_mean, mean};
use auscult_pipeline::eval::summary::{by_machine, summarize, FoldSummary};
use auscult_pipeline::eval::{evaluate, split_corpus, MachineResult};
use auscult_pipeline::Config;
use auscult_report::ReportInputs;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
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
    /// Also write an HTML report of the results (ROC curves, the AUC / pAUC table) here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Show the deviating bands of each anomalous test clip.
    #[arg(long)]
    pub explain: bool,
    /// Frames per window.
    #[arg(long)]
    pub window_frames: Option<u32>,
    /// Windows per scored span (`model.span_windows`).
    #[arg(long)]
    pub span_windows: Option<u32>,
    /// Target rate of false warning alerts per normal window (`model.false_alarm_rate`).
    #[arg(long, value_name = "RATE")]
    pub false_alarm_rate: Option<f64>,
    /// K-fold cross-validation (K >= 2) of an unsplit (MIMII-layout) corpus: each fold tests
    /// n/K of a machine's n normal clips (sorted by path) and every anomalous clip.
    #[arg(long, value_name = "K")]
    pub folds: Option<usize>,
}

fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

pub fn execute(args: EvalArgs, mut config: Config) -> Result<()> {
    if let Some(frames) = args.window_frames {
        config.model.window_frames = frames;
    }
    if let Some(windows) = args.span_windows {
        config.model.span_windows = windows;
    }
    if let Some(rate) = args.false_alarm_rate {
        config.model.false_alarm_rate = rate;
        config.model.alarm_false_alarm_rate = config.model.alarm_false_alarm_rate.min(rate);
    }
    config.validate()?;
    let corpus = discover_labelled(&args.dir)?;
    for note in &corpus.skipped {
        eprintln!("skipped: {note}");
    }
    let machines = match args.folds {
        None => split_corpus(&corpus.files),
        Some(folds) => match fold_corpus(&corpus.files, folds) {
            Ok(machines) => machines,
            Err(error) => bail!("{}: {error}", args.dir.display()),
        },
    };
    if machines.is_empty() {
        bail!("{}: no labelled clips in the DCASE or MIMII layout", args.dir.display());
    }
    let started = Instant::now();
    let progress = ProgressBar::new(machines.len() as u64);
    let template = if args.folds.is_some() {
        "{bar:30} {pos}/{len} machine folds {msg}"
    } else {
        "{bar:30} {pos}/{len} machines {msg}"
    };
    progress.set_style(ProgressStyle::with_template(template).expect("a valid template"));
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
    let mut document = match args.folds {
        None => report_split(&rows, &args),
        Some(folds) => report_folds(&rows, folds, &args),
    };
    match args.folds {
        None => println!("{} machines in {elapsed_s:.2} s", rows.len()),
        Some(folds) => println!("{} machines × {folds} folds in {elapsed_s:.2} s", by_machine(&rows).len()),
    }
    document["elapsed_s"] = json!(elapsed_s);
    document["window_frames"] = json!(config.model.window_frames);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&document).expect("plain data"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        let inputs = ReportInputs { eval_document: Some(document), ..ReportInputs::default() };
        let outline = crate::commands::report::write(&inputs, path)?;
        crate::commands::report::print_outline(path, &outline);
    }
    Ok(())
}

/// Prints an anomalous clip's deviating bands (`--explain`).
fn print_explanations(row: &MachineResult) {
    for clip in row.clips.iter().filter(|clip| clip.anomalous) {
        let bands: Vec<String> = clip
            .top_bands
            .iter()
            .map(|b| format!("{:.0}-{:.0} Hz ({:+.1} sd)", b.low_hz, b.high_hz, b.deviation_sd))
            .collect();
        let fold = row.fold.map(|k| format!("fold {k} ")).unwrap_or_default();
        println!("    {fold}{} score {:.2}: {}", clip.path.display(), clip.score, bands.join(", "));
    }
}

/// The single split's table; returns the JSON document (without the run's time and window).
fn report_split(rows: &[MachineResult], args: &EvalArgs) -> Value {
    println!(
        "{:<8} {:<16} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>6}",
        "type", "machine", "train", "test", "AUC", "pAUC", "thresh", "FAR", "recall", "F1"
    );
    let mut by_type: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for row in rows {
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
            print_explanations(row);
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
    json!({
        "rows": rows,
        "mean": {"auc": mean(&all_auc), "pauc": mean(&all_pauc)},
        "harmonic_mean": {"auc": harmonic_mean(&all_auc), "pauc": harmonic_mean(&all_pauc)},
        "per_type": per_type,
    })
}

fn fmt_pm(mean: Option<f64>, std: Option<f64>) -> String {
    match (mean, std) {
        (Some(mean), Some(std)) => format!("{mean:.3} ± {std:.3}"),
        _ => "-".to_owned(),
    }
}

/// `8`, or `7-8` when the folds differ.
fn fmt_range(counts: impl Iterator<Item = usize> + Clone) -> String {
    match (counts.clone().min(), counts.max()) {
        (Some(low), Some(high)) if low != high => format!("{low}-{high}"),
        (Some(low), _) => low.to_string(),
        _ => "-".to_owned(),
    }
}

/// A group's means, spreads over folds and pooled rates as JSON (the harmonic means apart).
fn summary_json(summary: &FoldSummary) -> Value {
    json!({
        "auc": summary.auc_mean,
        "pauc": summary.pauc_mean,
        "auc_std_over_folds": summary.auc_std_over_folds,
        "pauc_std_over_folds": summary.pauc_std_over_folds,
        "recall": summary.detection.recall(),
        "false_alarm_rate": summary.detection.false_alarm_rate(),
        "f1": summary.detection.f1(),
    })
}

/// The cross-validation tables: a line per machine (mean ± std over its folds, rates pooled
/// over its folds' test clips), then per type and over all machines; returns the JSON fields.
fn report_folds(rows: &[MachineResult], folds: usize, args: &EvalArgs) -> Value {
    println!(
        "{:<8} {:<16} {:>5} {:>5} {:>13} {:>13} {:>6} {:>6} {:>6}",
        "type", "machine", "train", "test", "AUC ± std", "pAUC ± std", "FAR", "recall", "F1"
    );
    let mut machines = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<&MachineResult>> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    for ((machine_type, machine_id), machine_rows) in by_machine(rows) {
        let summary = summarize(&machine_rows);
        println!(
            "{:<8} {:<16} {:>5} {:>5} {:>13} {:>13} {:>6} {:>6} {:>6}",
            machine_type.as_str(),
            machine_id.as_str(),
            fmt_range(machine_rows.iter().map(|row| row.train_clips)),
            fmt_range(machine_rows.iter().map(|row| row.test_normal + row.test_anomalous)),
            fmt_pm(summary.auc_mean, summary.auc_std_over_folds),
            fmt_pm(summary.pauc_mean, summary.pauc_std_over_folds),
            fmt(summary.detection.false_alarm_rate()),
            fmt(summary.detection.recall()),
            fmt(summary.detection.f1())
        );
        if args.explain {
            machine_rows.iter().for_each(|row| print_explanations(row));
        }
        skipped.extend(machine_rows.iter().flat_map(|row| row.skipped.iter()));
        machines.push(json!({
            "machine_type": machine_type,
            "machine_id": machine_id,
            "auc_mean": summary.auc_mean,
            "auc_std": summary.auc_std_over_folds,
            "pauc_mean": summary.pauc_mean,
            "pauc_std": summary.pauc_std_over_folds,
            "recall": summary.detection.recall(),
            "false_alarm_rate": summary.detection.false_alarm_rate(),
            "f1": summary.detection.f1(),
            "folds": summary.folds,
        }));
        by_type.entry(machine_type.as_str()).or_default().extend(machine_rows);
    }
    for line in skipped {
        eprintln!("skipped: {line}");
    }
    println!();
    println!(
        "{:<25} {:>13} {:>13} {:>9} {:>10} {:>6} {:>6} {:>6}",
        "", "AUC ± std", "pAUC ± std", "hmean AUC", "hmean pAUC", "FAR", "recall", "F1"
    );
    let print_group = |label: String, summary: &FoldSummary| {
        println!(
            "{:<25} {:>13} {:>13} {:>9} {:>10} {:>6} {:>6} {:>6}",
            label,
            fmt_pm(summary.auc_mean, summary.auc_std_over_folds),
            fmt_pm(summary.pauc_mean, summary.pauc_std_over_folds),
            fmt(summary.hmean_auc),
            fmt(summary.hmean_pauc),
            fmt(summary.detection.false_alarm_rate()),
            fmt(summary.detection.recall()),
            fmt(summary.detection.f1())
        );
    };
    let mut per_type = serde_json::Map::new();
    for (machine_type, type_rows) in &by_type {
        let summary = summarize(type_rows);
        print_group(format!("mean {machine_type}"), &summary);
        let mut fields = summary_json(&summary);
        fields["hmean_auc"] = json!(summary.hmean_auc);
        fields["hmean_pauc"] = json!(summary.hmean_pauc);
        per_type.insert((*machine_type).to_owned(), fields);
    }
    let overall = summarize(&rows.iter().collect::<Vec<_>>());
    print_group("mean (all machines)".to_owned(), &overall);
    json!({
        "rows": rows,
        "folds": folds,
        "machines": machines,
        "per_fold": overall.per_fold,
        "mean": summary_json(&overall),
        "harmonic_mean": {"auc": overall.hmean_auc, "pauc": overall.hmean_pauc},
        "per_type": per_type,
    })
}
