//! Spans: the last `span_windows` windows of continuous audio, merged into one set of per-band
//! statistics. A window is scored on the span that ends with it, so the stream keeps its 2 s
//! step while each score integrates 8 s of sound: on real recordings the longer integration
//! tells faults from normal variation far better than one window does (BENCHMARKS.md).
//!
//! Mean, standard deviation and maximum merge exactly over windows: the span's mean is the
//! frame-weighted mean of the windows' means, its mean square the same of theirs, and its
//! maximum the largest maximum. A gap in the audio empties the span: a span never bridges
//! audio that was not heard.

use super::window::{BandGroups, WindowFeatures};
use std::collections::VecDeque;

/// One window's statistics as the span merges them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct WindowMoments {
    frames: u32,
    mean: Vec<f64>,
    mean_square: Vec<f64>,
    max: Vec<f32>,
}

/// The windows of the current span, oldest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpanPool {
    span_windows: usize,
    windows: VecDeque<WindowMoments>,
    /// Scratch of `model_vector` (not checkpointed).
    #[serde(skip)]
    scratch: [Vec<f64>; 3],
}

impl SpanPool {
    pub fn new(span_windows: u32) -> Self {
        let span_windows = span_windows.max(1) as usize;
        Self { span_windows, windows: VecDeque::with_capacity(span_windows), scratch: Default::default() }
    }

    /// Windows per full span.
    pub fn span_windows(&self) -> usize {
        self.span_windows
    }

    /// Forgets the span (after a gap in the audio).
    pub fn reset(&mut self) {
        self.windows.clear();
    }

    /// Adds a finished window (dropping the oldest of a full span); returns whether the span
    /// is now full, and so ready to be scored or learned from.
    pub fn push(&mut self, window: &WindowFeatures) -> bool {
        if self.windows.len() == self.span_windows {
            self.windows.pop_front();
        }
        let mean: Vec<f64> = window.mean_db.iter().map(|&m| f64::from(m)).collect();
        let mean_square = mean.iter().zip(&window.std_db).map(|(&m, &s)| m * m + f64::from(s) * f64::from(s)).collect();
        self.windows.push_back(WindowMoments {
            frames: window.frame_count,
            mean,
            mean_square,
            max: window.max_db.clone(),
        });
        self.windows.len() == self.span_windows
    }

    /// The span's per-band mean, standard deviation and maximum, grouped as the model sees them.
    pub fn model_vector(&mut self, groups: &BandGroups, out: &mut Vec<f64>) {
        let bands = self.windows.front().map_or(0, |window| window.mean.len());
        let frames: f64 = self.windows.iter().map(|window| f64::from(window.frames)).sum::<f64>().max(1.0);
        let [mean, std, max] = &mut self.scratch;
        mean.clear();
        std.clear();
        max.clear();
        for band in 0..bands {
            let (mut sum, mut squares, mut largest) = (0.0, 0.0, f64::NEG_INFINITY);
            for window in &self.windows {
                let weight = f64::from(window.frames);
                sum += weight * window.mean[band];
                squares += weight * window.mean_square[band];
                largest = largest.max(f64::from(window.max[band]));
            }
            let band_mean = sum / frames;
            mean.push(band_mean);
            std.push((squares / frames - band_mean * band_mean).max(0.0).sqrt());
            max.push(largest);
        }
        groups.model_vector([mean, std, max], out);
    }

    /// Bytes of heap this span holds.
    pub fn heap_bytes(&self) -> usize {
        let per_window = |w: &WindowMoments| (w.mean.capacity() + w.mean_square.capacity()) * 8 + w.max.capacity() * 4;
        self.windows.iter().map(per_window).sum::<usize>()
            + self.windows.capacity() * std::mem::size_of::<WindowMoments>()
            + self.scratch.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::window::WindowAccumulator;

    /// Windows of `frames` frames each, from one run of per-frame values of one band.
    fn windows(values: &[f32], frames: u32) -> Vec<WindowFeatures> {
        let mut accumulator = WindowAccumulator::new(1, frames);
        values.iter().enumerate().filter_map(|(i, &v)| accumulator.push(i as u64, &[v])).collect()
    }

    #[test]
    fn a_span_has_the_statistics_of_all_its_frames() {
        let values: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 - 2.0 + (i as f32) * 0.25).collect();
        let mut pool = SpanPool::new(3);
        let groups = BandGroups::new(1, 1);
        let full: Vec<bool> = windows(&values, 4).iter().map(|window| pool.push(window)).collect();
        assert_eq!(full, vec![false, false, true]);
        let mut vector = Vec::new();
        pool.model_vector(&groups, &mut vector);
        let count = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
        let std = (values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count).sqrt();
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!((vector[0] - mean).abs() < 1e-5, "{vector:?} vs mean {mean}");
        assert!((vector[1] - std).abs() < 1e-4, "{vector:?} vs std {std}");
        assert_eq!(vector[2], f64::from(max));
    }

    #[test]
    fn the_span_slides_by_a_window_and_a_reset_empties_it() {
        let mut pool = SpanPool::new(2);
        let groups = BandGroups::new(1, 1);
        let all = windows(&[0.0, 0.0, 10.0, 10.0, 20.0, 20.0], 2);
        let mut vector = Vec::new();
        assert!(!pool.push(&all[0]));
        assert!(pool.push(&all[1]));
        pool.model_vector(&groups, &mut vector);
        assert_eq!((vector[0], vector[2]), (5.0, 10.0));
        assert!(pool.push(&all[2]));
        pool.model_vector(&groups, &mut vector);
        assert_eq!((vector[0], vector[1], vector[2]), (15.0, 5.0, 20.0));
        pool.reset();
        assert!(!pool.push(&all[0]), "after a gap the span fills again");
    }
}
