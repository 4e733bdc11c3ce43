//! Everything auscult keeps about one machine, and what it does with each chunk.
//!
//! A monitor is created on a machine's first chunk. It checks order (a repeated sequence
//! number is a replay and is dropped; a jump is a gap after which the STFT and the window
//! restart cleanly; a lower number with a later capture time is a producer that restarted its
//! numbering, handled as a gap), decodes, extracts log-mel frames, pools them into windows,
//! learns the normal profile from the spans of its first `learning_s` seconds, then scores
//! every window by the span of the last `span_windows` windows ending with it, runs the alert
//! state machine, explains each alert by its most deviating bands and, while all is quiet,
//! lets the profile follow slow drift. Its memory is bounded and reported by
//! [`MachineMonitor::heap_bytes`]. [`MachineMonitor::snapshot`] and [`MachineMonitor::restore`]
//! carry it over a restart of the pipeline (see `crate::checkpoint`).

use super::alert::AlertTracker;
use super::profile::{CalibrationSample, LearningMoments, NormalProfile};
use super::span::SpanPool;
use super::threshold::{calibrate, span_rate_for_alert_rate};
use super::window::{BandGroups, WindowAccumulator, WindowFeatures, STATISTICS};
use crate::config::{AlertConfig, Config};
use crate::dsp::{decode_to_mono, ChannelSelection, DecodeError, ExtractorState, FeatureError, LogMelExtractor};
use auscult_schemas::event::event_id;
use auscult_schemas::time::{rfc3339, TimestampUs};
use auscult_schemas::{
    AlertState, AnomalyEvent, AudioChunk, BandDeviation, FeatureSettings, MachineEntry, MachineId, MachineType,
    ProfileState, WindowRecord, EVENT_SCHEMA_ID,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Fewest learning spans that share no audio with a calibration fold, whatever `learning_s` says.
pub const MIN_LEARNING_SPANS: u64 = 8;

/// Fewest spans of one continuous stretch that learning takes: enough that each of the five
/// calibration folds still learns from `MIN_LEARNING_SPANS` spans sharing no audio with it
/// (a fold is a fifth of them, and the `span_windows - 1` spans on either side overlap it).
pub fn min_learning_spans(span_windows: u32) -> u64 {
    MIN_LEARNING_SPANS + 4 * u64::from(span_windows.saturating_sub(1))
}

/// How far span positions jump at a gap in the audio: spans of different stretches never overlap.
const GAP_POSITIONS: u64 = 1 << 20;

/// Why a chunk was not used. The caller adds where the chunk came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    #[error("machine {machine} changed sample rate from {from} Hz to {to} Hz at sequence {sequence}; chunk skipped")]
    RateChanged { machine: MachineId, from: u32, to: u32, sequence: u64 },
    #[error("machine {machine} sequence {sequence}: {source}")]
    Decode { machine: MachineId, sequence: u64, source: DecodeError },
    #[error("machine {machine}: no features at {sample_rate_hz} Hz: {source}")]
    Features { machine: MachineId, sample_rate_hz: u32, source: FeatureError },
}

/// What a chunk produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MonitorOutput {
    pub windows: Vec<WindowRecord>,
    pub events: Vec<AnomalyEvent>,
    /// With [`MachineMonitor::explain_every_window`]: the most deviating bands of each window,
    /// in the order of `windows` (empty for windows that were learned from).
    pub explanations: Vec<Vec<BandDeviation>>,
}

/// Counters of one machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStats {
    pub chunks: u64,
    pub samples: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub windows_learned: u64,
    /// Windows after learning (those without a full span yet, after a gap, have no score).
    pub windows_scored: u64,
    /// Windows after learning that had no full span to be scored on.
    pub windows_unscored: u64,
    pub windows_adapted: u64,
    pub alerts_opened: u64,
    /// Alert events not emitted because the registry mutes the machine.
    pub events_muted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Phase {
    Learning {
        moments: LearningMoments,
        sample: CalibrationSample,
    },
    Scoring {
        profile: NormalProfile,
        warning_threshold: f64,
        alarm_threshold: f64,
        /// The held-out learning scores, kept so a new false-alarm rate can be applied.
        calibration_scores: Vec<f64>,
    },
}

