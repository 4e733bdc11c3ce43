//! `auscult agent` against a real Kafka-protocol broker (tansu over TCP): what arrives on the
//! audio topic is what the pipeline's chunk format says, keyed and ordered per machine.

mod common;

use auscult_schemas::{AudioChunk, ChunkOrigin, SampleFormat};
use common::broker::Broker;
use common::{auscult, run_ok};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const TOPIC: &str = "auscult.audio";

#[test]
fn simulated_machines_arrive_keyed_ordered_and_decodable() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4);
    let output = run_ok(auscult().args([
        "agent",
        "--brokers",
        &broker.address,
        "--simulate",
        "3",
        "--duration",
        "5.5",
        "--speed",
        "0",
        "--start-time",
        "2026-01-01T00:00:00Z",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("18 chunks sent, 18 delivered, 0 failed, 0 dropped"), "{stderr}");

    let messages = broker.consume(TOPIC, 18, Duration::from_secs(60));
    assert_eq!(messages.len(), 18, "broker log: {}", broker.log_path().display());
    let mut per_machine: BTreeMap<String, Vec<AudioChunk>> = BTreeMap::new();
    let mut partitions: BTreeMap<String, i32> = BTreeMap::new();
    for message in &messages {
        let chunk = AudioChunk::decode(&message.value, ChunkOrigin::File { path: "kafka".to_owned() })
            .expect("the value is a chunk");
        assert_eq!(message.key, chunk.machine_id.as_str());
        assert_eq!(message.header("auscult-schema"), Some("auscult.audio-chunk/1"));
        assert_eq!(message.header("machine-type"), Some(chunk.machine_type.as_str()));
        assert_eq!(message.header("sequence"), Some(chunk.sequence.to_string().as_str()));
        // One machine, one partition: its order is the partition's order.
        assert_eq!(*partitions.entry(message.key.clone()).or_insert(message.partition), message.partition);
        per_machine.entry(message.key.clone()).or_default().push(chunk);
    }
    assert_eq!(per_machine.len(), 3);
    for (machine, chunks) in &per_machine {
        let sequences: Vec<u64> = chunks.iter().map(|chunk| chunk.sequence).collect();
        assert_eq!(sequences, (0..6).collect::<Vec<_>>(), "{machine}");
        let frames: usize = chunks.iter().map(|chunk| chunk.frames()).sum();
        assert_eq!(frames, 88_000, "{machine}: 5.5 s at 16 kHz");
        assert_eq!(chunks[1].capture_start_us - chunks[0].capture_start_us, 1_000_000);
        assert_eq!(chunks[0].capture_start_us, 1_767_225_600_000_000, "2026-01-01T00:00:00Z");
    }
}

#[test]
fn raw_pcm_on_stdin_becomes_chunks_of_the_named_machine() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4);
    let mut child = auscult()
        .args(["agent", "--brokers", &broker.address, "--stdin", "--machine-id", "fan-07", "--machine-type", "fan"])
        .args(["--rate", "16000", "--channels", "2", "--format", "s16le", "--speed", "0"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the agent starts");
    // 2.5 s of stereo 16-bit audio, plus one stray byte that makes no whole frame.
    let samples: Vec<u8> = (0..40_000 * 2).flat_map(|i: i32| ((i % 2000) as i16 - 1000).to_le_bytes()).collect();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&samples).unwrap();
    stdin.write_all(&[7]).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let messages = broker.consume(TOPIC, 3, Duration::from_secs(60));
    let chunks: Vec<AudioChunk> = messages
        .iter()
        .map(|message| AudioChunk::decode(&message.value, ChunkOrigin::File { path: "kafka".to_owned() }).unwrap())
        .collect();
    assert_eq!(chunks.iter().map(|chunk| chunk.frames()).collect::<Vec<_>>(), vec![16_000, 16_000, 8_000]);
    assert!(chunks.iter().all(|chunk| chunk.machine_id.as_str() == "fan-07"
        && chunk.channels == 2
        && chunk.sample_format == SampleFormat::S16le));
    let payload: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.payload.clone()).collect();
    assert_eq!(payload, samples, "the audio arrives byte for byte");
}

