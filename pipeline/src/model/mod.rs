//! The per-machine model: normal profile, scores, thresholds, alerts. Pure code, no I/O.
//!
//! [`MachineMonitor`] is everything auscult keeps about one machine, fed one chunk at a time;
//! the dataflow keeps one per machine on the worker that owns it, and `auscult eval` drives
//! the same type directly, so both score identically.

pub mod alert;

pub mod monitor;
pub mod profile;
pub mod span;
pub mod subspace;
pub mod threshold;
pub mod window;

pub use monitor::{MachineMonitor, MonitorError, MonitorOutput, MonitorSnapshot, MonitorStats, RestoreError};
