//! Gains: the machine's, the background's (from the requested SNR) and a fault's (from its
//! severity), all measured, once per machine, on a reserved calibration take.
//!
//! Promises:
//! - the SNR is machine power over background power at the machine's nominal level (its level
//!   wander averages out to it), as MIMII defines its -6/0/6 dB mixes;
//! - the gains are fixed per machine (not per clip or take), so a louder anomalous clip stays
//!   louder; the mix is about [`MIX_RMS`] and is turned down, once, if its peak would pass
//!   [`PEAK_LIMIT`], leaving headroom for faults;
//! - a fault's additive sound, in its reference band (its band widened to at least a third of
//!   an octave, about a mel band or two), has `FAULT_DB_AT_ZERO + FAULT_DB_SPAN * severity` dB
//!   of the machine's own power in that band: -9 dB at severity 0.3, -5 dB at 0.5, +4 dB at 1.
//!   Audible, never trivially loud; where the machine has almost no energy the reference is
//!   floored at [`IN_BAND_FLOOR`] of a flat spectrum of the machine's power.

use super::dsp::{playable_hz, BandFilter};
use super::fault::FaultVoice;
use super::random::Rng;
use super::streams::{Streams, BLOCK};
use super::voice::BlockContext;
use std::sync::Arc;

/// Seconds rendered to measure powers (more for a slow cycle: whole cycles are measured).
pub(crate) const CALIBRATION_S: f64 = 12.0;
/// The take reserved for calibration; live streams use take 0, corpus clips 1 and up.
pub(crate) const CALIBRATION_TAKE: u64 = u64::MAX;
/// RMS of a machine's mix (machine and background) in the output; full scale is 1.
pub(crate) const MIX_RMS: f64 = 0.05;
/// Highest peak of a machine's normal mix during calibration; gains are lowered to keep it.
pub(crate) const PEAK_LIMIT: f64 = 0.3;
/// A fault's in-band level relative to the machine's at severity 0, dB.
pub(crate) const FAULT_DB_AT_ZERO: f64 = -14.0;
/// How many dB the fault rises from severity 0 to severity 1.
pub(crate) const FAULT_DB_SPAN: f64 = 18.0;
/// The narrowest reference band, octaves.
pub(crate) const REFERENCE_MIN_OCTAVES: f64 = 1.0 / 3.0;
/// A fault's sound is measured over this many passes of the reference (bursty faults need more).
pub(crate) const FAULT_PROBE_PASSES: usize = 2;
/// The machine's in-band power is taken as at least this share of a flat spectrum's.
pub(crate) const IN_BAND_FLOOR: f64 = 0.1;

/// What calibration measured for one machine.
#[derive(Clone)]
pub(crate) struct Calibration {
    pub(crate) machine_gain: f64,
    pub(crate) background_gain: f64,
    /// The machine's raw sound on the calibration take, to measure power in any band.
    reference: Arc<Vec<f32>>,
    /// The machine's activity along the reference (what a fault's sound follows).
    activity: Arc<Vec<f32>>,
    machine_power: f64,
    rate_hz: f64,
}

/// Frames to measure: at least [`CALIBRATION_S`], in whole cycles for a cyclic machine.
fn calibration_frames(cycle_s: Option<f64>, rate_hz: f64) -> usize {
    let seconds = match cycle_s {
        Some(cycle) if cycle > 0.0 => (CALIBRATION_S / cycle).ceil() * cycle,
        _ => CALIBRATION_S,
    };
    (seconds * rate_hz) as usize
}

fn mean_power(signal: &[f32]) -> f64 {
    signal.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / signal.len().max(1) as f64
}

/// Measures a machine's normal sound and sets its gains for `snr_db`.
pub(crate) fn calibrate(streams: Streams, snr_db: f64, rate_hz: f64) -> Calibration {
    let mut streams = streams.hold_levels();
    let frames = calibration_frames(streams.voice.cycle_s(), rate_hz);
    let (mut machine, mut background) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    let mut activity = Vec::with_capacity(frames);
    let normal = BlockContext::default();
    for index in 0..frames as u64 {
        if index.is_multiple_of(BLOCK) {
            streams.block(&normal);
        }
        let (m, b) = streams.sample();
        machine.push(m as f32);
        background.push(b as f32);
        activity.push(streams.activity() as f32);
    }
    let (machine_power, background_power) = (mean_power(&machine), mean_power(&background));
    let snr = 10f64.powf(snr_db / 10.0);
    let mix_power = MIX_RMS * MIX_RMS;
    let mut machine_gain = (mix_power * snr / (1.0 + snr) / machine_power.max(f64::MIN_POSITIVE)).sqrt();
    let mut background_gain = (mix_power / (1.0 + snr) / background_power.max(f64::MIN_POSITIVE)).sqrt();
    let peak = machine
        .iter()
        .zip(&background)
        .map(|(&m, &b)| (machine_gain * f64::from(m) + background_gain * f64::from(b)).abs())
        .fold(0.0, f64::max);
    if peak > PEAK_LIMIT {
        machine_gain *= PEAK_LIMIT / peak;
        background_gain *= PEAK_LIMIT / peak;
    }
    Calibration {
        machine_gain,
        background_gain,
        reference: Arc::new(machine),
        activity: Arc::new(activity),
        machine_power,
        rate_hz,
    }
}

/// The band a fault's level is measured in: its own, widened to at least a third of an octave.
pub(crate) fn reference_band(band_hz: (f64, f64), rate_hz: f64) -> (f64, f64) {
    let (low, high) = band_hz;
    let centre = (low * high).sqrt();
    let half_width = 2f64.powf(REFERENCE_MIN_OCTAVES / 2.0);
    (playable_hz(low.min(centre / half_width), rate_hz), playable_hz(high.max(centre * half_width), rate_hz))
}

/// The fault's in-band level relative to the machine's, dB, at `severity`.
pub(crate) fn fault_db(severity: f64) -> f64 {
    FAULT_DB_AT_ZERO + FAULT_DB_SPAN * severity
}

impl Calibration {
    /// The machine's raw power in a band, floored (see the module's promises).
    pub(crate) fn machine_power_in(&self, band_hz: (f64, f64)) -> f64 {
        let filter = BandFilter::sharp(band_hz.0, band_hz.1, self.rate_hz);
        let flat_share = (band_hz.1 - band_hz.0) / (self.rate_hz / 2.0);
        filter.power_of(&self.reference).max(IN_BAND_FLOOR * flat_share * self.machine_power)
    }

    /// The level (in the machine's raw units) that puts `fault`'s additive sound at its
    /// severity's dB relative to the machine in the reference band.
    pub(crate) fn fault_level(&self, fault: &FaultVoice, severity: f64, probe_rng: &mut Rng) -> f64 {
        if !fault.has_additive_part() {
            return 0.0;
        }
        let band = reference_band(fault.band_hz(), self.rate_hz);
        let mut probe = fault.clone();
        probe.set_level(1.0);
        let sound: Vec<f32> = (0u64..)
            .zip(self.activity.iter().cycle().take(FAULT_PROBE_PASSES * self.activity.len()))
            .map(|(index, &activity)| {
                if index.is_multiple_of(BLOCK) {
                    probe.block(1.0, probe_rng);
                }
                probe.sample(f64::from(activity), probe_rng).0 as f32
            })
            .collect();
        let fault_power = BandFilter::sharp(band.0, band.1, self.rate_hz).power_of(&sound);
        if fault_power <= 0.0 {
            return 0.0;
        }
        (self.machine_power_in(band) * 10f64.powf(fault_db(severity) / 10.0) / fault_power).sqrt()
    }
}
