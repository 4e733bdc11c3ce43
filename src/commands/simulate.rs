//! `auscult simulate`: a labelled corpus of simulated machines in the DCASE 2020 layout.

use anyhow::Result;
use auscult_connectors::simulator::{write_corpus_reporting, CorpusSpec};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Folder to write `TYPE/train/normal_id_XX_*.wav` and `TYPE/test/{normal,anomaly}_id_XX_*.wav` into.
    pub out: PathBuf,
    /// Machine signal over factory background, dB (-6, 0 and 6 as in MIMII).
    #[arg(long, default_value_t = 6.0, allow_hyphen_values = true)]
    pub snr: f64,
    /// Seed; the same seed writes the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Machine ids per type.
    #[arg(long, default_value_t = 3)]
    pub ids: usize,
    /// Normal training clips per machine.
    #[arg(long, default_value_t = 30)]
    pub train: usize,
    /// Normal test clips per machine.
    #[arg(long, default_value_t = 15)]
    pub test_normal: usize,
    /// Anomalous test clips per machine.
    #[arg(long, default_value_t = 15)]
    pub test_anomaly: usize,
    /// Seconds per clip.
    #[arg(long, default_value_t = 10.0)]
    pub clip_s: f64,
}

pub fn execute(args: SimulateArgs) -> Result<()> {
    let spec = CorpusSpec {
        ids_per_type: args.ids,
        train_clips: args.train,
        test_normal_clips: args.test_normal,
        test_anomaly_clips: args.test_anomaly,
        clip_s: args.clip_s,
        snr_db: args.snr,
        seed: args.seed,
        ..CorpusSpec::default()
    };
    // Drawn on a terminal only (indicatif hides it when stderr is not one).
    let progress = ProgressBar::new(0);
    progress.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} clips {elapsed}").expect("a valid template"));
    let summary = write_corpus_reporting(&args.out, &spec, &|_written, total| {
        progress.set_length(total as u64);
        progress.inc(1);
    });
    progress.finish_and_clear();
    let summary = summary?;
    eprintln!(
        "{}: {} WAV files of {} machines ({} anomalous), {:.0} s of audio, {} clipped samples",
        args.out.display(),
        summary.files,
        summary.machines,
        summary.anomalous_files,
        summary.audio_s,
        summary.clipped_samples
    );
    Ok(())
}
