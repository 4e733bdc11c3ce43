//! How one recorded take of a machine differs from the next: its own path to the microphone.
//!
//! Real recordings of one machine differ from take to take in spectral shape nearly as much as
//! frames differ within a take: on the real MIMII clips a band's clip mean moves by about 2.8 dB
//! from take to take, and a held-out take's offset, measured against the other takes' frame
//! covariance, is as large along the directions frames rarely move in as along the common ones
//! (`bench/corpus_stats.py`). A simulator whose takes differ only in loudness lets any model of
//! the frames' covariance flag every change of spectral shape as a fault, which real takes would
//! not allow. Two things make takes differ in a factory, and a recorded take gets both:
//!
//! - the microphone and the room: a direct path and early reflections whose pattern changes
//!   whenever anything near the machine moves, so each take hears its own comb of fine peaks
//!   and notches ([`Reflections`]);
//! - what the machine and the factory are doing: load, wear, the mix of other machines running.
//!   Each colours the machine's sound and the background's broadly, each its own way
//!   ([`Colour`]).
//!
//! The live take and the calibration take hear the machine directly: a live stream's normal
//! sound stays stationary, and gains are measured on the machine itself. Every path keeps the
//! power of white noise on average, so the SNR and a fault's level stay what calibration set.

use super::dsp::{db_to_gain, Biquad, MAX_FREQ_RATIO};
use super::random::Rng;

/// Peaking sections of a take's colouring, log-spaced over the audible band.
const COLOUR_SECTIONS: usize = 10;
/// Lowest centre of a colouring section, Hz.
const COLOUR_LOW_HZ: f64 = 150.0;
/// A section's centre moves by up to this many octaves either way from its place.
const COLOUR_JITTER_OCTAVES: f64 = 0.25;
/// A section's quality (about two-thirds of an octave wide at half its gain in dB).
const COLOUR_Q: f64 = 2.0;
/// Spread of each section's gain, dB, for the machine's sound and for the background's.
const COLOUR_DB: f64 = 3.0;
/// A fault's level change is drawn normal and kept within this many of its spreads.
const RESHAPE_LEVEL_LIMIT: f64 = 1.5;
/// Early reflections a take's room adds to the direct path.
const REFLECTIONS: usize = 48;
/// Earliest and latest reflection, s (a machine a metre or so from walls, floor and fixtures).
const REFLECTION_DELAY_S: (f64, f64) = (0.0005, 0.04);
/// How fast reflections fade with their delay: amplitude falls by e in this time, s.
const REFLECTION_DECAY_S: f64 = 0.015;
/// Direct-to-reflected energy of a take, dB, drawn uniformly from this range.
const DIRECT_TO_REFLECTED_DB: (f64, f64) = (3.0, 12.0);

/// A broad colouring: a cascade of peaking filters with random gains, and an overall gain.
pub(crate) struct Colour {
    sections: Vec<Biquad>,
    gain: f64,
}

impl Colour {
    /// A take's colouring: sections of [`COLOUR_DB`] spread, no overall gain.
    fn new(rate_hz: f64, rng: &mut Rng) -> Self {
        Self::with_spread(rate_hz, COLOUR_DB, rng)
    }

    /// What a fault does to how the machine runs: its sound `spread_db` louder or quieter (a
    /// normal draw) and reshaped by sections of that spread.
    pub(crate) fn reshaping(rate_hz: f64, spread_db: f64, rng: &mut Rng) -> Self {
        let gain = db_to_gain(spread_db * rng.normal().clamp(-RESHAPE_LEVEL_LIMIT, RESHAPE_LEVEL_LIMIT));
        Self { gain, ..Self::with_spread(rate_hz, spread_db, rng) }
    }

    fn with_spread(rate_hz: f64, spread_db: f64, rng: &mut Rng) -> Self {
        let top_hz = 0.9 * MAX_FREQ_RATIO * rate_hz;
        let octaves = (top_hz / COLOUR_LOW_HZ).log2();
        let sections = (0..COLOUR_SECTIONS)
            .map(|index| {
                let place = octaves * (index as f64 + 0.5) / COLOUR_SECTIONS as f64;
                let octave = place + rng.range(-COLOUR_JITTER_OCTAVES, COLOUR_JITTER_OCTAVES);
                Biquad::peaking(COLOUR_LOW_HZ * octave.exp2(), COLOUR_Q, spread_db * rng.normal(), rate_hz)
            })
            .collect();
        Self { sections, gain: 1.0 }
    }

    #[inline]
    pub(crate) fn process(&mut self, x: f64) -> f64 {
        self.gain * self.sections.iter_mut().fold(x, |signal, section| section.process(signal))
    }
}

/// A direct path and early reflections: a sparse FIR filter of unit energy.
pub(crate) struct Reflections {
    /// (delay in samples, amplitude); the direct path is delay 0.
    taps: Vec<(usize, f64)>,
    history: Vec<f64>,
    at: usize,
}

