//! Pooling frames into windows: the step at which the stream scores, archives and alerts.
//!
//! A window is `window_frames` consecutive log-mel frames. Per band it yields three level
//! statistics, the classic descriptors of condition monitoring: the mean (the steady
//! spectrum), the standard deviation (how much the band fluctuates) and the maximum (the
//! loudest moment: a click, a rub, a valve's stroke that an average dilutes). All three merge
//! exactly over consecutive windows (see `span`), so a longer span costs no re-reading of frames.
//!
//! The model does not see all bands: neighbouring mel bands are averaged in groups
//! ([`BandGroups`]) so that a span is a few hundred numbers.

/// The statistics of one finished window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFeatures {
    /// Index of the window's first frame in its continuous segment.
    pub first_frame: u64,
    pub frame_count: u32,
    /// Per-band mean, dB.
    pub mean_db: Vec<f32>,
    /// Per-band (population) standard deviation over the window's frames, dB.
    pub std_db: Vec<f32>,
    /// Per-band maximum over the window's frames, dB.
    pub max_db: Vec<f32>,
}

/// How mel bands are grouped into model features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandGroups {
    n_mels: usize,
    group_size: usize,
}

/// The statistics a span gives each band group, in the order of the model vector.
pub const STATISTICS: [&str; 3] = ["mean", "std", "max"];

impl BandGroups {
    /// Groups `n_mels` bands into at most `max_groups` groups of equal width (the last may
    /// be narrower).
    pub fn new(n_mels: usize, max_groups: usize) -> Self {
        let group_size = n_mels.div_ceil(max_groups.max(1)).max(1);
        Self { n_mels, group_size }
    }

    pub fn count(&self) -> usize {
        self.n_mels.div_ceil(self.group_size)
    }

    /// The mel bands of group `group`, as a range.
    pub fn bands(&self, group: usize) -> std::ops::Range<usize> {
        let start = group * self.group_size;
        start..(start + self.group_size).min(self.n_mels)
    }

    /// Model features per span: each statistic of each group.
    pub fn dimensions(&self) -> usize {
        STATISTICS.len() * self.count()
    }

    /// The model's view of per-band statistics: each group's average of `per_band[k]`, for
    /// each statistic `k` in the order of [`STATISTICS`].
    pub fn model_vector(&self, per_band: [&[f64]; 3], out: &mut Vec<f64>) {
        out.clear();
        for values in per_band {
            for group in 0..self.count() {
                let bands = self.bands(group);
                let width = bands.len() as f64;
                out.push(values[bands].iter().sum::<f64>() / width);
            }
        }
    }
}

/// Accumulates frames until a window is complete: per band, running sums and the maximum.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowAccumulator {
    n_mels: usize,
    window_frames: u32,
    frames: u32,
    first_frame: u64,
    sum: Vec<f64>,
    sum_squares: Vec<f64>,
    max: Vec<f32>,
}

impl WindowAccumulator {
    pub fn new(n_mels: usize, window_frames: u32) -> Self {
        Self {
            n_mels,
            window_frames: window_frames.max(1),
            frames: 0,
            first_frame: 0,
            sum: vec![0.0; n_mels],
            sum_squares: vec![0.0; n_mels],
            max: vec![f32::NEG_INFINITY; n_mels],
        }
    }

    /// Bands per frame and frames per window.
    pub fn shape(&self) -> (usize, u32) {
        (self.n_mels, self.window_frames)
    }

    /// Drops a partial window (after a gap in the audio).
    pub fn reset(&mut self) {
        self.frames = 0;
        self.sum.iter_mut().for_each(|v| *v = 0.0);
        self.sum_squares.iter_mut().for_each(|v| *v = 0.0);
        self.max.iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
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
        for (band, &value) in frame_db[..self.n_mels].iter().enumerate() {
            let value64 = f64::from(value);
            self.sum[band] += value64;
            self.sum_squares[band] += value64 * value64;
            self.max[band] = self.max[band].max(value);
        }
        self.frames += 1;
        if self.frames < self.window_frames {
            return None;
        }
        let count = f64::from(self.frames);
        let mean_db: Vec<f32> = self.sum.iter().map(|sum| (sum / count) as f32).collect();
        let std_db = self
            .sum
            .iter()
            .zip(&self.sum_squares)
            .map(|(sum, squares)| {
                let mean = sum / count;
                (squares / count - mean * mean).max(0.0).sqrt() as f32
            })
            .collect();
        let window = WindowFeatures {
            first_frame: self.first_frame,
            frame_count: self.frames,
            mean_db,
            std_db,
            max_db: self.max.clone(),
        };
        self.reset();
        Some(window)
    }

    /// Bytes of heap this accumulator holds.
    pub fn heap_bytes(&self) -> usize {
        (self.sum.capacity() + self.sum_squares.capacity()) * std::mem::size_of::<f64>()
            + self.max.capacity() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reports_mean_population_std_and_maximum_per_band() {
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
        assert_eq!(window.max_db, vec![3.0, 10.0]);
        // The next window starts afresh.
        let next = (0..4).find_map(|i| accumulator.push(11 + i, &[-5.0, 0.0])).unwrap();
        assert_eq!((next.first_frame, next.max_db.clone(), next.std_db.clone()), (11, vec![-5.0, 0.0], vec![0.0, 0.0]));
    }

    #[test]
    fn groups_average_neighbouring_bands() {
        let groups = BandGroups::new(5, 2);
        assert_eq!(groups.count(), 2);
        assert_eq!(groups.bands(1), 3..5);
        assert_eq!(groups.dimensions(), 6);
        let mean = [1.0, 2.0, 3.0, 4.0, 6.0];
        let std = [0.0; 5];
        let max = [2.0, 2.0, 2.0, 8.0, 8.0];
        let mut vector = Vec::new();
        groups.model_vector([&mean, &std, &max], &mut vector);
        assert_eq!(vector, vec![2.0, 5.0, 0.0, 0.0, 2.0, 8.0]);
        assert_eq!(BandGroups::new(64, 64).count(), 64);
        assert_eq!(BandGroups::new(128, 64).bands(63), 126..128);
    }
}