/// A snapshot that does not fit this run's configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("machine {machine}: its checkpointed state does not fit this run's configuration: {what}")]
pub struct RestoreError {
    pub machine: MachineId,
    pub what: String,
}

/// One machine's state in a checkpoint: borrowed from the monitor when written, owned when
/// read back. Scratch buffers and the run's configuration are left out; the registry entry is
/// kept as JSON.
#[derive(Serialize, Deserialize)]
pub struct MonitorSnapshot<'a> {
    machine_id: Cow<'a, MachineId>,
    machine_type: Cow<'a, MachineType>,
    entry_json: String,
    /// Sample rate and the extractor's unfinished frames.
    extractor: Option<(u32, ExtractorState)>,
    segment_start_us: TimestampUs,
    next_sequence: Option<u64>,
    last_capture_us: Option<TimestampUs>,
    window: Cow<'a, WindowAccumulator>,
    span: Cow<'a, SpanPool>,
    span_position: u64,
    window_origin: Cow<'a, str>,
    phase: Cow<'a, Phase>,
    learned_audio_s: f64,
    alert: Cow<'a, AlertTracker>,
    stats: MonitorStats,
    last_alert_bands: Cow<'a, [BandDeviation]>,
}

impl MonitorSnapshot<'_> {
    pub fn machine_id(&self) -> &MachineId {
        &self.machine_id
    }
}

/// The state of one machine.
pub struct MachineMonitor {
    machine_id: MachineId,
    machine_type: MachineType,
    config: Config,
    extractor: Option<LogMelExtractor>,
    /// Capture time of sample 0 of the current continuous stretch of audio.
    segment_start_us: TimestampUs,
    next_sequence: Option<u64>,
    /// Capture time of the last chunk taken: tells a replay from a producer's new numbering.
    last_capture_us: Option<TimestampUs>,
    window: WindowAccumulator,
    /// The windows the next score is computed on.
    span: SpanPool,
    /// The index of the last window in the machine's audio, jumping at gaps (see
    /// [`CalibrationSample::offer`]).
    span_position: u64,
    groups: BandGroups,
    explain_every_window: bool,
    /// Where the audio of the window being filled started.
    window_origin: String,
    phase: Phase,
    learned_audio_s: f64,
    alert: AlertTracker,
    stats: MonitorStats,
    last_alert_bands: Vec<BandDeviation>,
    samples: Vec<f32>,
    features: Vec<f64>,
    /// What the machine registry says about this machine (overrides of `defaults`).
    entry: MachineEntry,
    defaults: Config,
}

impl MachineMonitor {
    /// A new machine, learning from its first audio.
    pub fn new(machine_id: MachineId, machine_type: MachineType, config: &Config) -> Self {
        let groups = BandGroups::new(config.features.n_mels, config.model.model_bands);
        let dimensions = groups.dimensions();
        Self {
            machine_id,
            machine_type,
            extractor: None,
            segment_start_us: 0,
            next_sequence: None,
            last_capture_us: None,
            window: WindowAccumulator::new(config.features.n_mels, config.model.window_frames),
            span: SpanPool::new(config.model.span_windows),
            span_position: 0,
            groups,
            explain_every_window: false,
            window_origin: String::new(),
            phase: Phase::Learning {
                moments: LearningMoments::new(dimensions),
                sample: CalibrationSample::new(config.model.calibration_windows_max),
            },
            learned_audio_s: 0.0,
            alert: AlertTracker::new(config.alerts.clone(), config.model.span_windows as usize),
            stats: MonitorStats::default(),
            last_alert_bands: Vec::new(),
            samples: Vec::new(),
            features: Vec::with_capacity(dimensions),
            config: config.clone(),
            entry: MachineEntry::default(),
            defaults: config.clone(),
        }
    }

