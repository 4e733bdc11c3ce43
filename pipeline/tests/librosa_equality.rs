//! The extractor against librosa: every frame of every fixture made by
//! `scripts/make_librosa_fixtures.py` (librosa version in the manifest) within 0.05 dB,
//! on bins above -100 dB, whole and in random-sized chunks.

use auscult_pipeline::dsp::LogMelExtractor;
use auscult_schemas::FeatureSettings;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOLERANCE_DB: f32 = 0.05;

fn fixtures() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/fixtures/librosa")
}

fn read_samples(path: &Path) -> (Vec<f32>, u32) {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let spec = reader.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => reader.samples::<i32>().map(|s| s.unwrap() as f32 / 32_768.0).collect(),
    };
    (samples, spec.sample_rate)
}

fn read_expected(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn every_fixture_frame_matches_librosa_within_five_hundredths_of_a_db() {
    let manifest: Value = serde_json::from_slice(&std::fs::read(fixtures().join("manifest.json")).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "the fixture set shrank to {} cases", cases.len());
    let mut rates_seen = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (samples, rate) = read_samples(&fixtures().join(case["wav"].as_str().unwrap()));
        assert_eq!(u64::from(rate), case["sample_rate_hz"].as_u64().unwrap(), "{name}");
        rates_seen.insert(rate);
        let n_mels = case["n_mels"].as_u64().unwrap() as usize;
        let settings = FeatureSettings::new(
            rate,
            case["n_fft"].as_u64().unwrap() as usize,
            case["hop_length"].as_u64().unwrap() as usize,
            n_mels,
        );
        let expected = read_expected(&fixtures().join(case["expected"].as_str().unwrap()));
        let whole = LogMelExtractor::new(settings).unwrap().extract_all(&samples);
        assert_eq!(whole.len(), expected.len(), "{name}: frame count differs from librosa");
        let mut compared = 0;
        for (index, (&ours, &theirs)) in whole.iter().zip(&expected).enumerate() {
            if theirs > -100.0 + TOLERANCE_DB {
                compared += 1;
                assert!(
                    (ours - theirs).abs() <= TOLERANCE_DB,
                    "{name}: frame {} band {}: auscult {ours} dB, librosa {theirs} dB",
                    index / n_mels,
                    index % n_mels
                );
            }
        }
        assert!(compared > 0, "{name}: nothing above the floor to compare");
        // The same frames again, fed in uneven chunks.
        let mut chunked = Vec::new();
        let mut extractor = LogMelExtractor::new(settings).unwrap();
        for (round, piece) in samples.chunks(777).enumerate() {
            let split = (round * 131) % piece.len().max(1);
            extractor.push(&piece[..split], |frame| chunked.extend_from_slice(frame));
            extractor.push(&piece[split..], |frame| chunked.extend_from_slice(frame));
        }
        assert_eq!(chunked, whole, "{name}: chunked frames differ");
    }
    assert!(rates_seen.len() >= 2, "fixtures cover only the rates {rates_seen:?}");
}
