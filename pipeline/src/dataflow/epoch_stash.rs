//! Records held until their epoch is complete: every operator that acts per epoch (the
//! monitors and the sinks) stashes what arrives, each epoch held by a capability, and takes an
//! epoch out only once its input frontier has passed it. Holding the capability keeps
//! downstream operators (and the `durable` probe) from passing the epoch before it is handled.

use std::collections::BTreeMap;
use timely::communication::Pull;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::Capability;

/// Records waiting for their epoch to be complete.
pub(super) struct EpochStash<D> {
    epochs: BTreeMap<u64, (Capability<u64>, Vec<D>)>,
}

impl<D> Default for EpochStash<D> {
    fn default() -> Self {
        Self { epochs: BTreeMap::new() }
    }
}

impl<D> EpochStash<D> {
    /// Moves what arrived on `input` into the stash, retaining a capability on `output_index`.
    pub(super) fn take<P: Pull<Message<u64, Vec<D>>>>(
        &mut self,
        input: &mut InputHandleCore<u64, Vec<D>, P>,
        output_index: usize,
    ) {
        input.for_each_stamp(|capability, data| {
            let Some(capability) = capability.retain_least(output_index) else {
                return;
            };
            let (_, records) = self.epochs.entry(*capability.time()).or_insert_with(|| (capability, Vec::new()));
            data.for_each(|container| records.append(container));
        });
    }

    /// The earliest stashed epoch, if `finished` says it is complete.
    pub(super) fn pop_finished(&mut self, finished: impl Fn(&u64) -> bool) -> Option<(u64, Capability<u64>, Vec<D>)> {
        let entry = self.epochs.first_entry()?;
        if !finished(entry.key()) {
            return None;
        }
        let (epoch, (capability, records)) = entry.remove_entry();
        Some((epoch, capability, records))
    }
}