    /// Applies the machine's registry entry (the default entry undoes earlier overrides): its
    /// channel, learning span and false-alarm rate replace the configured ones from the next
    /// chunk on (a new rate re-calibrates the thresholds from the kept learning scores), and a
    /// muted machine raises no events.
    pub fn apply_entry(&mut self, entry: MachineEntry) {
        self.take_entry(entry);
        let rate = self.config.model.false_alarm_rate;
        let alarm_rate = self.defaults.model.alarm_false_alarm_rate.min(rate);
        let (fixed_warning, fixed_alarm) = (self.entry.warning_threshold, self.entry.alarm_threshold);
        if let Phase::Scoring { warning_threshold, alarm_threshold, calibration_scores, .. } = &mut self.phase {
            (*warning_threshold, *alarm_threshold) =
                thresholds(calibration_scores, (rate, alarm_rate), &self.config.alerts, (fixed_warning, fixed_alarm));
        }
    }

    /// Puts the entry's overrides into this machine's configuration.
    fn take_entry(&mut self, entry: MachineEntry) {
        let defaults = &self.defaults;
        self.config.features.channel = entry.channel.map_or(defaults.features.channel, ChannelSelection::Channel);
        self.config.model.learning_s = entry.learning_s.unwrap_or(defaults.model.learning_s);
        self.config.model.false_alarm_rate = entry.false_alarm_rate.unwrap_or(defaults.model.false_alarm_rate);
        self.entry = entry;
    }

