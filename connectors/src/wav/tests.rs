use super::*;
use std::path::PathBuf;

fn spec(channels: u16, bits: u16, float: bool) -> hound::WavSpec {
    let sample_format = if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
    hound::WavSpec { channels, sample_rate: 16_000, bits_per_sample: bits, sample_format }
}

/// The `index`-th written sample of a test file: spread over the format's whole range, extremes included.
fn int_sample(index: usize, bits: u16) -> i32 {
    let max = if bits == 32 { i32::MAX } else { (1 << (bits - 1)) - 1 };
    let min = if bits == 32 { i32::MIN } else { -(1 << (bits - 1)) };
    match index % 7 {
        0 => min,
        1 => max,
        2 => 0,
        _ => {
            ((index as i64 * 2_654_435_761) % (i64::from(max) + 1)) as i32
                * if index.is_multiple_of(2) { -1 } else { 1 }
        }
    }
}

fn float_sample(index: usize) -> f32 {
    (index as f32 * 0.013).sin() * if index.is_multiple_of(5) { 1.0 } else { 0.25 }
}

fn write_wav(path: &Path, spec: hound::WavSpec, frames: usize) {
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for index in 0..frames * usize::from(spec.channels) {
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => writer.write_sample(float_sample(index)).unwrap(),
            (_, 8) => writer.write_sample(int_sample(index, 8) as i8).unwrap(),
            (_, 16) => writer.write_sample(int_sample(index, 16) as i16).unwrap(),
            (_, bits) => writer.write_sample(int_sample(index, bits)).unwrap(),
        }
    }
    writer.finalize().unwrap();
}

/// A canonical 44-byte WAV header (plain WAVEFORMAT `fmt ` chunk), for formats hound will not write.
fn header(format_tag: u16, channels: u16, rate: u32, bits: u16, block_align: u16, data_bytes: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&format_tag.to_le_bytes());
    bytes.extend_from_slice(&channels.to_le_bytes());
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    bytes.extend_from_slice(&block_align.to_le_bytes());
    bytes.extend_from_slice(&bits.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_bytes.to_le_bytes());
    bytes.resize(bytes.len() + data_bytes as usize, 0);
    bytes
}

fn read_all(reader: &mut WavChunkReader, max_frames: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Some(payload) = reader.next_payload(max_frames).unwrap() {
        bytes.extend(payload);
    }
    bytes
}

/// Asserts the error names the file and is one line.
fn assert_names(error: &WavError, path: &Path) {
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(error.path(), path);
}

#[test]
fn every_sample_width_and_channel_count_decodes_back_to_the_written_samples() {
    let dir = tempfile::tempdir().unwrap();
    let formats = [
        (8, false, SampleFormat::U8),
        (16, false, SampleFormat::S16le),
        (24, false, SampleFormat::S24le),
        (32, false, SampleFormat::S32le),
        (32, true, SampleFormat::F32le),
    ];
    for (bits, float, format) in formats {
        for channels in [1u16, 2, 8] {
            let frames = 101;
            let path = dir.path().join(format!("{bits}-{float}-{channels}.wav"));
            write_wav(&path, spec(channels, bits, float), frames);
            let mut reader = WavChunkReader::open(&path).unwrap();
            let info = reader.info();
            let expected_info =
                WavInfo { sample_rate_hz: 16_000, channels, sample_format: format, frames: frames as u64 };
            assert_eq!(info, expected_info);
            let bytes = read_all(&mut reader, 33);
            assert_eq!(reader.frames_read(), frames as u64);
            let width = format.bytes_per_sample();
            assert_eq!(bytes.len(), frames * usize::from(channels) * width);
            for (index, sample) in bytes.chunks_exact(width).enumerate() {
                match format {
                    SampleFormat::F32le => {
                        let value = f32::from_le_bytes(sample.try_into().unwrap());
                        assert_eq!(value.to_bits(), float_sample(index).to_bits());
                    }
                    // WAV 8-bit is unsigned with 128 as silence; the chunk keeps it so.
                    SampleFormat::U8 => assert_eq!(i32::from(sample[0]) - 128, int_sample(index, 8)),
                    SampleFormat::S16le => {
                        assert_eq!(i32::from(i16::from_le_bytes([sample[0], sample[1]])), int_sample(index, 16))
                    }
                    SampleFormat::S24le => {
                        let value = i32::from_le_bytes([0, sample[0], sample[1], sample[2]]) >> 8;
                        assert_eq!(value, int_sample(index, 24), "24-bit sample {index}");
                    }
                    SampleFormat::S32le => {
                        assert_eq!(i32::from_le_bytes(sample.try_into().unwrap()), int_sample(index, 32))
                    }
                }
            }
        }
    }
}

