//! Fuzz target for the WAV reader, `WavChunkReader` (issue 10). It reads by path, so each input
//! is written to one scratch file and read to the end: a damaged or lying file must give a
//! `WavError`, never a panic, a hang or an allocation the file's size does not justify (see
//! `CappedAlloc`), and the payloads must keep the documented contract (whole frames, no more
//! than asked or declared, nothing after an error).

use auscult_connectors::wav::WavChunkReader;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: auscult_fuzz::CappedAlloc = auscult_fuzz::CappedAlloc;

/// Frames asked for per call, in turn: a large read, single frames, an odd size.
const MAX_FRAMES: [usize; 3] = [4096, 1, 333];

fn scratch_path() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() { shm } else { std::env::temp_dir() };
    dir.join(format!("auscult-fuzz-wav-{}.wav", std::process::id()))
}

fn main() {
    let path = scratch_path();
    afl::fuzz!(|data: &[u8]| {
        std::fs::write(&path, data).expect("the scratch file can be written");
        let Ok(mut reader) = WavChunkReader::open(&path) else {
            return;
        };
        let info = reader.info();
        assert!(info.frames > 0 && (1..=8).contains(&info.channels), "open accepted {info:?}");
        let frame_bytes = info.sample_format.bytes_per_sample() * usize::from(info.channels);
        let mut frames = 0u64;
        let mut calls = 0u64;
        let mut failed = false;
        loop {
            let max_frames = MAX_FRAMES[calls as usize % MAX_FRAMES.len()];
            calls += 1;
            assert!(calls <= info.frames + 3, "next_payload does not end: {calls} calls for {} frames", info.frames);
            match reader.next_payload(max_frames) {
                Ok(Some(payload)) => {
                    assert!(!failed, "a payload after an error");
                    assert!(!payload.is_empty(), "an empty payload instead of Ok(None)");
                    assert_eq!(payload.len() % frame_bytes, 0, "a payload of partial frames");
                    assert!(payload.len() <= max_frames * frame_bytes, "more frames than asked for");
                    frames += (payload.len() / frame_bytes) as u64;
                    assert!(frames <= info.frames, "more frames than the header declares");
                    assert_eq!(reader.frames_read(), frames, "frames_read disagrees with the payloads");
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(!failed, "a second error after the first: {error}");
                    failed = true;
                }
            }
        }
    });
    let _ = std::fs::remove_file(&path);
}
