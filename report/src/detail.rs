//! The detail of an alerted machine, from its band vectors: a heat map of the archived mean
//! log-mel over time, the normal level it learned, and the spectrum of each alert.
//!
//! The learned level is the per-band mean and standard deviation of the machine's learning
//! windows; an alert's spectrum is the mean of its windows. Their difference in standard
//! deviations is what the report shows as the bands that moved, the same quantity the stream's
//! `top_bands` report, so a reader can check one against the other.

use crate::fleet::{AlertSpan, MachineSeries};
use auscult_connectors::archive::reader::ArchivedWindow;
use auscult_schemas::time::TimestampUs;
use auscult_schemas::ProfileState;

/// Mean log-mel per time bin and band; a bin no window fell in is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    pub start_us: TimestampUs,
    pub end_us: TimestampUs,
    pub bins: usize,
    pub bands: usize,
    sums: Vec<f64>,
    counts: Vec<u32>,
}

impl HeatMap {
    fn new(start_us: TimestampUs, end_us: TimestampUs, bins: usize) -> Self {
        Self {
            start_us,
            end_us: end_us.max(start_us + 1),
            bins: bins.max(1),
            bands: 0,
            sums: Vec::new(),
            counts: Vec::new(),
        }
    }

    fn add(&mut self, time_us: TimestampUs, bands: &[f32]) {
        if self.bands == 0 {
            self.bands = bands.len();
            self.sums = vec![0.0; self.bins * self.bands];
            self.counts = vec![0; self.bins];
        }
        if bands.len() != self.bands {
            return;
        }
        let span = (self.end_us - self.start_us) as f64;
        let bin = (((time_us - self.start_us) as f64 / span) * self.bins as f64).floor();
        let bin = (bin.max(0.0) as usize).min(self.bins - 1);
        for (sum, &value) in self.sums[bin * self.bands..(bin + 1) * self.bands].iter_mut().zip(bands) {
            *sum += f64::from(value);
        }
        self.counts[bin] += 1;
    }

    /// The mean of band `band` in time bin `bin`. A bin that no window fell in but whose two
    /// neighbours have windows is drawn as its left neighbour: with windows about one bin apart,
    /// rounding leaves such holes, and a hole is not a gap in the audio. Longer gaps stay empty.
    pub fn value(&self, bin: usize, band: usize) -> Option<f64> {
        let filled = |bin: usize| self.counts.get(bin).is_some_and(|&count| count > 0);
        let source = if filled(bin) {
            bin
        } else if bin > 0 && filled(bin - 1) && filled(bin + 1) {
            bin - 1
        } else {
            return None;
        };
        Some(self.sums[source * self.bands + band] / f64::from(self.counts[source]))
    }

    /// The lowest and highest mean over all bins (for the colour scale).
    pub fn range(&self) -> Option<(f64, f64)> {
        let values = (0..self.bins).flat_map(|bin| (0..self.bands).filter_map(move |band| self.value(bin, band)));
        values.fold(None, |range, v| Some(range.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v)))))
    }
}

