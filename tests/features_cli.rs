//! `auscult features` against librosa run on the same files in the same test, through the
//! command line exactly as a user calls it: CSV and .npy, mono and the 8-channel MIMII original.

mod common;

use common::{auscult, mimii, python_ok, run_ok};
use std::path::Path;

const COMPARE: &str = r#"
import sys, numpy as np, soundfile as sf, librosa
wav, ours_path, fmt, channel, n_fft, n_mels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
audio, sr = sf.read(wav, dtype="float32", always_2d=True)
y = audio.mean(axis=1) if channel == "mix" else audio[:, int(channel)]
ref = librosa.power_to_db(librosa.feature.melspectrogram(y=np.ascontiguousarray(y), sr=sr, n_fft=n_fft, hop_length=512, n_mels=n_mels, power=2.0, center=False), ref=1.0, amin=1e-10, top_db=None).T
ours = np.load(ours_path) if fmt == "npy" else np.loadtxt(ours_path, delimiter=",", dtype=np.float32, ndmin=2)
assert ours.dtype == np.float32, ours.dtype
assert ours.shape == ref.shape, (ours.shape, ref.shape)
mask = ref > -100
print(float(np.abs(ours - ref)[mask].max()), ours.shape[0])
"#;

fn compare(wav: &Path, out: &Path, format: &str, channel: &str, n_fft: usize, n_mels: usize) -> (f64, usize) {
    let n_fft_text = n_fft.to_string();
    let n_mels_text = n_mels.to_string();
    let args: Vec<&Path> =
        vec![wav, out, Path::new(format), Path::new(channel), Path::new(&n_fft_text), Path::new(&n_mels_text)];
    let printed = python_ok(COMPARE, &args);
    let mut parts = printed.split_whitespace();
    (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
}

#[test]
fn npy_and_csv_match_librosa_on_a_real_clip() {
    let dir = tempfile::tempdir().unwrap();
    let wav = mimii().join("pump/id_02/abnormal/00000001.wav");
    let npy = dir.path().join("pump.npy");
    run_ok(auscult().arg("features").arg(&wav).args(["--format", "npy", "-o"]).arg(&npy));
    let (max_error_db, frames) = compare(&wav, &npy, "npy", "0", 1024, 128);
    assert!(max_error_db <= 0.05, "max error {max_error_db} dB");
    assert_eq!(frames, 311);
    let csv = dir.path().join("pump.csv");
    run_ok(
        auscult()
            .arg("features")
            .arg(&wav)
            .args(["--n-fft", "2048", "--n-mels", "64", "--format", "csv", "-o"])
            .arg(&csv),
    );
    let (max_error_db, _) = compare(&wav, &csv, "csv", "0", 2048, 64);
    assert!(max_error_db <= 0.05, "max error {max_error_db} dB");
}

#[test]
fn channels_of_the_eight_channel_original_are_chosen_or_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let wav = mimii().join("original_8ch/fan/id_00/normal/00000000.wav");
    for (flag, channel) in [(vec![], "0"), (vec!["--channel", "5"], "5"), (vec!["--mix"], "mix")] {
        let out = dir.path().join(format!("fan-{channel}.npy"));
        run_ok(auscult().arg("features").arg(&wav).args(&flag).args(["--format", "npy", "-o"]).arg(&out));
        let (max_error_db, _) = compare(&wav, &out, "npy", channel, 1024, 128);
        assert!(max_error_db <= 0.05, "channel {channel}: max error {max_error_db} dB");
    }
    // Channel 0 of the original is the shared mono clip, bit for bit: same features.
    let mono = dir.path().join("mono.npy");
    run_ok(
        auscult()
            .arg("features")
            .arg(mimii().join("fan/id_00/normal/00000000.wav"))
            .args(["--format", "npy", "-o"])
            .arg(&mono),
    );
    assert_eq!(std::fs::read(&mono).unwrap(), std::fs::read(dir.path().join("fan-0.npy")).unwrap());
}

#[test]
fn a_channel_that_does_not_exist_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let wav = mimii().join("fan/id_00/normal/00000000.wav");
    let output = auscult()
        .arg("features")
        .arg(&wav)
        .args(["--channel", "3", "--format", "csv", "-o"])
        .arg(dir.path().join("x.csv"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("00000000.wav") && stderr.contains("channel 3"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_reader_that_goes_away_ends_the_program_quietly() {
    use std::io::Read;
    let clip = common::mimii().join("fan/id_00/normal/00000000.wav");
    if !clip.exists() {
        eprintln!("skipped: {} is missing", clip.display());
        return;
    }
    let mut child = auscult()
        .args(["features", "--format", "csv", "-o", "-"])
        .arg(&clip)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line's worth, then close the pipe as `head` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut start = [0u8; 64];
    stdout.read_exact(&mut start).unwrap();
    drop(stdout);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "a closed pipe is not an error to report");
}