#[test]
fn the_real_eight_channel_mimii_file_reads_as_wave_format_extensible() {
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../shared/data/mimii/original_8ch/fan/id_00/normal/00000000.wav");
    let mut reader = WavChunkReader::open(&path).unwrap();
    let expected = WavInfo { sample_rate_hz: 16_000, channels: 8, sample_format: SampleFormat::S16le, frames: 160_000 };
    assert_eq!(reader.info(), expected);
    assert_eq!(read_all(&mut reader, 16_000).len(), 160_000 * 8 * 2);
}

#[test]
fn a_truncated_file_yields_its_whole_frames_then_the_error_then_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wav");
    write_wav(&good, spec(2, 16, false), 1000);
    let bytes = std::fs::read(&good).unwrap();
    // 1,001 bytes cut: 250 frames and a half sample are gone, 749 whole frames remain.
    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1001]).unwrap();
    let mut reader = WavChunkReader::open(&truncated).unwrap();
    assert_eq!(reader.info().frames, 1000);
    let mut frames = 0;
    let error = loop {
        match reader.next_payload(100) {
            Ok(Some(payload)) => frames += payload.len() / 4,
            Ok(None) => panic!("a truncated file read to its end"),
            Err(error) => break error,
        }
    };
    assert_eq!(frames, 749);
    assert!(matches!(error, WavError::Truncated { frames_read: 749, frames_declared: 1000, .. }), "{error}");
    assert_names(&error, &truncated);
    assert!(reader.next_payload(100).unwrap().is_none());
    assert_eq!(reader.frames_read(), 749);

    // A header that promises 2 GB over 64 bytes of audio, read with no limit on frames.
    let mut lying = header(0x0001, 1, 16_000, 16, 2, 64);
    lying[40..44].copy_from_slice(&2_000_000_000u32.to_le_bytes());
    let lying_path = dir.path().join("lying.wav");
    std::fs::write(&lying_path, &lying).unwrap();
    let mut reader = WavChunkReader::open(&lying_path).unwrap();
    assert_eq!(reader.info().frames, 1_000_000_000);
    assert_eq!(reader.next_payload(usize::MAX).unwrap().map(|payload| payload.len()), Some(64));
    assert!(matches!(reader.next_payload(usize::MAX), Err(WavError::Truncated { frames_read: 32, .. })));
}

#[test]
fn non_finite_floats_are_refused_with_their_frame_after_the_good_frames() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bad) in [("nan.wav", f32::NAN), ("inf.wav", f32::INFINITY)] {
        let path = dir.path().join(name);
        let mut writer = hound::WavWriter::create(&path, spec(2, 32, true)).unwrap();
        for value in [0.1f32, 0.2, 0.3, 0.4, 0.5, bad, 0.7, 0.8] {
            writer.write_sample(value).unwrap();
        }
        writer.finalize().unwrap();
        let mut reader = WavChunkReader::open(&path).unwrap();
        let payload = reader.next_payload(10).unwrap().unwrap();
        assert_eq!(payload.len(), 2 * 2 * 4, "the two whole frames before the bad sample come first");
        let error = reader.next_payload(10).unwrap_err();
        assert!(matches!(error, WavError::NonFinite { frame: 2, .. }), "{error}");
        assert_names(&error, &path);
        assert!(reader.next_payload(10).unwrap().is_none());
    }
}

