//! The source table: which sources are tracked, found by address through a
//! keyed open-addressing index, and kept in a two-segment LRU that decides
//! whom to evict when the table is full.
//!
//! Each slot carries a payload `P` (the matcher's attempts) and is one
//! 64-byte cache line, so looking at a source costs one miss for the index
//! entry and one for the slot.
//!
//! # Eviction
//! A new source starts in *probation*; [`SourceTable::touch`] moves a source
//! to the front of probation or of *protected* (sources past a sequence's
//! first step). Protected holds at most `capacity - max(1, capacity / 4)`
//! sources: the oldest fall back to probation. A newcomer in a full table
//! evicts the least recently active probation source (protected only when
//! probation is empty), so no flood of first knocks ever evicts a source
//! that reached step 2.
//!
//! # Hashing
//! Source addresses are attacker-chosen, so the index (linear probing, load
//! at most 1/2) hashes them with a keyed two-round folded multiply whose
//! keys are drawn from the standard library's per-process random
//! `RandomState`: without the key, nobody can aim addresses at one probe
//! chain. SipHash-1-3 measured 7.7 ns per address against 1.4 ns (see
//! `benches/matcher.rs`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// "No slot": ends of lists and empty links.
pub(crate) const NIL: u32 = u32::MAX;
/// How many evictions ahead [`SourceTable::prefetch_victims`] warms the
/// victim's memory: far enough for a DRAM miss to complete behind a few
/// frames of work.
const VICTIMS_AHEAD: usize = 4;

/// Which list a slot is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    /// Unused, on the free list.
    Free,
    /// Tracked, every attempt at step 1.
    Probation,
    /// Tracked, past step 1 in some attempt.
    Protected,
}

/// One tracked source and its payload, a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Slot<P> {
    addr: [u64; 2],
    prev: u32,
    next: u32,
    v4: bool,
    seg: Seg,
    /// The owner's data about this source.
    pub(crate) data: P,
}

/// Ends of an intrusive list: `head` is the most recent.
#[derive(Debug, Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// A source address as the table keys it: two words and the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    addr: [u64; 2],
    v4: bool,
}

impl Key {
    /// The key of an address.
    pub(crate) fn of(src: IpAddr) -> Key {
        match src {
            IpAddr::V4(a) => Key {
                addr: [0, u64::from(u32::from(a))],
                v4: true,
            },
            IpAddr::V6(a) => {
                let v = u128::from(a);
                Key {
                    addr: [(v >> 64) as u64, v as u64],
                    v4: false,
                }
            }
        }
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// At most `capacity` sources with a payload each; see the module docs.
pub(crate) struct SourceTable<P> {
    slots: Vec<Slot<P>>,
    /// Open addressing, linear probing: `hash << 32 | slot + 1`, 0 = empty.
    index: Box<[u64]>,
    mask: usize,
    keys: [u64; 4],
    free: u32,
    probation: Ends,
    protected: Ends,
    capacity: usize,
    protected_cap: usize,
    evictions: u64,
}

impl<P> std::fmt::Debug for SourceTable<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTable")
            .field("probation", &self.probation.len)
            .field("protected", &self.protected.len)
            .field("capacity", &self.capacity)
            .field("evictions", &self.evictions)
            .finish()
    }
}

impl<P: Copy> SourceTable<P> {
    /// An empty table for `capacity` sources (at least 1). Slots are
    /// allocated as sources arrive; the index is allocated at once.
    pub(crate) fn new(capacity: usize) -> SourceTable<P> {
        let capacity = capacity.max(1);
        let entries = (capacity * 2).next_power_of_two().max(16);
        let rs = RandomState::new();
        let mut keys = [0u64; 4];
        for (i, k) in keys.iter_mut().enumerate() {
            let mut h = rs.build_hasher();
            h.write_usize(i);
            *k = h.finish();
        }
        keys[3] |= 1;
        SourceTable {
            slots: Vec::new(),
            index: vec![0; entries].into_boxed_slice(),
            mask: entries - 1,
            keys,
            free: NIL,
            probation: EMPTY,
            protected: EMPTY,
            capacity,
            protected_cap: capacity - (capacity / 4).max(1),
            evictions: 0,
        }
    }