    /// Everything this machine has learned and is in the middle of (partial frames and
    /// window, profile, alert, sequence numbers, counters), borrowed for a checkpoint.
    pub fn snapshot(&self) -> MonitorSnapshot<'_> {
        MonitorSnapshot {
            machine_id: Cow::Borrowed(&self.machine_id),
            machine_type: Cow::Borrowed(&self.machine_type),
            entry_json: self.entry.to_json(),
            extractor: self
                .extractor
                .as_ref()
                .map(|extractor| (extractor.settings().sample_rate_hz, extractor.state())),
            segment_start_us: self.segment_start_us,
            next_sequence: self.next_sequence,
            last_capture_us: self.last_capture_us,
            window: Cow::Borrowed(&self.window),
            span: Cow::Borrowed(&self.span),
            span_position: self.span_position,
            window_origin: Cow::Borrowed(&self.window_origin),
            phase: Cow::Borrowed(&self.phase),
            learned_audio_s: self.learned_audio_s,
            alert: Cow::Borrowed(&self.alert),
            stats: self.stats,
            last_alert_bands: Cow::Borrowed(&self.last_alert_bands),
        }
    }

    /// A machine as a snapshot left it, under this run's `config`: it continues exactly where
    /// the snapshot's run stopped. Fails if the snapshot does not fit `config` (other feature
    /// or model dimensions).
    pub fn restore(snapshot: MonitorSnapshot<'_>, config: &Config) -> Result<Self, RestoreError> {
        let machine_id = snapshot.machine_id.into_owned();
        let mut monitor = Self::new(machine_id.clone(), snapshot.machine_type.into_owned(), config);
        let misfit = |what: String| RestoreError { machine: machine_id.clone(), what };
        let entry = MachineEntry::parse(snapshot.entry_json.as_bytes()).map_err(|error| misfit(error.to_string()))?;
        monitor.take_entry(entry);
        let window = snapshot.window.into_owned();
        if window.shape() != monitor.window.shape() {
            return Err(misfit(format!(
                "its window is {:?} (bands, frames), this run's {:?}",
                window.shape(),
                monitor.window.shape()
            )));
        }
        let span = snapshot.span.into_owned();
        if span.span_windows() != monitor.span.span_windows() {
            return Err(misfit(format!(
                "its spans are {} windows, this run's {}",
                span.span_windows(),
                monitor.span.span_windows()
            )));
        }
        let phase = snapshot.phase.into_owned();
        let dimensions = match &phase {
            Phase::Learning { moments, .. } => moments.dimensions(),
            Phase::Scoring { profile, .. } => profile.dimensions(),
        };
        if dimensions != monitor.groups.dimensions() {
            return Err(misfit(format!(
                "its profile has {dimensions} features, this run's {}",
                monitor.groups.dimensions()
            )));
        }
        if let Some((rate, state)) = snapshot.extractor {
            let settings = monitor.config.features.settings_for(rate);
            let mut extractor = LogMelExtractor::new(settings).map_err(|error| misfit(error.to_string()))?;
            extractor.restore(state);
            monitor.extractor = Some(extractor);
        }
        monitor.segment_start_us = snapshot.segment_start_us;
        monitor.next_sequence = snapshot.next_sequence;
        monitor.last_capture_us = snapshot.last_capture_us;
        monitor.window = window;
        monitor.span = span;
        monitor.span_position = snapshot.span_position;
        monitor.window_origin = snapshot.window_origin.into_owned();
        monitor.phase = phase;
        monitor.learned_audio_s = snapshot.learned_audio_s;
        monitor.alert = snapshot.alert.into_owned();
        monitor.alert.configure(config.alerts.clone(), config.model.span_windows as usize);
        monitor.stats = snapshot.stats;
        monitor.last_alert_bands = snapshot.last_alert_bands.into_owned();
        Ok(monitor)
    }

    /// The alert state after the last window.
    pub fn alert_state(&self) -> AlertState {
        self.alert.state()
    }

    /// The registry entry in effect.
    pub fn entry(&self) -> &MachineEntry {
        &self.entry
    }

    /// Also explain windows that open no alert (`auscult eval --explain` shows them).
    pub fn explain_every_window(&mut self, on: bool) {
        self.explain_every_window = on;
    }

    pub fn machine_id(&self) -> &MachineId {
        &self.machine_id
    }

    pub fn machine_type(&self) -> &MachineType {
        &self.machine_type
    }

    pub fn stats(&self) -> MonitorStats {
        self.stats
    }

    /// The bands that explained the most recent alert event.
    pub fn last_alert_bands(&self) -> &[BandDeviation] {
        &self.last_alert_bands
    }

    /// Seconds of audio the profile learned from.
    pub fn learned_audio_s(&self) -> f64 {
        self.learned_audio_s
    }

    /// The warning and alarm thresholds, once learning is over.
    pub fn thresholds(&self) -> Option<(f64, f64)> {
        match &self.phase {
            Phase::Scoring { warning_threshold, alarm_threshold, .. } => Some((*warning_threshold, *alarm_threshold)),
            Phase::Learning { .. } => None,
        }
    }

    /// The feature settings in use (after the first chunk).
    pub fn feature_settings(&self) -> Option<FeatureSettings> {
        self.extractor.as_ref().map(|extractor| *extractor.settings())
    }

    /// Heap bytes of this machine's state (extractor buffers, window, profile, calibration sample).
    pub fn heap_bytes(&self) -> usize {
        let extractor = self.extractor.as_ref().map_or(0, |e| e.heap_bytes());
        let phase = match &self.phase {
            Phase::Learning { moments, sample } => moments.heap_bytes() + sample.heap_bytes(),
            Phase::Scoring { profile, calibration_scores, .. } => {
                profile.heap_bytes() + calibration_scores.capacity() * 8
            }
        };
        extractor
            + phase
            + self.window.heap_bytes()
            + self.span.heap_bytes()
            + self.samples.capacity() * 4
            + self.features.capacity() * 8
    }

    /// Ends learning now (if it has not ended) and calibrates the thresholds from what was
    /// learned; `auscult eval` calls this after a machine's training clips. Returns whether the
    /// machine is now scoring: it needs at least two learned spans (otherwise it keeps learning).
    pub fn finish_learning(&mut self) -> bool {
        if let Phase::Learning { moments, sample } = &self.phase {
            if moments.count() < 2 {
                return false;
            }
            let model = &self.config.model;
            let floor = model.min_std_db * model.min_std_db;
            let overlap = u64::from(model.span_windows.saturating_sub(1));
            let Some((profile, scores)) = NormalProfile::learn(moments, sample, floor, overlap) else {
                return false;
            };
            let (warning_threshold, alarm_threshold) = thresholds(
                &scores,
                (model.false_alarm_rate, model.alarm_false_alarm_rate.min(model.false_alarm_rate)),
                &self.config.alerts,
                (self.entry.warning_threshold, self.entry.alarm_threshold),
            );
            self.phase = Phase::Scoring { profile, warning_threshold, alarm_threshold, calibration_scores: scores };
        }
        true
    }

    /// Takes one chunk of this machine's audio, in sequence order.
    pub fn accept(&mut self, chunk: &AudioChunk, out: &mut MonitorOutput) -> Result<(), MonitorError> {
        if let Some(extractor) = &self.extractor {
            let rate = extractor.settings().sample_rate_hz;
            if rate != chunk.sample_rate_hz {
                return Err(MonitorError::RateChanged {
                    machine: self.machine_id.clone(),
                    from: rate,
                    to: chunk.sample_rate_hz,
                    sequence: chunk.sequence,
                });
            }
        }
        let continuous = match self.next_sequence {
            // A lower number with a later capture time: the producer restarted its numbering.
            Some(next) if chunk.sequence < next && self.last_capture_us < Some(chunk.capture_start_us) => {
                self.stats.gaps += 1;
                false
            }
            Some(next) if chunk.sequence < next => {
                self.stats.duplicates += 1;
                return Ok(());
            }
            Some(next) if chunk.sequence > next => {
                self.stats.gaps += 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        self.samples.clear();
        decode_to_mono(
            &chunk.payload,
            chunk.sample_format,
            chunk.channels,
            self.config.features.channel,
            &mut self.samples,
        )
        .map_err(|source| MonitorError::Decode {
            machine: self.machine_id.clone(),
            sequence: chunk.sequence,
            source,
        })?;
        if self.extractor.is_none() {
            let settings = self.config.features.settings_for(chunk.sample_rate_hz);
            let extractor = LogMelExtractor::new(settings).map_err(|source| MonitorError::Features {
                machine: self.machine_id.clone(),
                sample_rate_hz: chunk.sample_rate_hz,
                source,
            })?;
            self.extractor = Some(extractor);
        }
        self.next_sequence = Some(chunk.sequence + 1);
        self.last_capture_us = Some(chunk.capture_start_us);
        self.stats.chunks += 1;
        self.stats.samples += self.samples.len() as u64;
        let extractor = self.extractor.as_mut().expect("created above");
        if !continuous {
            extractor.reset();
            self.window.reset();
            self.span.reset();
            self.span_position += GAP_POSITIONS;
            self.segment_start_us = chunk.capture_start_us;
        }
        let origin = chunk.origin.to_string();
        let mut finished: Vec<(WindowFeatures, String)> = Vec::new();
        let mut frame_index = extractor.frames_emitted();
        let window = &mut self.window;
        let window_origin = &mut self.window_origin;
        extractor.push(&self.samples, |frame| {
            if window.is_empty() {
                window_origin.clone_from(&origin);
            }
            if let Some(features) = window.push(frame_index, frame) {
                finished.push((features, window_origin.clone()));
            }
            frame_index += 1;
        });
        for (features, source) in finished {
            self.finish_window(features, source, out);
        }
        Ok(())
    }

    fn finish_window(&mut self, features: WindowFeatures, source: String, out: &mut MonitorOutput) {
        let settings = *self.extractor.as_ref().expect("windows come from the extractor").settings();
        let rate = u64::from(settings.sample_rate_hz);
        let hop = settings.hop_length as u64;
        let to_us = |samples: u64| (u128::from(samples) * 1_000_000 / u128::from(rate)) as i64;
        let first_sample = features.first_frame * hop;
        let end_sample = (features.first_frame + u64::from(features.frame_count) - 1) * hop + settings.n_fft as u64;
        let window_start_us = self.segment_start_us + to_us(first_sample);
        let window_end_us = self.segment_start_us + to_us(end_sample);
        self.span_position += 1;
        let span_full = self.span.push(&features);
        if span_full {
            self.span.model_vector(&self.groups, &mut self.features);
        }
        let mut record = WindowRecord {
            machine_id: self.machine_id.clone(),
            machine_type: self.machine_type.clone(),
            window_start_us,
            window_end_us,
            frame_count: features.frame_count,
            sample_rate_hz: settings.sample_rate_hz,
            logmel_mean_db: features.mean_db.clone(),
            logmel_std_db: features.std_db.clone(),
            score: None,
            threshold: None,
            alarm_threshold: None,
            alert_state: self.alert.state(),
            profile_state: ProfileState::Learning,
            source,
        };
        let model = &self.config.model;
        let mut explanation = Vec::new();
        match &mut self.phase {
            Phase::Learning { moments, sample } => {
                if span_full {
                    moments.add(&self.features);
                    sample.offer(self.span_position, &self.features);
                }
                self.stats.windows_learned += 1;
                self.learned_audio_s += f64::from(features.frame_count) * hop as f64 / rate as f64;
                if self.learned_audio_s >= model.learning_s && moments.count() >= min_learning_spans(model.span_windows)
                {
                    self.finish_learning();
                }
            }
            Phase::Scoring { .. } if !span_full => {
                self.stats.windows_scored += 1;
                self.stats.windows_unscored += 1;
                record.profile_state = ProfileState::Scoring;
            }
            Phase::Scoring { profile, warning_threshold, alarm_threshold, .. } => {
                let score = profile.score(&self.features);
                let transition = self.alert.observe(score, *warning_threshold, *alarm_threshold);
                self.stats.windows_scored += 1;
                record.score = Some(score);
                record.threshold = Some(*warning_threshold);
                record.alarm_threshold = Some(*alarm_threshold);
                record.alert_state = self.alert.state();
                record.profile_state = ProfileState::Scoring;
                if let Some(transition) = transition {
                    if transition.kind == auscult_schemas::EventKind::Opened {
                        self.stats.alerts_opened += 1;
                    }
                    let threshold = match transition.level {
                        auscult_schemas::AlertLevel::Warning => *warning_threshold,
                        auscult_schemas::AlertLevel::Alarm => *alarm_threshold,
                    };
                    let extractor = self.extractor.as_ref().expect("windows come from the extractor");
                    let top_bands = top_bands(profile, &self.features, &self.groups, extractor, model.top_bands);
                    self.last_alert_bands.clone_from(&top_bands);
                    if self.entry.muted {
                        self.stats.events_muted += 1;
                    } else {
                        out.events.push(AnomalyEvent {
                            schema: EVENT_SCHEMA_ID.to_owned(),
                            event_id: event_id(&self.machine_id, transition.kind, transition.level, window_start_us),
                            machine_id: self.machine_id.clone(),
                            machine_type: self.machine_type.clone(),
                            kind: transition.kind,
                            level: transition.level,
                            window_start: rfc3339(window_start_us),
                            window_end: rfc3339(window_end_us),
                            score,
                            threshold,
                            top_bands,
                            learned_audio_s: self.learned_audio_s,
                        });
                    }
                } else if model.adapt
                    && self.alert.state() == AlertState::Normal
                    && score < model.adapt_below_fraction * *warning_threshold
                {
                    profile.adapt(&self.features, 1.0 / model.adapt_span_windows.max(1.0));
                    self.stats.windows_adapted += 1;
                }
                if self.explain_every_window {
                    let extractor = self.extractor.as_ref().expect("windows come from the extractor");
                    explanation = top_bands(profile, &self.features, &self.groups, extractor, model.top_bands);
                }
            }
        }
        out.windows.push(record);
        if self.explain_every_window {
            out.explanations.push(explanation);
        }
    }
}

/// The warning and alarm thresholds: calibrated from the held-out learning scores so that the
/// alert rule (`open_k` of `open_n` spans) opens false warnings and alarms at the two configured
/// rates, or fixed by the registry; the alarm threshold is never below the warning one.
fn thresholds(
    scores: &[f64],
    (warning_rate, alarm_rate): (f64, f64),
    alerts: &AlertConfig,
    (fixed_warning, fixed_alarm): (Option<f64>, Option<f64>),
) -> (f64, f64) {
    let span_rate = |rate| span_rate_for_alert_rate(rate, alerts.open_k, alerts.open_n);
    let warning = fixed_warning.unwrap_or_else(|| calibrate(scores, span_rate(warning_rate)));
    let alarm = fixed_alarm.unwrap_or_else(|| calibrate(scores, span_rate(alarm_rate)));
    (warning, alarm.max(warning))
}

/// The band groups whose level (mean, spread or maximum) deviates most from the profile,
/// largest first.
fn top_bands(
    profile: &NormalProfile,
    vector: &[f64],
    groups: &BandGroups,
    extractor: &LogMelExtractor,
    count: usize,
) -> Vec<BandDeviation> {
    let group_count = groups.count();
    let residuals = profile.deviations(vector);
    let mut deviations: Vec<(usize, f64)> = (0..group_count)
        .map(|group| {
            let deviation = (0..STATISTICS.len())
                .map(|statistic| residuals[statistic * group_count + group])
                .fold(0.0f64, |largest, z| if z.abs() > largest.abs() { z } else { largest });
            (group, deviation)
        })
        .collect();
    deviations.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    deviations
        .into_iter()
        .take(count)
        .map(|(group, deviation_sd)| {
            let bands = groups.bands(group);
            let (low_hz, _) = extractor.filterbank().band_range_hz(bands.start);
            let (_, high_hz) = extractor.filterbank().band_range_hz(bands.end - 1);
            BandDeviation {
                band: u16::try_from(bands.start).unwrap_or(u16::MAX),
                low_hz: (low_hz * 10.0).round() / 10.0,
                high_hz: (high_hz * 10.0).round() / 10.0,
                deviation_sd: (deviation_sd * 100.0).round() / 100.0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use auscult_schemas::{ChunkOrigin, SampleFormat};

    fn chunk(sequence: u64, capture_start_us: i64) -> AudioChunk {
        AudioChunk {
            machine_id: MachineId::new("fan-01").unwrap(),
            machine_type: MachineType::new("fan").unwrap(),
            sequence,
            capture_start_us,
            sample_rate_hz: 16_000,
            channels: 1,
            sample_format: SampleFormat::S16le,
            payload: (0..4000u32).flat_map(|i| (((i * 7919) % 2000) as i16 - 1000).to_le_bytes()).collect(),
            origin: ChunkOrigin::Simulator { seed: 1 },
        }
    }

    #[test]
    fn a_replay_is_dropped_but_a_producer_that_counts_again_from_zero_later_is_a_new_stretch() {
        let config = Config::default();
        let mut monitor =
            MachineMonitor::new(MachineId::new("fan-01").unwrap(), MachineType::new("fan").unwrap(), &config);
        let mut out = MonitorOutput::default();
        for sequence in 0..40 {
            monitor.accept(&chunk(sequence, sequence as i64 * 250_000), &mut out).unwrap();
        }
        // The topic replays the last ten chunks: same numbers, same capture times.
        for sequence in 30..40 {
            monitor.accept(&chunk(sequence, sequence as i64 * 250_000), &mut out).unwrap();
        }
        assert_eq!((monitor.stats().chunks, monitor.stats().duplicates, monitor.stats().gaps), (40, 10, 0));
        // The agent restarted: it numbers from 0 again, with later capture times.
        let restart_us = 60_000_000;
        for sequence in 0..20 {
            monitor.accept(&chunk(sequence, restart_us + sequence as i64 * 250_000), &mut out).unwrap();
        }
        assert_eq!((monitor.stats().chunks, monitor.stats().duplicates, monitor.stats().gaps), (60, 10, 1));
        // Its windows are timed from the new stretch's capture time.
        let last = out.windows.last().unwrap();
        assert!(last.window_start_us >= restart_us, "{}", last.window_start_us);
    }
}