#[test]
fn each_bad_header_has_its_own_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let open_error = |path: &Path| {
        let error = WavChunkReader::open(path).err().expect("the file must be refused");
        assert_names(&error, path);
        error
    };

    let text = write("text.wav", b"path,machine_id\nnot audio at all\n");
    assert!(matches!(open_error(&text), WavError::NotWav { .. }));
    let tiny = write("tiny.wav", b"RIF");
    assert!(matches!(open_error(&tiny), WavError::NotWav { .. }));

    // IMA ADPCM as real encoders write it: 4 bits per sample, 256-byte blocks.
    let adpcm = write("adpcm.wav", &header(0x0011, 1, 16_000, 4, 256, 512));
    let error = open_error(&adpcm);
    assert!(matches!(error, WavError::Unsupported { .. }), "{error}");
    assert!(error.to_string().contains("0x0011"), "{error}");
    let ms_adpcm = write("ms-adpcm.wav", &header(0x0002, 1, 16_000, 16, 2, 64));
    assert!(matches!(open_error(&ms_adpcm), WavError::Unsupported { .. }));
    let double = write("f64.wav", &header(0x0003, 1, 16_000, 64, 8, 64));
    assert!(matches!(open_error(&double), WavError::Unsupported { .. }));

    let empty = dir.path().join("empty.wav");
    write_wav(&empty, spec(1, 16, false), 0);
    assert!(matches!(open_error(&empty), WavError::Empty { .. }));

    for rate in [0, 500, 1_000_000] {
        let path = write(&format!("rate-{rate}.wav"), &header(0x0001, 1, rate, 16, 2, 64));
        let error = open_error(&path);
        assert!(
            matches!(error, WavError::AbsurdSampleRate { sample_rate_hz, .. } if sample_rate_hz == rate),
            "{error}"
        );
    }

    let wide = dir.path().join("ten-channels.wav");
    write_wav(&wide, spec(10, 16, false), 10);
    assert!(matches!(open_error(&wide), WavError::TooManyChannels { channels: 10, .. }));

    let cut_header = dir.path().join("cut-header.wav");
    std::fs::write(&cut_header, &std::fs::read(&empty).unwrap()[..30]).unwrap();
    assert!(matches!(open_error(&cut_header), WavError::Malformed { .. }));

    assert!(matches!(open_error(&dir.path().join("missing.wav")), WavError::Unreadable { .. }));
    assert!(matches!(open_error(dir.path()), WavError::Unreadable { .. }));
}

#[test]
fn samples_in_wider_containers_are_read_through_hound_and_packed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("24-in-32.wav");
    let spec = hound::WavSpecEx { spec: spec(2, 24, false), bytes_per_sample: 4 };
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut writer = hound::WavWriter::new_with_spec_ex(file, spec).unwrap();
    for index in 0..2 * 300 {
        writer.write_sample(int_sample(index, 24)).unwrap();
    }
    writer.finalize().unwrap();
    let mut reader = WavChunkReader::open(&path).unwrap();
    assert_eq!(reader.info().sample_format, SampleFormat::S24le);
    let bytes = read_all(&mut reader, 64);
    let decoded: Vec<i32> = bytes.chunks_exact(3).map(|b| i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8).collect();
    let written: Vec<i32> = (0..2 * 300).map(|index| int_sample(index, 24)).collect();
    assert_eq!(decoded, written, "packed to 3 bytes a sample");
    // Truncated the same way, the per-sample path also keeps the whole frames and names the file.
    let whole = std::fs::read(&path).unwrap();
    std::fs::write(&path, &whole[..whole.len() - 4 * 2 * 100 - 2]).unwrap();
    let mut reader = WavChunkReader::open(&path).unwrap();
    let mut frames = 0;
    let error = loop {
        match reader.next_payload(64) {
            Ok(Some(payload)) => frames += payload.len() / 6,
            Ok(None) => panic!("a truncated file read to its end"),
            Err(error) => break error,
        }
    };
    assert_eq!(frames, 199);
    assert!(matches!(error, WavError::Truncated { frames_read: 199, frames_declared: 300, .. }), "{error}");
    assert_names(&error, &path);
}