impl Reflections {
    fn new(rate_hz: f64, rng: &mut Rng) -> Self {
        let mut reflected: Vec<(usize, f64)> = (0..REFLECTIONS)
            .map(|_| {
                let delay_s = rng.range(REFLECTION_DELAY_S.0, REFLECTION_DELAY_S.1);
                let delay = ((delay_s * rate_hz).round() as usize).max(1);
                (delay, rng.normal() * (-delay_s / REFLECTION_DECAY_S).exp())
            })
            .collect();
        let reflected_energy: f64 = reflected.iter().map(|(_, amplitude)| amplitude * amplitude).sum();
        let wanted = 10f64.powf(-rng.range(DIRECT_TO_REFLECTED_DB.0, DIRECT_TO_REFLECTED_DB.1) / 10.0);
        let scale = (wanted / reflected_energy.max(f64::MIN_POSITIVE)).sqrt();
        let total = (1.0 + wanted).sqrt();
        for (_, amplitude) in &mut reflected {
            *amplitude *= scale / total;
        }
        let mut taps = vec![(0, 1.0 / total)];
        taps.extend(reflected);
        let longest = taps.iter().map(|(delay, _)| *delay).max().unwrap_or(0);
        Self { taps, history: vec![0.0; longest + 1], at: 0 }
    }

    #[inline]
    fn process(&mut self, x: f64) -> f64 {
        let length = self.history.len();
        self.at = if self.at == 0 { length - 1 } else { self.at - 1 };
        self.history[self.at] = x;
        self.taps
            .iter()
            .map(|&(delay, amplitude)| {
                let index = self.at + delay;
                amplitude * self.history[if index >= length { index - length } else { index }]
            })
            .sum()
    }
}

/// The path of one take: how its machine and its background reach the microphone.
pub(crate) enum TakePath {
    /// The live take and calibration: the machine heard directly.
    Direct,
    Recorded {
        machine: Colour,
        room: Reflections,
        background: Colour,
    },
}

impl TakePath {
    /// A recorded take's own path, drawn from `rng` (its own stream).
    pub(crate) fn recorded(rate_hz: f64, rng: &mut Rng) -> Self {
        let machine = Colour::new(rate_hz, rng);
        let room = Reflections::new(rate_hz, rng);
        let background = Colour::new(rate_hz, rng);
        TakePath::Recorded { machine, room, background }
    }

    /// One output sample from the machine's sound (a fault's included) and the background's.
    #[inline]
    pub(crate) fn mix(&mut self, machine: f64, background: f64) -> f64 {
        match self {
            TakePath::Direct => machine + background,
            TakePath::Recorded { machine: colour, room, background: background_colour } => {
                room.process(colour.process(machine) + background_colour.process(background))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f64 = 16_000.0;

    fn white_power_through(mut path: TakePath, machine: bool) -> f64 {
        let mut rng = Rng::new(5);
        let n = 200_000;
        let sum: f64 = (0..n)
            .map(|_| {
                let x = rng.white();
                let y = if machine { path.mix(x, 0.0) } else { path.mix(0.0, x) };
                y * y
            })
            .sum();
        sum / f64::from(n)
    }

    #[test]
    fn the_direct_path_adds_machine_and_background() {
        assert_eq!(TakePath::Direct.mix(0.25, -0.5), -0.25);
    }

    #[test]
    fn reflections_keep_white_noise_power_and_begin_with_the_direct_path() {
        for seed in 0..8 {
            let room = Reflections::new(RATE, &mut Rng::new(seed));
            let energy: f64 = room.taps.iter().map(|(_, a)| a * a).sum();
            assert!((energy - 1.0).abs() < 1e-9, "{energy}");
            assert_eq!(room.taps[0].0, 0);
            let direct = room.taps[0].1 * room.taps[0].1;
            let reflected_db = 10.0 * (direct / (1.0 - direct)).log10();
            assert!((DIRECT_TO_REFLECTED_DB.0 - 1e-9..=DIRECT_TO_REFLECTED_DB.1 + 1e-9).contains(&reflected_db));
            assert!(room.taps.iter().all(|(delay, _)| *delay <= (REFLECTION_DELAY_S.1 * RATE).ceil() as usize));
        }
    }

    #[test]
    fn a_recorded_path_keeps_white_noise_power_near_unity_and_differs_from_take_to_take() {
        let powers: Vec<f64> =
            (0..6).map(|seed| white_power_through(TakePath::recorded(RATE, &mut Rng::new(seed)), true)).collect();
        let mean_db = powers.iter().map(|p| 10.0 * p.log10()).sum::<f64>() / powers.len() as f64;
        assert!(mean_db.abs() < 1.5, "{powers:?}");
        assert!(powers.windows(2).all(|pair| (pair[0] - pair[1]).abs() > 1e-6), "{powers:?}");
        let background = white_power_through(TakePath::recorded(RATE, &mut Rng::new(9)), false);
        assert!((10.0 * background.log10()).abs() < 4.0, "{background}");
    }
}
