use super::*;
use std::f64::consts::TAU;

const RATE: f64 = 16_000.0;

fn spec(machine_type: &str, index: usize) -> SimulatedMachineSpec {
    let machine_id = MachineId::new(format!("{machine_type}-{index:02}")).unwrap();
    SimulatedMachineSpec::healthy(machine_id, MachineType::new(machine_type).unwrap(), 5)
}

fn faulty(machine_type: &str, fault: Fault, severity: f64, onset_s: f64) -> SimulatedMachineSpec {
    SimulatedMachineSpec { fault: Some((fault, onset_s)), fault_severity: severity, ..spec(machine_type, 1) }
}

fn render(spec: SimulatedMachineSpec, seconds: f64) -> Vec<f32> {
    let mut out = vec![0.0; (seconds * RATE) as usize];
    SimulatedMachine::new(spec).render(&mut out);
    out
}

/// Each sample's parts (machine, fault, background) over `seconds`.
fn parts(spec: SimulatedMachineSpec, seconds: f64) -> Vec<Parts> {
    let mut machine = SimulatedMachine::new(spec);
    (0..(seconds * RATE) as usize).map(|_| machine.next_parts()).collect()
}

fn power(samples: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = samples.fold((0.0, 0usize), |(sum, count), x| (sum + x * x, count + 1));
    sum / count.max(1) as f64
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// Power at one frequency over the whole signal (Goertzel).
fn power_at(samples: &[f32], freq_hz: f64) -> f64 {
    let coefficient = 2.0 * (TAU * freq_hz / RATE).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s0 = f64::from(x) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

/// Power in `low..high` Hz: Hann-windowed DFT frames of 2048, bins in the band summed (an
/// independent check of the calibration, which measures with IIR band filters).
fn band_power(samples: &[f64], low_hz: f64, high_hz: f64) -> f64 {
    const FRAME: usize = 2048;
    let window: Vec<f64> = (0..FRAME).map(|n| 0.5 - 0.5 * (TAU * n as f64 / FRAME as f64).cos()).collect();
    let bin_hz = RATE / FRAME as f64;
    let bins = (low_hz / bin_hz).ceil() as usize..=(high_hz / bin_hz).floor() as usize;
    let mut total = 0.0;
    for frame in samples.chunks_exact(FRAME) {
        for bin in bins.clone() {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, (&x, w)) in frame.iter().zip(&window).enumerate() {
                let angle = TAU * (bin * n) as f64 / FRAME as f64;
                re += x * w * angle.cos();
                im -= x * w * angle.sin();
            }
            total += re * re + im * im;
        }
    }
    total
}

#[test]
fn the_same_spec_gives_the_same_samples_however_the_render_is_split() {
    for machine_type in MACHINE_TYPES {
        let whole = render(spec(machine_type, 0), 1.0);
        let mut machine = SimulatedMachine::new(spec(machine_type, 0));
        let mut pieces = Vec::new();
        for size in [1, 63, 64, 65, 1_000, 4_807, 10_000] {
            let mut out = vec![0.0; size];
            machine.render(&mut out);
            pieces.extend(out);
        }
        assert!(pieces == whole, "{machine_type}: split renders differ");
        assert_eq!(render(spec(machine_type, 0), 1.0), whole, "{machine_type}: a second machine differs");
    }
}

#[test]
fn two_machines_of_one_type_sound_different_and_takes_of_one_machine_too() {
    let first = SimulatedMachine::new(spec("fan", 0));
    let second = SimulatedMachine::new(spec("fan", 1));
    assert_ne!(first.fundamental_hz(), second.fundamental_hz());
    let other_seed = SimulatedMachine::new(SimulatedMachineSpec { seed: 6, ..spec("fan", 0) });
    assert_ne!(first.fundamental_hz(), other_seed.fundamental_hz());
    // Another take of one machine: the same machine (same tone) on another random course.
    let take = SimulatedMachine::new(SimulatedMachineSpec { take: 3, ..spec("fan", 0) });
    assert_eq!(first.fundamental_hz(), take.fundamental_hz());
    assert_ne!(render(spec("fan", 0), 0.5), render(SimulatedMachineSpec { take: 3, ..spec("fan", 0) }, 0.5));
}

#[test]
fn a_faulty_machine_is_its_healthy_twin_until_the_onset() {
    let whine = Fault::BearingWhine { freq_hz: 3_000.0 };
    let healthy = render(spec("pump", 1), 1.0);
    let failing = render(faulty("pump", whine, 0.5, 0.5), 1.0);
    assert_eq!(healthy[..8_000], failing[..8_000]);
    assert_ne!(healthy[8_000..], failing[8_000..]);
    let clogged = render(faulty("pump", Fault::Clog, 0.5, 0.5), 1.0);
    assert_eq!(healthy[..8_000], clogged[..8_000]);
    assert_ne!(healthy[8_064..], clogged[8_064..]);
}

/// Level in dB of each octave band from 125 Hz to 4 kHz, the mean over bands removed: a shape.
fn octave_shape(samples: &[f32]) -> Vec<f64> {
    let levels: Vec<f64> = (0..6)
        .map(|octave| {
            let low = 125.0 * 2f64.powi(octave);
            db(dsp::BandFilter::sharp(low, 2.0 * low, RATE).power_of(samples))
        })
        .collect();
    let mean = levels.iter().sum::<f64>() / levels.len() as f64;
    levels.iter().map(|level| level - mean).collect()
}

#[test]
fn recorded_takes_differ_in_spectral_shape_and_the_live_take_is_heard_directly() {
    let shapes: Vec<Vec<f64>> =
        (1..=4).map(|take| octave_shape(&render(SimulatedMachineSpec { take, ..spec("pump", 1) }, 4.0))).collect();
    let live = [octave_shape(&render(spec("pump", 1), 4.0)), octave_shape(&render(spec("pump", 1), 4.0))];
    let rms = |a: &[f64], b: &[f64]| (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / 6.0).sqrt();
    let differences: Vec<f64> = shapes.windows(2).map(|pair| rms(&pair[0], &pair[1])).collect();
    assert!(differences.iter().all(|&d| d > 0.5), "recorded takes must differ in shape: {differences:?} dB");
    assert!(rms(&live[0], &live[1]) < 1e-9);
    // The live take's output is its parts summed: no path of its own.
    let mut machine = SimulatedMachine::new(spec("fan", 2));
    let mut twin = SimulatedMachine::new(spec("fan", 2));
    let mut rendered = vec![0.0f32; 4_000];
    machine.render(&mut rendered);
    for sample in rendered {
        let parts = twin.next_parts();
        let sum = (parts.machine + parts.fault + parts.background).clamp(-1.0, 1.0) as f32;
        assert_eq!(sample, sum);
    }
}

#[test]
fn an_intermittent_fault_sounds_in_episodes_with_the_power_of_a_continuous_one() {
    let whine = Fault::BearingWhine { freq_hz: 2_500.0 };
    let continuous = parts(faulty("fan", whine.clone(), 0.6, 0.0), 30.0);
    let intermittent = parts(SimulatedMachineSpec { fault_duty: 0.2, ..faulty("fan", whine, 0.6, 0.0) }, 30.0);
    let fault_power = |parts: &[Parts]| power(parts.iter().map(|part| part.fault));
    let ratio = db(fault_power(&intermittent) / fault_power(&continuous));
    assert!(ratio.abs() < 3.0, "an intermittent fault is as strong on average: {ratio:.1} dB");
    let windows: Vec<f64> = intermittent.chunks(800).map(fault_power).collect();
    let silent = windows.iter().filter(|&&p| p < 1e-3 * fault_power(&continuous)).count() as f64;
    let share = silent / windows.len() as f64;
    assert!((0.6..0.95).contains(&share), "silent in {share:.2} of 50 ms windows, duty 0.2");
    let loudest = windows.iter().cloned().fold(0.0, f64::max);
    assert!(db(loudest / fault_power(&continuous)) > 5.0, "episodes are louder than the continuous fault");
}

#[test]
fn a_reshaping_fault_changes_the_machine_sound_itself_and_none_leaves_it_alone() {
    let whine = Fault::BearingWhine { freq_hz: 2_500.0 };
    let healthy = parts(spec("valve", 1), 2.0);
    let pure = parts(faulty("valve", whine.clone(), 0.5, 0.0), 2.0);
    let reshaped = parts(SimulatedMachineSpec { fault_reshape_db: 4.0, ..faulty("valve", whine, 0.5, 0.0) }, 2.0);
    assert!(healthy.iter().zip(&pure).all(|(a, b)| a.machine == b.machine && a.background == b.background));
    assert!(healthy.iter().zip(&reshaped).all(|(a, b)| a.background == b.background));
    let changed = healthy.iter().zip(&reshaped).filter(|(a, b)| a.machine != b.machine).count();
    assert!(changed > healthy.len() / 2, "the reshaped machine sound must differ: {changed} samples");
}

#[test]
fn the_mix_has_the_requested_snr_for_every_type() {
    for machine_type in MACHINE_TYPES {
        // Long enough for the slow level wanders to average out.
        let mix = parts(SimulatedMachineSpec { snr_db: 0.0, ..spec(machine_type, 2) }, 180.0);
        let signal = power(mix.iter().map(|part| part.machine));
        let noise = power(mix.iter().map(|part| part.background));
        let measured = db(signal / noise);
        assert!(measured.abs() < 1.0, "{machine_type}: asked 0 dB, measured {measured:.2} dB");
        let rms = power(mix.iter().map(|part| part.machine + part.background)).sqrt();
        assert!((0.005..0.1).contains(&rms), "{machine_type}: mix RMS {rms}");
        // Other SNRs only change the gains: the same stretch shifts by exactly the difference.
        for snr_db in [-6.0, 6.0] {
            let other = parts(SimulatedMachineSpec { snr_db, ..spec(machine_type, 2) }, 10.0);
            let signal = power(other.iter().map(|part| part.machine));
            let noise = power(other.iter().map(|part| part.background));
            let nominal = parts(SimulatedMachineSpec { snr_db: 0.0, ..spec(machine_type, 2) }, 10.0);
            let reference =
                db(power(nominal.iter().map(|part| part.machine)) / power(nominal.iter().map(|part| part.background)));
            let shift = db(signal / noise) - reference;
            assert!((shift - snr_db).abs() < 0.01, "{machine_type}: {snr_db} dB moved the mix by {shift:.3} dB");
        }
    }
}

#[test]
fn a_bearing_whine_raises_its_own_frequency_and_nothing_else() {
    let whine = Fault::BearingWhine { freq_hz: 3_000.0 };
    let healthy = render(spec("fan", 1), 4.0);
    let failing = render(faulty("fan", whine, 0.5, 0.0), 4.0);
    let near = (2_990..=3_010).step_by(5).map(|f| power_at(&failing, f64::from(f)) / power_at(&healthy, f64::from(f)));
    let rise = near.fold(0.0, f64::max);
    assert!(rise > 10.0, "the whine raised 3 kHz only {:.1} dB", db(rise));
    let elsewhere = power_at(&failing, 700.0) / power_at(&healthy, 700.0);
    assert!((elsewhere - 1.0).abs() < 0.01, "the whine changed 700 Hz by {elsewhere}");
}

#[test]
fn at_severity_one_half_a_fault_sits_a_few_db_under_the_machine_in_its_band() {
    let cases = [
        ("fan", Fault::BearingWhine { freq_hz: 2_500.0 }),
        ("slider", Fault::Rub { low_hz: 1_000.0, high_hz: 1_500.0 }),
        ("valve", Fault::Leak { low_hz: 3_000.0, high_hz: 4_200.0 }),
        ("pump", Fault::Leak { low_hz: 2_600.0, high_hz: 3_640.0 }),
    ];
    for (machine_type, fault) in cases {
        let healthy = parts(spec(machine_type, 1), 8.0);
        let failing = SimulatedMachine::new(faulty(machine_type, fault.clone(), 0.5, 0.0));
        let band = calibration::reference_band(failing.fault_band_hz().unwrap(), RATE);
        let failing = parts(faulty(machine_type, fault.clone(), 0.5, 0.0), 8.0);
        let machine: Vec<f64> = healthy.iter().map(|part| part.machine).collect();
        let added: Vec<f64> = failing.iter().map(|part| part.fault).collect();
        let relative = db(band_power(&added, band.0, band.1) / band_power(&machine, band.0, band.1));
        assert!(
            (-10.0..=-3.0).contains(&relative),
            "{machine_type} {fault}: {relative:.1} dB relative to the machine in band"
        );
    }
}

#[test]
fn imbalance_modulates_at_the_rotation_rate_and_a_clog_lowers_the_pitch() {
    let healthy = SimulatedMachine::new(spec("fan", 1));
    let rotation_hz = healthy.rotation_hz();
    let (low, high) = SimulatedMachine::new(faulty("fan", Fault::Imbalance, 0.5, 0.0)).fault_band_hz().unwrap();
    assert!(low < rotation_hz && rotation_hz < high);
    let steady = render(spec("fan", 1), 4.0);
    let unbalanced = render(faulty("fan", Fault::Imbalance, 1.0, 0.0), 4.0);
    let rise = (-3..=3).map(|step| {
        let freq = rotation_hz + f64::from(step) * 0.5;
        power_at(&unbalanced, freq) / power_at(&steady, freq)
    });
    assert!(rise.fold(0.0, f64::max) > 4.0, "the rotation tone did not rise");

    let pump = SimulatedMachine::new(spec("pump", 1));
    let fourth = 4.0 * pump.rotation_hz();
    let normal = render(spec("pump", 1), 4.0);
    let clogged = render(faulty("pump", Fault::Clog, 1.0, 0.0), 4.0);
    let peak = |samples: &[f32]| {
        (0..200)
            .map(|step| fourth * (0.85 + 0.001 * f64::from(step)))
            .max_by(|a, b| power_at(samples, *a).total_cmp(&power_at(samples, *b)))
    };
    let (normal_peak, clogged_peak) = (peak(&normal).unwrap(), peak(&clogged).unwrap());
    assert!(clogged_peak < normal_peak * 0.97, "4th harmonic at {clogged_peak:.1} Hz, normally {normal_peak:.1} Hz");
}

#[test]
fn normal_sound_wanders_in_level_from_second_to_second() {
    for machine_type in MACHINE_TYPES {
        let samples = render(spec(machine_type, 3), 60.0);
        let levels: Vec<f64> =
            samples.chunks(16_000).map(|second| db(power(second.iter().map(|&x| f64::from(x))))).collect();
        let mean = levels.iter().sum::<f64>() / levels.len() as f64;
        let spread = (levels.iter().map(|level| (level - mean).powi(2)).sum::<f64>() / levels.len() as f64).sqrt();
        assert!((0.15..4.0).contains(&spread), "{machine_type}: per-second level spread {spread:.2} dB");
    }
}

#[test]
fn no_sample_reaches_full_scale_even_with_a_strong_fault_in_a_noisy_place() {
    for machine_type in MACHINE_TYPES {
        let fault = Fault::pick(machine_type, 11);
        let harsh = SimulatedMachineSpec { snr_db: -6.0, ..faulty(machine_type, fault, 1.0, 0.0) };
        let mut machine = SimulatedMachine::new(harsh);
        let mut out = vec![0.0; 20 * 16_000];
        machine.render(&mut out);
        assert_eq!(machine.clipped_samples(), 0, "{machine_type}");
        let peak = out.iter().fold(0.0f32, |peak, x| peak.max(x.abs()));
        assert!(peak < 0.9, "{machine_type}: peak {peak}");
    }
}

#[test]
fn chunks_are_16_bit_mono_with_running_sequence_and_capture_time() {
    let mut machine = SimulatedMachine::new(spec("valve", 0));
    let samples = render(spec("valve", 0), 1.5);
    let start = 1_795_000_000_000_000;
    let chunks: Vec<AudioChunk> = (0..3).map(|_| machine.next_chunk(8_000, start)).collect();
    assert_eq!(chunks.iter().map(|chunk| chunk.sequence).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(
        chunks.iter().map(|chunk| chunk.capture_start_us - start).collect::<Vec<_>>(),
        vec![0, 500_000, 1_000_000]
    );
    for (index, chunk) in chunks.iter().enumerate() {
        assert!(chunk.validate().is_ok());
        assert_eq!((chunk.channels, chunk.sample_format, chunk.frames()), (1, SampleFormat::S16le, 8_000));
        let expected: Vec<u8> =
            samples[index * 8_000..(index + 1) * 8_000].iter().flat_map(|&s| to_i16(s).to_le_bytes()).collect();
        assert_eq!(chunk.payload, expected);
    }
    assert_eq!(chunks[0].origin, ChunkOrigin::Simulator { seed: 5 });
}

#[test]
fn fleets_make_every_fourth_machine_faulty_and_rotate_types() {
    let machines = fleet(&FleetSpec::default());
    let ids: Vec<&str> = machines.iter().map(|machine| machine.machine_id.as_str()).collect();
    assert_eq!(ids, vec!["fan-00", "pump-01", "slider-02", "valve-03", "pump-04", "slider-05", "valve-06", "fan-07"]);
    let faulty: Vec<&str> = machines.iter().filter(|m| m.fault.is_some()).map(|m| m.machine_id.as_str()).collect();
    assert_eq!(faulty, vec!["valve-03", "fan-07"]);
    let other_seed = fleet(&FleetSpec { seed: 2, ..FleetSpec::default() });
    let faults = |fleet: &[SimulatedMachineSpec]| fleet.iter().filter_map(|m| m.fault.clone()).collect::<Vec<_>>();
    assert_ne!(faults(&machines), faults(&other_seed), "fault kinds and bands vary with the seed");
    assert!(fleet(&FleetSpec { faulty_every: 0, ..FleetSpec::default() }).iter().all(|m| m.fault.is_none()));
}

#[test]
fn out_of_range_numbers_in_a_spec_are_brought_into_range() {
    let wild = SimulatedMachineSpec {
        sample_rate_hz: 10,
        snr_db: f64::NAN,
        fault_severity: 7.0,
        fault_duty: -1.0,
        fault_reshape_db: f64::INFINITY,
        fault: Some((Fault::Leak { low_hz: 5_000.0, high_hz: 7_000.0 }, -3.0)),
        ..spec("valve", 0)
    };
    let mut machine = SimulatedMachine::new(wild);
    assert_eq!(machine.spec().sample_rate_hz, MIN_SAMPLE_RATE_HZ);
    assert_eq!(machine.spec().snr_db, DEFAULT_SNR_DB);
    assert_eq!(machine.spec().fault_severity, 1.0);
    assert_eq!((machine.spec().fault_duty, machine.spec().fault_reshape_db), (DUTY_FLOOR, 0.0));
    let (_, high) = machine.fault_band_hz().unwrap();
    assert!(high <= 450.0, "the band moved under Nyquist: {high}");
    let mut out = vec![0.0; 2_000];
    machine.render(&mut out);
    assert!(out.iter().all(|x| x.is_finite() && x.abs() < 1.0));
}
