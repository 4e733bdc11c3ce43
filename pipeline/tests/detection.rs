//! Detection behaviour of one machine's monitor on simulated audio: faults are explained by
//! the band they live in, and guarded adaptation follows slow drift without going blind to a
//! sudden change of the same size.

use auscult_connectors::simulator::{Fault, SimulatedMachine, SimulatedMachineSpec};
use auscult_pipeline::config::Config;
use auscult_pipeline::model::{MachineMonitor, MonitorOutput};
use auscult_schemas::{AnomalyEvent, AudioChunk, ChunkOrigin, EventKind, MachineId, MachineType, SampleFormat};

const RATE_HZ: u32 = 16_000;

/// Feeds `seconds` of audio in 1 s chunks; `extra(t, samples)` may add a sound to each chunk
/// (t: the chunk's start, s). Returns every event and the number of windows scored.
fn stream(
    spec: SimulatedMachineSpec,
    config: &Config,
    seconds: usize,
    mut extra: impl FnMut(f64, &mut [f32]),
) -> (Vec<AnomalyEvent>, MachineMonitor) {
    let mut machine = SimulatedMachine::new(spec.clone());
    let mut monitor = MachineMonitor::new(spec.machine_id.clone(), spec.machine_type.clone(), config);
    let mut out = MonitorOutput::default();
    let mut samples = vec![0.0f32; RATE_HZ as usize];
    for second in 0..seconds {
        machine.render(&mut samples);
        extra(second as f64, &mut samples);
        let chunk = AudioChunk {
            machine_id: spec.machine_id.clone(),
            machine_type: spec.machine_type.clone(),
            sequence: second as u64,
            capture_start_us: second as i64 * 1_000_000,
            sample_rate_hz: RATE_HZ,
            channels: 1,
            sample_format: SampleFormat::F32le,
            payload: samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            origin: ChunkOrigin::Simulator { seed: spec.seed },
        };
        monitor.accept(&chunk, &mut out).expect("simulated audio is valid");
        out.windows.clear();
    }
    (out.events, monitor)
}

fn spec(machine_type: &str, id: &str, seed: u64) -> SimulatedMachineSpec {
    let mut spec =
        SimulatedMachineSpec::healthy(MachineId::new(id).unwrap(), MachineType::new(machine_type).unwrap(), seed);
    spec.snr_db = 0.0;
    spec
}

fn opened(events: &[AnomalyEvent]) -> Vec<&AnomalyEvent> {
    events.iter().filter(|event| event.kind == EventKind::Opened).collect()
}

/// Seconds since the stream began at which an event's window started.
fn start_s(event: &AnomalyEvent) -> f64 {
    let micros = auscult_schemas::time::parse_rfc3339(&event.window_start).expect("RFC 3339");
    micros as f64 / 1e6
}

#[test]
fn an_injected_fault_is_explained_by_the_band_it_lives_in() {
    let config = Config::default();
    let onset_s = config.model.learning_s + 100.0;
    let faults = [
        ("fan", Fault::BearingWhine { freq_hz: 3_000.0 }),
        ("pump", Fault::Leak { low_hz: 3_500.0, high_hz: 4_900.0 }),
        ("slider", Fault::Rub { low_hz: 1_000.0, high_hz: 1_500.0 }),
    ];
    for (index, (machine_type, fault)) in faults.into_iter().enumerate() {
        let mut spec = spec(machine_type, &format!("{machine_type}-{index}"), 40 + index as u64);
        spec.fault = Some((fault.clone(), onset_s));
        spec.fault_severity = 1.0;
        let band = SimulatedMachine::new(spec.clone()).fault_band_hz().expect("a fault was set");
        let (events, _) = stream(spec, &config, onset_s as usize + 60, |_, _| {});
        let alerts = opened(&events);
        let first = alerts.first().unwrap_or_else(|| panic!("{fault:?}: no alert in {events:?}"));
        assert!(start_s(first) >= onset_s - 3.0, "{fault:?}: alert before the fault began: {first:?}");
        let top = &first.top_bands[0];
        assert!(
            top.high_hz >= band.0 * 0.9 && top.low_hz <= band.1 * 1.1,
            "{fault:?} lives in {band:?} Hz but the alert names {:?}",
            first.top_bands
        );
        assert!(top.deviation_sd > 3.0, "{fault:?}: the top band deviates only {} sd", top.deviation_sd);
    }
}

/// A steady tone of `level_db` relative to full scale, added in place.
fn add_tone(samples: &mut [f32], start_s: f64, freq_hz: f64, level_db: f64) {
    let amplitude = 10f64.powf(level_db / 20.0) * std::f64::consts::SQRT_2;
    for (index, sample) in samples.iter_mut().enumerate() {
        let t = start_s + index as f64 / f64::from(RATE_HZ);
        *sample += (amplitude * (std::f64::consts::TAU * freq_hz * t).sin()) as f32;
    }
}

#[test]
fn slow_drift_is_followed_while_a_sudden_change_of_the_same_size_alerts() {
    let mut config = Config::default();
    // A short memory so that an hour of drift is many memories long.
    config.model.adapt_span_windows = 30.0;
    // Warnings as rare as alarms: at the default rate (1 false warning in 1,000 windows, about
    // one an hour) an hour of healthy audio may rightly warn once, and this test is about drift.
    config.model.false_alarm_rate = config.model.alarm_false_alarm_rate;
    let (learning_s, drift_s) = (config.model.learning_s, 3_600.0);
    let total_s = (learning_s + drift_s) as usize + 180;
    let tone_hz = 2_500.0;
    let (quiet_db, final_db) = (-90.0, -30.0);
    let level_at = |t: f64| quiet_db + (final_db - quiet_db) * ((t - learning_s) / drift_s).clamp(0.0, 1.0);

    let (drift_events, drifted) =
        stream(spec("fan", "drift-1", 7), &config, total_s, |t, samples| add_tone(samples, t, tone_hz, level_at(t)));
    assert!(opened(&drift_events).is_empty(), "slow drift alerted: {drift_events:?}");
    assert!(
        drifted.stats().windows_adapted > drifted.stats().windows_scored / 2,
        "adaptation was mostly refused: {:?}",
        drifted.stats()
    );

    // The drift is not too small to matter: without adaptation the same audio alerts.
    let mut frozen = config.clone();
    frozen.model.adapt = false;
    let (frozen_events, _) =
        stream(spec("fan", "drift-1", 7), &frozen, total_s, |t, samples| add_tone(samples, t, tone_hz, level_at(t)));
    assert!(!opened(&frozen_events).is_empty(), "the drift alerts nothing even without adaptation");

    let sudden_at = learning_s + 600.0;
    let (sudden_events, _) = stream(spec("fan", "drift-1", 7), &config, sudden_at as usize + 120, |t, samples| {
        if t >= sudden_at {
            add_tone(samples, t, tone_hz, final_db)
        }
    });
    let alerts = opened(&sudden_events);
    let first = alerts.first().unwrap_or_else(|| panic!("the sudden change did not alert"));
    assert!(
        (sudden_at - 3.0..sudden_at + 15.0).contains(&start_s(first)),
        "alert at {} s for a change at {sudden_at} s",
        start_s(first)
    );
    let top = &first.top_bands[0];
    assert!(top.low_hz <= tone_hz * 1.05 && top.high_hz >= tone_hz * 0.95, "{:?}", first.top_bands);
}
