//! Machine identity and the routing hash.
//!
//! A machine is named by a [`MachineId`] (unique in a deployment) and has a [`MachineType`]
//! (fan, pump, ...). Both are short, printable and safe to use in a file path, because the type
//! becomes a Hive partition folder of the archive. [`route_hash`] decides which timely worker owns
//! a machine the run did not know up front (the pipeline balances the machines it does know): it
//! is well mixed in its low bits, because timely routes by `hash & mask` when the worker count is
//! a power of two.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted machine id or type, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Why a machine id or type was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineIdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// `start`: the name's first 32 characters (a 10 kB name does not go into every log line).
    #[error("{what} starting {start:?} is {bytes} bytes, longer than {MAX_NAME_BYTES}")]
    TooLong { what: &'static str, start: String, bytes: usize },
    #[error("{what} {name:?} has a character other than A-Z a-z 0-9 . _ -")]
    BadCharacter { what: &'static str, name: String },
}

fn validate(what: &'static str, name: &str) -> Result<(), MachineIdError> {
    if name.is_empty() {
        return Err(MachineIdError::Empty { what });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(MachineIdError::TooLong { what, start: name.chars().take(32).collect(), bytes: name.len() });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(allowed) || name.starts_with('.') {
        return Err(MachineIdError::BadCharacter { what, name: name.to_owned() });
    }
    Ok(())
}

macro_rules! name_newtype {
    ($name:ident, $what:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks the name (1 to 128 bytes of `A-Z a-z 0-9 . _ -`, not starting with a dot).
            pub fn new(name: impl Into<String>) -> Result<Self, MachineIdError> {
                let name = name.into();
                validate($what, &name)?;
                Ok(Self(name))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = MachineIdError;
            fn try_from(name: String) -> Result<Self, Self::Error> {
                Self::new(name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_newtype!(MachineId, "machine id", "The unique name of one machine, e.g. `fan-id_00`.");
name_newtype!(MachineType, "machine type", "The kind of machine, e.g. `fan`; a partition key of the archive.");

/// The routing hash of a machine: FNV-1a over the id's bytes, then the SplitMix64 finalizer so
/// that every bit (the low ones included) depends on every byte. Stable across processes,
/// platforms and releases: it decides which worker owns a machine's state.
pub fn route_hash(machine_id: &MachineId) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for byte in machine_id.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    mix64(hash)
}

/// The partition of the audio topic that carries a machine's chunks, among `partitions`: its
/// [`route_hash`] modulo the count. The agent sends there, and the pipeline's worker that
/// reads that partition owns the machine, so in a stable topic no chunk crosses between
/// workers or processes after it is read.
pub fn partition_of(machine_id: &MachineId, partitions: u32) -> i32 {
    i32::try_from(route_hash(machine_id) % u64::from(partitions.max(1))).unwrap_or(0)
}

/// SplitMix64's finalizer: a bijection on u64 with full avalanche.
pub fn mix64(mut value: u64) -> u64 {
    value ^= value >> 30;
    value = value.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value ^= value >> 27;
    value = value.wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_alphabet_are_refused() {
        assert!(MachineId::new("fan-07").is_ok());
        assert!(matches!(MachineId::new(""), Err(MachineIdError::Empty { .. })));
        assert!(matches!(MachineId::new("a/b"), Err(MachineIdError::BadCharacter { .. })));
        assert!(matches!(MachineId::new(".."), Err(MachineIdError::BadCharacter { .. })));
        assert!(matches!(MachineType::new("x".repeat(129)), Err(MachineIdError::TooLong { .. })));
    }

    #[test]
    fn route_hash_spreads_similar_ids_over_two_workers() {
        let ids: Vec<MachineId> = (0..64).map(|i| MachineId::new(format!("fan-{i:02}")).unwrap()).collect();
        let on_worker_one = ids.iter().filter(|id| route_hash(id) & 1 == 1).count();
        assert!((20..=44).contains(&on_worker_one), "{on_worker_one} of 64 on worker 1");
    }

    #[test]
    fn partitions_follow_the_route_hash_and_stay_in_range() {
        for i in 0..200 {
            let id = MachineId::new(format!("pump-{i:03}")).unwrap();
            for partitions in [1u32, 3, 4, 12] {
                let partition = partition_of(&id, partitions);
                assert!((0..partitions as i32).contains(&partition));
                assert_eq!(partition as u64, route_hash(&id) % u64::from(partitions));
            }
        }
        // With as many workers as partitions (or a divisor of them), the partition's reader and
        // the route hash's worker agree.
        let id = MachineId::new("fan-07").unwrap();
        assert_eq!(partition_of(&id, 8) as u64 % 4, route_hash(&id) % 4);
        assert_eq!(partition_of(&id, 0), 0, "a zero count is taken as one partition");
    }

    #[test]
    fn serde_refuses_invalid_ids() {
        let parsed: Result<MachineId, _> = serde_json::from_str("\"bad id\"");
        assert!(parsed.is_err());
        let parsed: MachineId = serde_json::from_str("\"pump-id_02\"").unwrap();
        assert_eq!(parsed.as_str(), "pump-id_02");
    }
}
