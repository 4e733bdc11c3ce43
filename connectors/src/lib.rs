//! auscult's connections to the outside world, one module per system.
//!
//! Sources turn audio into [`AudioChunk`](auscult_schemas::AudioChunk)s: [`wav`] files and
//! folders (with [`layout`] naming machines from paths), and the built-in [`simulator`];
//! [`kafka`] carries chunks from edge agents to the pipeline, and [`edge`] is the agent's
//! logic (streams merged in capture-time order, paced, produced).
//! Sinks take what the pipeline made: [`events`] writes anomaly events as JSON Lines, and
//! [`archive`] writes window rows as Hive-partitioned Parquet. [`metrics_endpoint`] serves
//! Prometheus metrics and health probes over HTTP. Nothing here knows about timely.

pub mod archive;
pub mod edge;
pub mod events;
pub mod kafka;
pub mod layout;
pub mod metrics_endpoint;
pub mod simulator;
pub mod wav;
