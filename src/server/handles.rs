//! Handles: tokens of (shard, slot, generation) in a table of shared objects.
//!
//! A C module may keep a `httpsrv_session *` forever. The sessions' table is process-wide and
//! outlives every server, and a released slot's generation changes, so an old token finds nothing
//! and the caller gets `ESTALE` instead of touching freed memory.

use std::sync::Arc;

use parking_lot::Mutex;

const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;
const SLOT_BITS: u32 = 32 - SHARD_BITS;

/// A session token as C sees it (never 0, so never a NULL pointer).
pub type Handle = u64;

struct Slot<T> {
    generation: u32,
    object: Option<Arc<T>>,
}

struct Shard<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

/// Objects by handle, in shards so that threads inserting at once rarely share a lock.
pub struct Table<T> {
    shards: [Mutex<Shard<T>>; SHARDS],
}

fn encode(shard: usize, index: u32, generation: u32) -> Handle {
    (u64::from(generation) << 32) | (u64::from(index) << SHARD_BITS) | shard as u64
}

fn decode(handle: Handle) -> (usize, usize, u32) {
    let shard = (handle as usize) & (SHARDS - 1);
    let index = ((handle as u32) >> SHARD_BITS) as usize;
    (shard, index, (handle >> 32) as u32)
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Table<T> {
    pub const fn new() -> Table<T> {
        Table {
            shards: [const {
                Mutex::new(Shard {
                    slots: Vec::new(),
                    free: Vec::new(),
                })
            }; SHARDS],
        }
    }

    /// Stores an object and returns its new token. `shard_hint` spreads threads over shards.
    pub fn insert(&self, shard_hint: usize, make: impl FnOnce(Handle) -> Arc<T>) -> Option<Handle> {
        let shard_index = shard_hint % SHARDS;
        let mut shard = self.shards[shard_index].lock();
        let index = match shard.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(shard.slots.len()).ok()?;
                if i >= (1 << SLOT_BITS) {
                    return None;
                }
                // Generation 0 is never handed out, so a zeroed pointer can never match.
                shard.slots.push(Slot {
                    generation: 1,
                    object: None,
                });
                i
            }
        };
        let slot = &mut shard.slots[index as usize];
        let handle = encode(shard_index, index, slot.generation);
        slot.object = Some(make(handle));
        Some(handle)
    }

    /// The live object for a token, or None when the token is stale or was never issued.
    #[inline]
    pub fn get(&self, handle: Handle) -> Option<Arc<T>> {
        let (shard, index, generation) = decode(handle);
        let shard = self.shards[shard].lock();
        let slot = shard.slots.get(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.object.clone()
    }

    /// Releases a token: from now on it is stale. Releasing twice is harmless.
    #[inline]
    pub fn remove(&self, handle: Handle) {
        let (shard_index, index, generation) = decode(handle);
        let removed = {
            let mut shard = self.shards[shard_index].lock();
            let Some(slot) = shard.slots.get_mut(index) else {
                return;
            };
            if slot.generation != generation || slot.object.is_none() {
                return;
            }
            slot.generation = slot.generation.wrapping_add(1).max(1);
            let s = slot.object.take();
            shard.free.push(index as u32);
            s
        };
        // The object may hold the last reference to large buffers: drop it outside the lock.
        drop(removed);
    }
}
