//! Speed of the log-mel extractor on a real 10 s, 16 kHz MIMII clip (a synthetic one if
//! `../shared/data/mimii` is absent). `bench/logmel_vs_librosa.py` runs this and librosa in one
//! run and prints the ratio; `BENCHMARKS.md` holds the figures.

use auscult_pipeline::dsp::LogMelExtractor;
use auscult_schemas::FeatureSettings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;

const CLIP: &str = "../../shared/data/mimii/fan/id_00/normal/00000000.wav";

fn ten_second_clip() -> (Vec<f32>, &'static str) {
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join(CLIP);
    if let Ok(reader) = hound::WavReader::open(&path) {
        let samples: Result<Vec<i16>, _> = reader.into_samples::<i16>().collect();
        if let Ok(samples) = samples {
            return (samples.iter().map(|&s| f32::from(s) / 32_768.0).collect(), "mimii_fan");
        }
    }
    let synthetic = (0..160_000)
        .map(|n| 0.3 * (n as f32 * 0.071).sin() + 0.05 * ((n * 7919 % 1000) as f32 / 1000.0 - 0.5))
        .collect();
    (synthetic, "synthetic")
}

fn extractor_speed(criterion: &mut Criterion) {
    let (clip, name) = ten_second_clip();
    let mut group = criterion.benchmark_group("logmel");
    group.throughput(Throughput::Elements(clip.len() as u64));
    for (n_fft, n_mels) in [(1024, 128), (2048, 128), (1024, 64)] {
        let mut extractor =
            LogMelExtractor::new(FeatureSettings::new(16_000, n_fft, 512, n_mels)).expect("valid settings");
        group.bench_function(format!("{name}_10s_16k_nfft{n_fft}_mels{n_mels}"), |bencher| {
            bencher.iter(|| {
                extractor.reset();
                let mut checksum = 0.0f32;
                extractor.push(black_box(&clip), |frame| checksum += frame[0]);
                black_box(checksum)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, extractor_speed);
criterion_main!(benches);
