//! auscult's work: features, models and the dataflow that runs them.
//!
//! [`dsp`] turns PCM into log-mel frames as librosa does; [`model`] keeps each machine's normal
//! profile, scores windows, calibrates thresholds and runs the alert state machine; `dataflow`
//! assembles the timely graph that does all of it as a stream. The DSP and the model know
//! nothing of files, Kafka or timely.

pub mod checkpoint;
pub mod config;
pub mod dataflow;
pub mod dsp;
pub mod eval;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod sources;

pub use config::Config;
