//! PCM bytes to mono `f32` samples, with the checks that make the rest of the pipeline safe.
//!
//! Integers are scaled to [-1, 1) exactly as libsndfile (and so librosa and soundfile) scale them:
//! `s16 / 32768`, `s24 / 2^23`, `s32 / 2^31`, `(u8 - 128) / 128`. A non-finite float sample is
//! refused with its position, because one NaN would poison a machine's running statistics.

use auscult_schemas::SampleFormat;
use serde::{Deserialize, Serialize};

/// Which audio of a multi-channel recording is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChannelSelection {
    /// One channel, counted from 0 (MIMII and DCASE baselines use channel 0).
    Channel(u16),
    /// The mean of all channels.
    Mix,
    /// Channel 0.
    #[default]
    First,
}

/// Why samples could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("channel {wanted} was chosen but the audio has {channels} channel(s)")]
    NoSuchChannel { wanted: u16, channels: u16 },
    #[error("sample {index} is not a finite number ({value})")]
    NonFinite { index: usize, value: f32 },
    #[error("{bytes} bytes is not a whole number of {channels}-channel {format} frames")]
    Ragged { bytes: usize, channels: u16, format: SampleFormat },
}

/// Decodes interleaved little-endian PCM into mono samples appended to `out`.
pub fn decode_to_mono(
    payload: &[u8],
    format: SampleFormat,
    channels: u16,
    selection: ChannelSelection,
    out: &mut Vec<f32>,
) -> Result<(), DecodeError> {
    let channel_count = usize::from(channels.max(1));
    let sample_bytes = format.bytes_per_sample();
    let frame_bytes = sample_bytes * channel_count;
    if !payload.len().is_multiple_of(frame_bytes) {
        return Err(DecodeError::Ragged { bytes: payload.len(), channels, format });
    }
    let chosen = match selection {
        ChannelSelection::First => Some(0usize),
        ChannelSelection::Channel(wanted) if wanted < channels => Some(usize::from(wanted)),
        ChannelSelection::Channel(wanted) => return Err(DecodeError::NoSuchChannel { wanted, channels }),
        ChannelSelection::Mix => None,
    };
    let start = out.len();
    // One loop per format, so the per-sample conversion is inlined and vectorizable.
    match format {
        SampleFormat::U8 => convert(payload, frame_bytes, sample_bytes, chosen, channel_count, out, |b| {
            (f32::from(b[0]) - 128.0) / 128.0
        }),
        SampleFormat::S16le => convert(payload, frame_bytes, sample_bytes, chosen, channel_count, out, |b| {
            f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0
        }),
        SampleFormat::S24le => convert(payload, frame_bytes, sample_bytes, chosen, channel_count, out, |b| {
            (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0
        }),
        SampleFormat::S32le => convert(payload, frame_bytes, sample_bytes, chosen, channel_count, out, |b| {
            (f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) / 2_147_483_648.0) as f32
        }),
        SampleFormat::F32le => convert(payload, frame_bytes, sample_bytes, chosen, channel_count, out, |b| {
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }),
    }
    if format == SampleFormat::F32le {
        if let Some(offset) = out[start..].iter().position(|sample| !sample.is_finite()) {
            let value = out[start + offset];
            out.truncate(start);
            return Err(DecodeError::NonFinite { index: offset, value });
        }
    }
    Ok(())
}

/// Appends one channel (`chosen`) or the mean of all channels of every frame.
#[inline(always)]
fn convert(
    payload: &[u8],
    frame_bytes: usize,
    sample_bytes: usize,
    chosen: Option<usize>,
    channel_count: usize,
    out: &mut Vec<f32>,
    sample: impl Fn(&[u8]) -> f32,
) {
    let frames = payload.len() / frame_bytes;
    let start = out.len();
    out.resize(start + frames, 0.0);
    let slots = &mut out[start..];
    match chosen {
        Some(channel) => {
            let at = channel * sample_bytes;
            for (slot, frame) in slots.iter_mut().zip(payload.chunks_exact(frame_bytes)) {
                *slot = sample(&frame[at..at + sample_bytes]);
            }
        }
        None => {
            for (slot, frame) in slots.iter_mut().zip(payload.chunks_exact(frame_bytes)) {
                let sum: f32 = frame.chunks_exact(sample_bytes).map(&sample).sum();
                *slot = sum / channel_count as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(
        payload: &[u8],
        format: SampleFormat,
        channels: u16,
        selection: ChannelSelection,
    ) -> Result<Vec<f32>, DecodeError> {
        let mut out = Vec::new();
        decode_to_mono(payload, format, channels, selection, &mut out).map(|()| out)
    }

    #[test]
    fn integer_formats_scale_like_libsndfile() {
        assert_eq!(
            decode(&[0, 128, 255], SampleFormat::U8, 1, ChannelSelection::First).unwrap(),
            vec![-1.0, 0.0, 127.0 / 128.0]
        );
        let s16: Vec<u8> = [i16::MIN, -1, 16_384].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            decode(&s16, SampleFormat::S16le, 1, ChannelSelection::First).unwrap(),
            vec![-1.0, -1.0 / 32_768.0, 0.5]
        );
        let s24 = [0x00, 0x00, 0x80, 0xff, 0xff, 0xff, 0x00, 0x00, 0x40];
        assert_eq!(
            decode(&s24, SampleFormat::S24le, 1, ChannelSelection::First).unwrap(),
            vec![-1.0, -1.0 / 8_388_608.0, 0.5]
        );
        let s32: Vec<u8> = [i32::MIN, 1 << 30].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&s32, SampleFormat::S32le, 1, ChannelSelection::First).unwrap(), vec![-1.0, 0.5]);
    }

    #[test]
    fn channels_are_chosen_or_mixed() {
        let stereo: Vec<u8> = [100i16, 300, -100, -300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let scale = 32_768.0;
        assert_eq!(
            decode(&stereo, SampleFormat::S16le, 2, ChannelSelection::First).unwrap(),
            vec![100.0 / scale, -100.0 / scale]
        );
        assert_eq!(
            decode(&stereo, SampleFormat::S16le, 2, ChannelSelection::Channel(1)).unwrap(),
            vec![300.0 / scale, -300.0 / scale]
        );
        assert_eq!(
            decode(&stereo, SampleFormat::S16le, 2, ChannelSelection::Mix).unwrap(),
            vec![200.0 / scale, -200.0 / scale]
        );
        assert_eq!(
            decode(&stereo, SampleFormat::S16le, 2, ChannelSelection::Channel(2)),
            Err(DecodeError::NoSuchChannel { wanted: 2, channels: 2 })
        );
    }

    #[test]
    fn non_finite_floats_are_refused_and_nothing_is_appended() {
        let payload: Vec<u8> = [0.5f32, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0.25];
        let error = decode_to_mono(&payload, SampleFormat::F32le, 1, ChannelSelection::First, &mut out).unwrap_err();
        assert!(matches!(error, DecodeError::NonFinite { index: 1, .. }));
        assert_eq!(out, vec![0.25]);
    }
}