    /// Sources tracked at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sources tracked now.
    pub(crate) fn len(&self) -> usize {
        self.probation.len + self.protected.len
    }

    /// Sources evicted to make room so far.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Slots allocated so far (tracked or free); slot numbers are below it.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Entries of the index (twice the capacity, a power of two).
    #[cfg(test)]
    pub(crate) fn index_len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    pub(crate) fn hash(&self, key: Key) -> u32 {
        let x = fold(key.addr[0] ^ self.keys[0], key.addr[1] ^ self.keys[1]);
        let y = fold(x ^ self.keys[2] ^ u64::from(key.v4), self.keys[3]);
        (y >> 32) as u32
    }

    /// The slot tracking `key` (`h` is its hash).
    #[inline]
    pub(crate) fn find(&self, h: u32, key: Key) -> Option<u32> {
        let mut i = h as usize & self.mask;
        loop {
            let e = self.index[i];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == h {
                let s = (e as u32).wrapping_sub(1);
                let slot = &self.slots[s as usize];
                if slot.addr == key.addr && slot.v4 == key.v4 {
                    return Some(s);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Starts loading the index entry a lookup of `key` probes first.
    #[inline]
    pub(crate) fn prefetch(&self, key: Key) {
        if let Some(e) = self.index.get(self.hash(key) as usize & self.mask) {
            crate::sys::prefetch(e);
        }
    }

    /// The address a tracked slot stands for.
    pub(crate) fn addr(&self, s: u32) -> IpAddr {
        let slot = &self.slots[s as usize];
        if slot.v4 {
            IpAddr::V4(Ipv4Addr::from(slot.addr[1] as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                (u128::from(slot.addr[0]) << 64) | u128::from(slot.addr[1]),
            ))
        }
    }

    /// Which list slot `s` is on.
    pub(crate) fn seg(&self, s: u32) -> Seg {
        self.slots[s as usize].seg
    }

    pub(crate) fn data(&self, s: u32) -> &P {
        &self.slots[s as usize].data
    }

    pub(crate) fn data_mut(&mut self, s: u32) -> &mut P {
        &mut self.slots[s as usize].data
    }

    fn index_insert(&mut self, h: u32, s: u32) {
        let mut i = h as usize & self.mask;
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = (u64::from(h) << 32) | u64::from(s + 1);
    }

    fn index_remove(&mut self, s: u32) {
        let slot = &self.slots[s as usize];
        let h = self.hash(Key {
            addr: slot.addr,
            v4: slot.v4,
        });
        let want = (u64::from(h) << 32) | u64::from(s + 1);
        let mut i = h as usize & self.mask;
        loop {
            match self.index[i] {
                0 => return, // not indexed: nothing to do
                e if e == want => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        // Backward-shift deletion keeps probe chains unbroken without
        // tombstones.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.index[j];
            if e == 0 {
                break;
            }
            let home = (e >> 32) as usize & self.mask;
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                self.index[i] = e;
                i = j;
            }
        }
        self.index[i] = 0;
    }

    fn ends(&mut self, seg: Seg) -> Option<&mut Ends> {
        match seg {
            Seg::Probation => Some(&mut self.probation),
            Seg::Protected => Some(&mut self.protected),
            Seg::Free => None,
        }
    }

    fn unlink(&mut self, s: u32) {
        let Slot {
            prev, next, seg, ..
        } = self.slots[s as usize];
        let Some(ends) = self.ends(seg) else { return };
        if prev == NIL {
            ends.head = next;
        }
        if next == NIL {
            ends.tail = prev;
        }
        ends.len -= 1;
        if prev != NIL {
            self.slots[prev as usize].next = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        }
        let slot = &mut self.slots[s as usize];
        slot.prev = NIL;
        slot.next = NIL;
        slot.seg = Seg::Free;
    }

    /// Links an unlinked `s` as the most recent of `seg`.
    #[inline]
    fn push(&mut self, s: u32, seg: Seg) {
        let Some(ends) = self.ends(seg) else { return };
        let old = ends.head;
        ends.head = s;
        if old == NIL {
            ends.tail = s;
        }
        ends.len += 1;
        if old != NIL {
            self.slots[old as usize].prev = s;
        }
        let slot = &mut self.slots[s as usize];
        slot.prev = NIL;
        slot.next = old;
        slot.seg = seg;
    }

    /// Marks `s` as just active, at the front of `seg` (probation or
    /// protected); protected's oldest fall back to probation past its limit.
    pub(crate) fn touch(&mut self, s: u32, seg: Seg) {
        debug_assert_ne!(seg, Seg::Free);
        self.unlink(s);
        self.push(s, seg);
        while self.protected.len > self.protected_cap {
            let old = self.protected.tail;
            self.unlink(old);
            self.push(old, Seg::Probation);
        }
    }

    /// Moves `s` to probation keeping its age (after its last step-2
    /// attempt lapsed): it goes behind every source more recently active.
    pub(crate) fn demote(&mut self, s: u32) {
        if self.seg(s) == Seg::Protected {
            self.unlink(s);
            self.push(s, Seg::Probation);
        }
    }

    /// Forgets `s`; its payload is left as it was for the caller to read.
    pub(crate) fn release(&mut self, s: u32) {
        if self.seg(s) == Seg::Free {
            return;
        }
        self.index_remove(s);
        self.unlink(s);
        let slot = &mut self.slots[s as usize];
        slot.next = self.free;
        self.free = s;
    }

    /// Evicts the least recently active probation source (protected only
    /// when probation is empty) other than `keep`; returns its slot, now
    /// free, whose payload the caller still has to clean up.
    #[inline]
    pub(crate) fn evict(&mut self, keep: u32) -> Option<u32> {
        let skip = |tail: u32| match self.slots.get(keep as usize) {
            Some(k) if tail == keep => k.prev,
            _ => tail,
        };
        let mut victim = skip(self.probation.tail);
        if victim == NIL {
            victim = skip(self.protected.tail);
        }
        if victim == NIL {
            return None;
        }
        self.release(victim);
        self.evictions += 1;
        Some(victim)
    }

    /// Under a flood of newcomers every frame evicts the probation tail, and
    /// each eviction misses the cache on the victim's slot and index entry.
    /// Warm them a few evictions ahead: walk from the tail over slots
    /// earlier calls warmed (cheap reads), then warm the index entry of the
    /// victim `VICTIMS_AHEAD - 1` evictions away and the slot of the one
    /// after it.
    fn prefetch_victims(&self) {
        let mut t = self.probation.tail;
        for _ in 0..VICTIMS_AHEAD - 2 {
            match self.slots.get(t as usize) {
                Some(s) => t = s.prev,
                None => return,
            }
        }
        let Some(v) = self.slots.get(t as usize) else {
            return;
        };
        self.prefetch(Key {
            addr: v.addr,
            v4: v.v4,
        });
        if let Some(after) = self.slots.get(v.prev as usize) {
            crate::sys::prefetch(after);
        }
    }

    /// A slot for a new source `key` (hash `h`) at the front of probation,
    /// its payload `data`. In a full table this evicts (see
    /// [`evict`](Self::evict)) and returns the victim's old payload too.
    pub(crate) fn insert(&mut self, h: u32, key: Key, data: P) -> (u32, Option<P>) {
        let fresh = Slot {
            addr: key.addr,
            prev: NIL,
            next: NIL,
            v4: key.v4,
            seg: Seg::Free,
            data,
        };
        let mut evicted = None;
        let s = if self.free != NIL {
            let s = self.free;
            self.free = self.slots[s as usize].next;
            self.slots[s as usize] = fresh;
            s
        } else if self.slots.len() < self.capacity {
            self.slots.push(fresh);
            (self.slots.len() - 1) as u32
        } else {
            // Never NIL: the table is full and holds at least one source.
            let victim = self.evict(NIL).unwrap_or(0);
            evicted = Some(self.slots[victim as usize].data);
            self.prefetch_victims();
            self.free = self.slots[victim as usize].next;
            self.slots[victim as usize] = fresh;
            victim
        };
        self.index_insert(h, s);
        self.push(s, Seg::Probation);
        (s, evicted)
    }

    /// Checks every structural invariant and returns the tracked slots;
    /// `O(everything)`, tests only.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Vec<u32> {
        let mut seen = vec![false; self.slots.len()];
        let mut tracked = Vec::new();
        for (ends, seg) in [
            (&self.probation, Seg::Probation),
            (&self.protected, Seg::Protected),
        ] {
            let (mut s, mut prev, mut n) = (ends.head, NIL, 0);
            while s != NIL {
                let slot = &self.slots[s as usize];
                assert_eq!(slot.seg, seg);
                assert_eq!(slot.prev, prev);
                assert!(!seen[s as usize]);
                seen[s as usize] = true;
                tracked.push(s);
                n += 1;
                prev = s;
                s = slot.next;
            }
            assert_eq!(ends.tail, prev);
            assert_eq!(ends.len, n);
        }
        assert!(self.protected.len <= self.protected_cap);
        for &s in &tracked {
            let slot = &self.slots[s as usize];
            let key = Key {
                addr: slot.addr,
                v4: slot.v4,
            };
            assert_eq!(self.find(self.hash(key), key), Some(s));
        }
        assert_eq!(
            self.index.iter().filter(|&&e| e != 0).count(),
            tracked.len()
        );
        tracked
    }

    /// Protected's limit, for tests.
    #[cfg(test)]
    pub(crate) fn protected_len(&self) -> (usize, usize) {
        (self.protected.len, self.protected_cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u32) -> Key {
        Key::of(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot<[u8; 36]>>(), 64);
        assert_eq!(std::mem::align_of::<Slot<u32>>(), 64);
    }

    #[test]
    fn finds_inserts_and_evicts_the_oldest_probation_source() {
        let mut t: SourceTable<u32> = SourceTable::new(3);
        for n in 1..=3 {
            let (s, ev) = t.insert(t.hash(v4(n)), v4(n), n);
            assert_eq!((s, ev), (n - 1, None));
        }
        // 1 reached step 2: protected; 2 is then the oldest in probation.
        t.touch(0, Seg::Protected);
        let (s, ev) = t.insert(t.hash(v4(4)), v4(4), 4);
        assert_eq!((s, ev), (1, Some(2)));
        assert_eq!(t.find(t.hash(v4(2)), v4(2)), None);
        assert_eq!(t.find(t.hash(v4(4)), v4(4)), Some(1));
        assert_eq!(*t.data(1), 4);
        assert_eq!(t.addr(1), IpAddr::V4(Ipv4Addr::from(4)));
        assert_eq!((t.len(), t.evictions()), (3, 1));
        // Protected holds at most 3 - 1 = 2.
        t.touch(1, Seg::Protected);
        t.touch(2, Seg::Protected);
        assert_eq!(t.protected_len(), (2, 2));
        assert_eq!(t.seg(0), Seg::Probation);
        t.check();
        // Evicting spares `keep`.
        assert_eq!(t.evict(0), Some(1));
        t.release(0);
        assert_eq!(t.len(), 1);
        t.check();
    }

    #[test]
    fn evicting_spares_keep_even_when_it_is_probations_only_source() {
        let mut t: SourceTable<u8> = SourceTable::new(8);
        for n in 0..3 {
            let (s, _) = t.insert(t.hash(v4(n)), v4(n), n as u8);
            if n < 2 {
                t.touch(s, Seg::Protected);
            }
        }
        // Probation is [2]: keeping 2 takes protected's oldest, 0.
        assert_eq!(t.evict(2), Some(0));
        assert_eq!(t.evict(2), Some(1));
        assert_eq!(t.evict(2), None);
        assert_eq!(t.evict(NIL), Some(2));
        assert_eq!(t.evict(NIL), None);
        t.check();
    }

    #[test]
    fn many_sources_keep_the_index_consistent() {
        let mut t: SourceTable<()> = SourceTable::new(64);
        let mut x = 7u32;
        for i in 0..5000u32 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let k = v4(x >> 20);
            match t.find(t.hash(k), k) {
                Some(s) if i % 3 == 0 => t.release(s),
                Some(s) => t.touch(s, Seg::Protected),
                None => {
                    t.insert(t.hash(k), k, ());
                }
            }
        }
        assert_eq!(t.check().len(), t.len());
        assert!(t.len() <= 64);
    }
}
