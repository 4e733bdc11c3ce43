//! Bad input never stops the stream: each bad file is named with its reason in one line,
//! counted as skipped, and the good audio beside it is processed in full.

mod common;

use common::{auscult, read_json, run_ok};
use std::path::Path;

fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[f32]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &sample in samples {
        match spec.sample_format {
            hound::SampleFormat::Float => writer.write_sample(sample).unwrap(),
            hound::SampleFormat::Int => writer.write_sample((sample * 32_000.0) as i16).unwrap(),
        }
    }
    writer.finalize().unwrap();
}

fn tone(seconds: f64) -> Vec<f32> {
    (0..(seconds * 16_000.0) as usize)
        .map(|n| 0.2 * (n as f32 * 0.2).sin() + 0.01 * ((n * 7919 % 101) as f32 / 101.0))
        .collect()
}

#[test]
fn every_kind_of_bad_file_is_reported_once_and_the_good_machine_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("corpus");
    let int16 = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let float = hound::WavSpec { bits_per_sample: 32, sample_format: hound::SampleFormat::Float, ..int16 };
    // The good machine: three clean clips.
    for clip in 0..3 {
        write_wav(&root.join(format!("fan/train/normal_id_00_{clip:08}.wav")), int16, &tone(10.0));
    }
    // A second machine whose every file is bad in its own way.
    let bad = |name: &str| root.join(format!("pump/train/normal_id_02_{name}.wav"));
    write_wav(&bad("00000000"), int16, &tone(2.0));
    let full = std::fs::read(bad("00000000")).unwrap();
    std::fs::write(bad("00000001"), &full[..full.len() / 2]).unwrap(); // truncated
    write_wav(&bad("00000002"), int16, &[]); // empty
    std::fs::write(bad("00000003"), b"this is not a wav file at all").unwrap(); // not a WAV
    let mut adpcm = full[..64].to_vec();
    adpcm[20..22].copy_from_slice(&0x0011u16.to_le_bytes()); // IMA ADPCM format tag
    std::fs::write(bad("00000004"), adpcm).unwrap();
    let mut nan = tone(1.0);
    nan[100] = f32::NAN;
    write_wav(&bad("00000005"), float, &nan);
    write_wav(&bad("00000006"), hound::WavSpec { sample_rate: 100, ..int16 }, &tone(0.5)); // absurd rate
    std::os::unix::fs::symlink("/no/such/target.wav", bad("00000007")).unwrap(); // unreadable: a dangling link
    let summary_path = dir.path().join("summary.json");
    let output = run_ok(
        auscult()
            .args(["run", "--input"])
            .arg(&root)
            .arg("--events")
            .arg(dir.path().join("events.jsonl"))
            .arg("--archive")
            .arg(dir.path().join("archive"))
            .arg("--summary-json")
            .arg(&summary_path)
            .args(["--learning-s", "8"]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary = read_json(&summary_path);
    let skipped: Vec<String> =
        summary["totals"]["skipped"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    for (file, reason) in [
        ("00000001", "truncated"),
        ("00000002", "empty"),
        ("00000003", "not a WAV"),
        ("00000004", "unsupported"),
        ("00000005", "not a finite"),
        ("00000006", "sample rate"),
        ("00000007", ""),
    ] {
        let lines: Vec<&String> =
            skipped.iter().filter(|line| line.contains(&format!("normal_id_02_{file}.wav"))).collect();
        assert_eq!(lines.len(), 1, "{file}: expected one skip line, got {lines:?} in {skipped:#?}");
        assert!(
            lines[0].to_lowercase().contains(&reason.to_lowercase()),
            "{file}: '{}' does not say '{reason}'",
            lines[0]
        );
        assert!(!lines[0].contains('\n'));
    }
    // The good machine's 30 s and the first valid pump file's audio were all processed.
    let machines = summary["totals"]["machines"].as_array().unwrap();
    let fan = machines.iter().find(|m| m["machine_id"] == "fan-id_00").expect("the good machine ran");
    assert!((fan["audio_s"].as_f64().unwrap() - 30.0).abs() < 1e-6, "{fan}");
    // 30 s make 14 windows of 2 s, all of them learned: 11 spans of 4 windows are fewer than
    // learning takes whatever `--learning-s` says (20 with 4-window spans).
    let (learned, scored) = (fan["windows_learned"].as_u64().unwrap(), fan["windows_scored"].as_u64().unwrap());
    assert_eq!((learned, scored), (14, 0), "{fan}");
    let pump = machines.iter().find(|m| m["machine_id"] == "pump-id_02").expect("the valid pump audio ran");
    assert!(pump["audio_s"].as_f64().unwrap() >= 2.0, "{pump}");
}

#[test]
fn a_missing_input_folder_is_a_clear_error() {
    let output = auscult().args(["run", "--input", "/no/such/folder", "--events", "-"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_damaged_checkpoint_or_marker_is_one_clear_line_before_anything_is_read() {
    let state = tempfile::tempdir().unwrap();
    let folder = state.path().join("worker-0");
    std::fs::create_dir_all(&folder).unwrap();
    let checkpoint = folder.join("00000000000000000050.ckpt");
    std::fs::write(&checkpoint, b"not a checkpoint").unwrap();
    for (marker, expected) in
        [("100\n", checkpoint.display().to_string()), ("soon\n", "\"soon\" is not a capture time".to_owned())]
    {
        std::fs::write(folder.join("committed"), marker).unwrap();
        // No broker is needed: the state is read before the pipeline connects.
        let output = auscult().args(["run", "--brokers", "127.0.0.1:9", "--state"]).arg(state.path()).output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
