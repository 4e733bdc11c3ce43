//! What crosses auscult's boundaries, and nothing else.
//!
//! Every other crate depends on this one: the audio chunk that edge agents and file sources
//! produce ([`chunk`]), the anomaly event the pipeline emits ([`event`], described by
//! `anomaly-event.schema.json` beside this crate), the archive row and its Arrow schema
//! ([`archive`]), the feature settings recorded with every feature ([`features`]) and the
//! machine identity with the one routing hash every component uses ([`machine`]).
//! No I/O happens here.

pub mod archive;
pub mod chunk;
pub mod event;
pub mod features;
pub mod machine;
pub mod registry;
pub mod time;

pub use archive::{archive_schema, AlertState, ProfileState, WindowRecord};
pub use chunk::{AudioChunk, ChunkError, ChunkOrigin, SampleFormat, CHUNK_SCHEMA_VERSION};
pub use event::{AlertLevel, AnomalyEvent, BandDeviation, EventKind, EVENT_SCHEMA_ID};
pub use features::FeatureSettings;
pub use machine::{partition_of, route_hash, MachineId, MachineIdError, MachineType};
pub use registry::{MachineEntry, RegistryError};
