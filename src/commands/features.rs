//! `auscult features`: the log-mel matrix of one WAV file, as librosa would compute it.

use crate::npy::write_f32_matrix;
use anyhow::{bail, Context, Result};
use auscult_connectors::wav::WavChunkReader;
use auscult_pipeline::dsp::{decode_to_mono, ChannelSelection, LogMelExtractor};
use auscult_pipeline::Config;
use clap::{Args, ValueEnum};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Frames read from the file per step.
const READ_FRAMES: usize = 1 << 16;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MatrixFormat {
    /// Comma-separated text, one row per frame, one column per band.
    Csv,
    /// NumPy .npy, float32, shape (frames, n_mels).
    Npy,
}

#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// The WAV file (PCM 8/16/24/32-bit or float 32, 1 to 8 channels, any rate).
    pub file: PathBuf,
    /// Frame length in samples.
    #[arg(long)]
    pub n_fft: Option<usize>,
    /// Samples between frames.
    #[arg(long)]
    pub hop: Option<usize>,
    /// Mel bands.
    #[arg(long)]
    pub n_mels: Option<usize>,
    /// Channel to analyse, from 0 (default 0).
    #[arg(long, conflicts_with = "mix")]
    pub channel: Option<u16>,
    /// Analyse the mean of all channels.
    #[arg(long)]
    pub mix: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: MatrixFormat,
    /// Output file (`-` for standard output, CSV only).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

pub fn execute(args: FeaturesArgs, mut config: Config) -> Result<()> {
    let features = &mut config.features;
    features.n_fft = args.n_fft.unwrap_or(features.n_fft);
    features.hop_length = args.hop.unwrap_or(features.hop_length);
    features.n_mels = args.n_mels.unwrap_or(features.n_mels);
    if args.mix {
        features.channel = ChannelSelection::Mix;
    } else if let Some(channel) = args.channel {
        features.channel = ChannelSelection::Channel(channel);
    }
    let mut reader = WavChunkReader::open(&args.file)?;
    let info = reader.info();
    let settings = features.settings_for(info.sample_rate_hz);
    let mut extractor =
        LogMelExtractor::new(settings).with_context(|| format!("{}: bad feature settings", args.file.display()))?;
    let mut samples = Vec::new();
    let mut matrix = Vec::new();
    while let Some(payload) = reader.next_payload(READ_FRAMES)? {
        samples.clear();
        decode_to_mono(&payload, info.sample_format, info.channels, features.channel, &mut samples)
            .with_context(|| format!("{}", args.file.display()))?;
        extractor.push(&samples, |frame| matrix.extend_from_slice(frame));
    }
    let n_mels = settings.n_mels;
    let rows = matrix.len() / n_mels;
    if rows == 0 {
        bail!("{}: shorter than one frame ({} samples needed)", args.file.display(), settings.n_fft);
    }
    let to_stdout = args.output.as_os_str() == "-";
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        let file =
            std::fs::File::create(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
        Box::new(BufWriter::new(file))
    };
    match args.format {
        MatrixFormat::Npy if to_stdout => bail!("--format npy needs a file with -o"),
        MatrixFormat::Npy => write_f32_matrix(&mut out, &matrix, rows, n_mels)?,
        MatrixFormat::Csv => {
            for row in matrix.chunks_exact(n_mels) {
                let line: Vec<String> = row.iter().map(|value| value.to_string()).collect();
                writeln!(out, "{}", line.join(","))?;
            }
        }
    }
    out.flush().with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "{}: {rows} frames x {n_mels} mel bands at {} Hz (n_fft {}, hop {}) -> {}",
        args.file.display(),
        info.sample_rate_hz,
        settings.n_fft,
        settings.hop_length,
        args.output.display()
    );
    Ok(())
}
