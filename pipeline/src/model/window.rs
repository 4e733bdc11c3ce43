//! Pooling frames into windows: the unit that is scored, archived and alerted on.
//!
//! A window is `window_frames` consecutive log-mel frames. Per band it yields the mean and
//! standard deviation (dB, kept in the archive) and a time-weighted pooled level: the band's
//! values sorted from loudest to quietest and averaged with weights `decay^rank` (global
//! weighted rank pooling, as TWFR-GMM in DCASE 2022 uses). The mean describes the steady
//! spectrum; the pooled level leans towards the loud moments, so intermittent sounds (clicks,
//! rubs, a valve's strokes) that an average would dilute still move it.
//!
//! The model does not see all bands: neighbouring mel bands are averaged in groups
//! ([`WindowFeatures::model_vector`]) so that the profile's covariance has few enough
//! dimensions to be learned from minutes of audio.

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
    /// Per-band time-weighted pooled level (loudest first, weights `decay^rank`), dB.
    pub pooled_db: Vec<f32>,
}

/// How mel bands are grouped into model features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandGroups {
    n_mels: usize,
    group_size: usize,
}

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

    /// Model features per window: a mean and a pooled level per group.
    pub fn dimensions(&self) -> usize {
        2 * self.count()
    }
}

impl WindowFeatures {
    /// The model's view of the window: each group's mean level, then each group's pooled level.
    pub fn model_vector(&self, groups: &BandGroups, out: &mut Vec<f64>) {
        out.clear();
        for values in [&self.mean_db, &self.pooled_db] {
            for group in 0..groups.count() {
                let bands = groups.bands(group);
                let width = bands.len() as f64;
                out.push(values[bands].iter().map(|&v| f64::from(v)).sum::<f64>() / width);
            }
        }
    }
}

/// Accumulates frames until a window is complete.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowAccumulator {
    n_mels: usize,
    window_frames: u32,
    frames: u32,
    first_frame: u64,
    /// The window's frames so far, frame-major.
    values: Vec<f32>,
    /// Normalised rank weights, loudest first.
    weights: Vec<f64>,
    /// Scratch of pooling (not checkpointed).
    #[serde(skip)]
    column: Vec<f32>,
    #[serde(skip)]
    keys: Vec<u32>,
}

impl WindowAccumulator {
    pub fn new(n_mels: usize, window_frames: u32, pool_decay: f64) -> Self {
        let window_frames = window_frames.max(1);
        let raw: Vec<f64> = (0..window_frames).map(|rank| pool_decay.powi(rank as i32)).collect();
        let total: f64 = raw.iter().sum();
        Self {
            n_mels,
            window_frames,
            frames: 0,
            first_frame: 0,
            values: Vec::with_capacity(n_mels * window_frames as usize),
            weights: raw.iter().map(|w| w / total).collect(),
            column: Vec::with_capacity(window_frames as usize),
            keys: Vec::with_capacity(window_frames as usize),
        }
    }

    /// Bands per frame and frames per window.
    pub fn shape(&self) -> (usize, u32) {
        (self.n_mels, self.window_frames)
    }

    /// Drops a partial window (after a gap in the audio).
    pub fn reset(&mut self) {
        self.frames = 0;
        self.values.clear();
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
        self.values.extend_from_slice(&frame_db[..self.n_mels]);
        self.frames += 1;
        if self.frames < self.window_frames {
            return None;
        }
        let window = self.pool();
        self.reset();
        Some(window)
    }

    fn pool(&mut self) -> WindowFeatures {
        let count = f64::from(self.frames);
        let mut mean_db = Vec::with_capacity(self.n_mels);
        let mut std_db = Vec::with_capacity(self.n_mels);
        let mut pooled_db = Vec::with_capacity(self.n_mels);
        for band in 0..self.n_mels {
            self.column.clear();
            self.column.extend(self.values.iter().skip(band).step_by(self.n_mels));
            let mean = self.column.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
            let variance = self.column.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count;
            // Sorting integer keys of the same order is several times faster than comparing floats.
            self.keys.clear();
            self.keys.extend(self.column.iter().map(|&v| order_key(v)));
            self.keys.sort_unstable();
            let pooled: f64 =
                self.keys.iter().rev().zip(&self.weights).map(|(&key, w)| f64::from(from_order_key(key)) * w).sum();
            mean_db.push(mean as f32);
            std_db.push(variance.sqrt() as f32);
            pooled_db.push(pooled as f32);
        }
        WindowFeatures { first_frame: self.first_frame, frame_count: self.frames, mean_db, std_db, pooled_db }
    }

    /// Bytes of heap this accumulator holds.
    pub fn heap_bytes(&self) -> usize {
        (self.values.capacity() + self.column.capacity() + self.keys.capacity()) * std::mem::size_of::<f32>()
            + self.weights.capacity() * std::mem::size_of::<f64>()
    }
}

/// A `u32` that orders as the float does (IEEE 754 total order: flip all bits of negatives,
/// the sign bit of the rest).
fn order_key(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn from_order_key(key: u32) -> f32 {
    f32::from_bits(if key >> 31 == 1 { key & 0x7fff_ffff } else { !key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reports_mean_population_std_and_rank_pooled_level_per_band() {
        let mut accumulator = WindowAccumulator::new(2, 4, 0.5);
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
        // Sorted 3, 3, 1, 1 with weights 8, 4, 2, 1 over 15.
        let expected = (3.0 * 12.0 + 1.0 * 3.0) / 15.0;
        assert!((window.pooled_db[0] - expected as f32).abs() < 1e-6);
        assert!((window.pooled_db[1] - 10.0).abs() < 1e-6);
    }

    #[test]
    fn decay_one_pools_to_the_mean_and_a_small_decay_to_the_maximum() {
        let frames: Vec<[f32; 1]> = (0..8).map(|i| [i as f32]).collect();
        for (decay, expected) in [(1.0, 3.5), (1e-9, 7.0)] {
            let mut accumulator = WindowAccumulator::new(1, 8, decay);
            let window = frames.iter().enumerate().find_map(|(i, f)| accumulator.push(i as u64, f)).unwrap();
            assert!((window.pooled_db[0] - expected).abs() < 1e-5, "decay {decay}: {}", window.pooled_db[0]);
        }
    }

    #[test]
    fn order_keys_sort_as_the_floats_do_and_map_back() {
        let values = [-1e-10f32, 3.5, -120.0, 0.0, -0.0, 1e30, -1e30, 7.25e-5];
        let mut by_key = values.to_vec();
        by_key.sort_by_key(|&v| order_key(v));
        let mut by_value = values.to_vec();
        by_value.sort_by(f32::total_cmp);
        assert_eq!(by_key, by_value);
        assert!(values.iter().all(|&v| from_order_key(order_key(v)).to_bits() == v.to_bits()));
    }

    #[test]
    fn groups_average_neighbouring_bands() {
        let groups = BandGroups::new(5, 2);
        assert_eq!(groups.count(), 2);
        assert_eq!(groups.bands(1), 3..5);
        let window = WindowFeatures {
            first_frame: 0,
            frame_count: 1,
            mean_db: vec![1.0, 2.0, 3.0, 4.0, 6.0],
            std_db: vec![0.0; 5],
            pooled_db: vec![2.0, 2.0, 2.0, 8.0, 8.0],
        };
        let mut vector = Vec::new();
        window.model_vector(&groups, &mut vector);
        assert_eq!(vector, vec![2.0, 5.0, 2.0, 8.0]);
        assert_eq!(BandGroups::new(64, 64).count(), 64);
        assert_eq!(BandGroups::new(128, 64).bands(63), 126..128);
    }
}
