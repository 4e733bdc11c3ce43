//! Pooling frames into windows: the unit that is scored, archived and alerted on.
//!
//! A window is `window_frames` consecutive log-mel frames; its statistic is the per-band
//! mean and standard deviation (dB), accumulated in f64 so long windows stay exact.

/// The pooled features of one finished window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFeatures {
    /// Index of the window's first frame in its continuous segment.
    pub first_frame: u64,
    pub frame_count: u32,
    /// Per-band mean, dB.
    pub mean_db: Vec<f32>,
    /// Per-band standard deviation over the window's frames, dB.
    pub std_db: Vec<f32>,
}

impl WindowFeatures {
    /// The model's view of the window: means, then standard deviations.
    pub fn feature_vector(&self, out: &mut Vec<f64>) {
        out.clear();
        out.extend(self.mean_db.iter().map(|&v| f64::from(v)));
        out.extend(self.std_db.iter().map(|&v| f64::from(v)));
    }
}

/// Accumulates frames until a window is complete.
#[derive(Debug, Clone)]
pub struct WindowAccumulator {
    window_frames: u32,
    frames: u32,
    first_frame: u64,
    sum: Vec<f64>,
    sum_squares: Vec<f64>,
}

impl WindowAccumulator {
    pub fn new(n_mels: usize, window_frames: u32) -> Self {
        Self { window_frames, frames: 0, first_frame: 0, sum: vec![0.0; n_mels], sum_squares: vec![0.0; n_mels] }
    }

    /// Drops a partial window (after a gap in the audio).
    pub fn reset(&mut self) {
        self.frames = 0;
        self.sum.iter_mut().for_each(|v| *v = 0.0);
        self.sum_squares.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Whether no frame of the next window has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Adds frame number `frame_index` of the segment; returns the window it completes.
    pub fn push(&mut self, frame_index: u64, frame_db: &[f32]) -> Option<WindowFeatures> {
        if self.frames == 0 {
            self.first_frame = frame_index;
        }
        for ((sum, sum_squares), &value) in self.sum.iter_mut().zip(self.sum_squares.iter_mut()).zip(frame_db) {
            let value = f64::from(value);
            *sum += value;
            *sum_squares += value * value;
        }
        self.frames += 1;
        if self.frames < self.window_frames {
            return None;
        }
        let count = f64::from(self.frames);
        let mean_db: Vec<f32> = self.sum.iter().map(|&sum| (sum / count) as f32).collect();
        let std_db = self
            .sum
            .iter()
            .zip(&self.sum_squares)
            .map(|(&sum, &sum_squares)| {
                let mean = sum / count;
                ((sum_squares / count - mean * mean).max(0.0)).sqrt() as f32
            })
            .collect();
        let window = WindowFeatures { first_frame: self.first_frame, frame_count: self.frames, mean_db, std_db };
        self.reset();
        Some(window)
    }

    /// Bytes of heap this accumulator holds.
    pub fn heap_bytes(&self) -> usize {
        (self.sum.capacity() + self.sum_squares.capacity()) * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reports_mean_and_population_std_per_band() {
        let mut accumulator = WindowAccumulator::new(2, 4);
        let frames = [[1.0, 10.0], [3.0, 10.0], [1.0, 10.0], [3.0, 10.0]];
        let mut done = None;
        for (index, frame) in frames.iter().enumerate() {
            done = accumulator.push(index as u64 + 7, frame);
            assert_eq!(done.is_some(), index == 3);
        }
        let window = done.unwrap();
        assert_eq!(window.first_frame, 7);
        assert_eq!(window.mean_db, vec![2.0, 10.0]);
        assert_eq!(window.std_db, vec![1.0, 0.0]);
    }
}