/// Per-band running mean and variance (Welford).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BandMoments {
    count: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl BandMoments {
    fn add(&mut self, bands: &[f32]) {
        if self.count == 0 {
            self.mean = vec![0.0; bands.len()];
            self.m2 = vec![0.0; bands.len()];
        }
        if bands.len() != self.mean.len() {
            return;
        }
        self.count += 1;
        for ((mean, m2), &value) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(bands) {
            let value = f64::from(value);
            let delta = value - *mean;
            *mean += delta / self.count as f64;
            *m2 += delta * (value - *mean);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Sample standard deviation per band (0 with fewer than two windows).
    pub fn std(&self) -> Vec<f64> {
        let denominator = self.count.saturating_sub(1).max(1) as f64;
        self.m2.iter().map(|m2| (m2 / denominator).sqrt()).collect()
    }
}

/// What the band vectors say of one alerted machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDetail {
    pub heat: HeatMap,
    pub learned: BandMoments,
    /// The mean spectrum of each alert span, in the order of [`MachineSeries::spans`].
    pub alerts: Vec<BandMoments>,
    spans: Vec<(TimestampUs, TimestampUs)>,
}

impl MachineDetail {
    pub fn new(series: &MachineSeries, heat_bins: usize) -> Self {
        Self {
            heat: HeatMap::new(series.first_us, series.last_us, heat_bins),
            learned: BandMoments::default(),
            alerts: vec![BandMoments::default(); series.spans.len()],
            spans: series.spans.iter().map(|span: &AlertSpan| (span.start_us, span.end_us)).collect(),
        }
    }

    pub fn add(&mut self, window: &ArchivedWindow) {
        let Some(bands) = &window.logmel_mean_db else { return };
        self.heat.add(window.window_start_us, bands);
        if window.profile_state == ProfileState::Learning {
            self.learned.add(bands);
        }
        for (moments, (start, end)) in self.alerts.iter_mut().zip(&self.spans) {
            if window.window_start_us >= *start && window.window_end_us <= *end {
                moments.add(bands);
            }
        }
    }

    /// Each band's deviation in alert `alert` from the learned level, in learned standard
    /// deviations (a floor of 0.5 dB keeps a band that never moved while learning finite).
    pub fn deviation_sd(&self, alert: usize) -> Vec<f64> {
        let Some(moments) = self.alerts.get(alert) else { return Vec::new() };
        if moments.count() == 0 || self.learned.count() == 0 {
            return Vec::new();
        }
        let std = self.learned.std();
        moments.mean().iter().zip(self.learned.mean()).zip(std).map(|((a, l), s)| (a - l) / s.max(0.5)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Fleet;
    use auscult_schemas::{AlertState, MachineType};

    fn window(start_s: i64, learning: bool, state: AlertState, bands: Vec<f32>) -> ArchivedWindow {
        ArchivedWindow {
            machine_id: "pump-1".to_owned(),
            machine_type: MachineType::new("pump").unwrap(),
            window_start_us: start_s * 1_000_000,
            window_end_us: (start_s + 1) * 1_000_000,
            score: (!learning).then_some(1.0),
            threshold: (!learning).then_some(2.0),
            alarm_threshold: None,
            alert_state: state,
            profile_state: if learning { ProfileState::Learning } else { ProfileState::Scoring },
            logmel_mean_db: Some(bands),
        }
    }

    #[test]
    fn the_moved_band_stands_out_against_the_learned_level() {
        let mut windows = Vec::new();
        for second in 0..20 {
            let wobble = if second % 2 == 0 { 1.0 } else { -1.0 };
            windows.push(window(second, true, AlertState::Normal, vec![-40.0 + wobble, -50.0 + wobble, -60.0]));
        }
        for second in 20..25 {
            windows.push(window(second, false, AlertState::Warning, vec![-40.0, -44.0, -60.0]));
        }
        windows.push(window(25, false, AlertState::Normal, vec![-40.0, -50.0, -60.0]));
        let mut fleet = Fleet::default();
        windows.iter().for_each(|w| fleet.add(w));
        let series = &fleet.machines["pump-1"];
        let mut detail = MachineDetail::new(series, 13);
        windows.iter().for_each(|w| detail.add(w));

        assert_eq!(detail.learned.count(), 20);
        assert_eq!(detail.alerts[0].count(), 5);
        let deviation = detail.deviation_sd(0);
        // Band 1 rose 6 dB against a learned spread of about 1 dB; band 2 never moved (0.5 dB floor).
        assert!(deviation[1] > 5.0 && deviation[1] < 6.5, "{deviation:?}");
        assert!(deviation[0].abs() < 0.1 && deviation[2].abs() < 1e-9, "{deviation:?}");

        assert_eq!(detail.heat.bins, 13);
        let (low, high) = detail.heat.range().unwrap();
        assert!(low <= -60.0 && high >= -40.0 && high < -38.9, "{low} {high}");
        assert!((0..13).all(|bin| detail.heat.value(bin, 2) == Some(-60.0)), "every bin saw a window");
    }

    #[test]
    fn a_one_bin_hole_is_filled_and_a_longer_gap_is_not() {
        let mut heat = HeatMap::new(0, 10_000_000, 10);
        for second in [0, 1, 3, 7, 8, 9] {
            heat.add(second * 1_000_000, &[second as f32]);
        }
        assert_eq!(heat.value(2, 0), Some(1.0), "bin 2 lies between two filled bins");
        assert_eq!((heat.value(4, 0), heat.value(5, 0), heat.value(6, 0)), (None, None, None));
        assert_eq!(heat.value(7, 0), Some(7.0));
    }
}