#[test]
fn an_unreachable_broker_is_reported_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auscult.toml");
    std::fs::write(&config, "[kafka]\nagent_delivery_timeout_s = 3\n").unwrap();
    let output = auscult()
        .arg("--config")
        .arg(&config)
        .args(["agent", "--brokers", "127.0.0.1:1", "--simulate", "1", "--duration", "2", "--speed", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // Given up at exit: failed, or handed over again and still unacknowledged.
    assert!(stderr.contains("2 chunk(s) not delivered: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// When the broker goes away in a run of the agent.
enum Outage {
    /// Killed 3 s into sending, restarted this much later.
    MidStream(Duration),
    /// Killed before the agent starts, restarted this much later.
    AtStart(Duration),
}

/// One simulated machine, 20 s of audio at 2x real time (10 s of sending), through a broker
/// that crashes (`outage`), with `config` (TOML) for the agent. Returns the agent's stderr (it
/// must succeed) and the sorted sequence numbers the topic holds.
fn agent_through_a_broker_crash(config: &str, outage: Outage) -> (String, Vec<u64>) {
    let mut broker = Broker::start_persistent();
    broker.create_topic(TOPIC, 4);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    if matches!(outage, Outage::AtStart(_)) {
        broker.crash();
    }
    let agent = auscult()
        .arg("--config")
        .arg(&config_path)
        .args(["agent", "--brokers", &broker.address, "--simulate", "1", "--duration", "20", "--speed", "2"])
        .args(["--start-time", "2026-01-01T00:00:00Z"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the agent starts");
    match outage {
        Outage::MidStream(down_for) => {
            std::thread::sleep(Duration::from_secs(3));
            broker.crash_and_restart(down_for);
        }
        Outage::AtStart(down_for) => {
            std::thread::sleep(down_for);
            broker.restart();
        }
    }
    let output = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let mut sequences: Vec<u64> = broker
        .consume(TOPIC, 20, Duration::from_secs(60))
        .iter()
        .map(|message| AudioChunk::decode(&message.value, ChunkOrigin::File { path: "kafka".to_owned() }).unwrap())
        .map(|chunk| chunk.sequence)
        .collect();
    sequences.sort_unstable();
    (stderr, sequences)
}

#[test]
fn the_agent_rides_out_a_broker_crash_and_restart() {
    // Down for 4 s, well within librdkafka's own retries (300 s by default).
    let (stderr, sequences) = agent_through_a_broker_crash("", Outage::MidStream(Duration::from_secs(4)));
    assert!(stderr.contains("20 chunks sent, 20 delivered, 0 failed, 0 dropped"), "{stderr}");
    assert_eq!(sequences, (0..20).collect::<Vec<_>>(), "every chunk exactly once");
}

/// A broker away for longer than the delivery timeout: librdkafka gives the chunks up, and
/// the agent keeps them and sends them again once the broker is back. Every chunk arrives
/// (a resend of one that had been stored is a repeat, which the pipeline drops). The broker is
/// away from the start; `tests/kafka_outage.rs` takes it away mid-stream for 30 s.
#[test]
fn chunks_whose_delivery_failed_are_sent_again_until_delivered() {
    let (stderr, mut sequences) = agent_through_a_broker_crash(
        "[kafka]\nagent_delivery_timeout_s = 3\n",
        Outage::AtStart(Duration::from_secs(8)),
    );
    assert!(stderr.contains("20 chunks sent, 20 delivered, 0 failed, 0 dropped"), "{stderr}");
    assert!(stderr.contains("sent again after a failed delivery"), "the broker was away past the timeout: {stderr}");
    sequences.dedup();
    assert_eq!(sequences, (0..20).collect::<Vec<_>>(), "every chunk arrived");
}

#[test]
fn the_agent_flushes_and_reports_on_sigint() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4);
    let agent = auscult()
        .args(["agent", "--brokers", &broker.address, "--simulate", "1", "--duration", "60", "--speed", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the agent starts");
    std::thread::sleep(Duration::from_secs(3));
    let interrupted = std::process::Command::new("kill").args(["-INT", &agent.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let output = agent.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("stopping on a signal"), "{stderr}");
    let sent: usize = stderr
        .lines()
        .find_map(|line| line.strip_prefix("auscult agent: ")?.split(" chunks sent").next()?.parse().ok())
        .unwrap_or_else(|| panic!("no report in {stderr}"));
    assert!((2..=6).contains(&sent), "{sent} chunks in about 3 s of real time: {stderr}");
    assert!(stderr.contains(&format!("{sent} chunks sent, {sent} delivered, 0 failed")), "{stderr}");
    assert_eq!(broker.consume(TOPIC, sent, Duration::from_secs(30)).len(), sent);
}

#[test]
fn wav_files_are_replayed_as_their_machine() {
    let broker = Broker::start();
    broker.create_topic(TOPIC, 4);
    let corpus = tempfile::tempdir().unwrap();
    let normal = corpus.path().join("fan/id_00/normal");
    std::fs::create_dir_all(&normal).unwrap();
    for name in ["00000000.wav", "00000001.wav"] {
        std::fs::copy(common::mimii().join("fan/id_00/normal").join(name), normal.join(name)).unwrap();
    }
    let output =
        run_ok(auscult().args(["agent", "--brokers", &broker.address, "--speed", "0", "--input"]).arg(corpus.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("20 chunks sent, 20 delivered"), "{stderr}");
    let messages = broker.consume(TOPIC, 20, Duration::from_secs(30));
    assert_eq!(messages.len(), 20);
    assert!(messages.iter().all(|message| message.key == "fan-id_00"));
    let frames: usize = messages
        .iter()
        .map(|message| AudioChunk::decode(&message.value, ChunkOrigin::File { path: "kafka".to_owned() }).unwrap())
        .map(|chunk| chunk.frames())
        .sum();
    assert_eq!(frames, 2 * 160_000, "two 10 s clips at 16 kHz");
}
