//! The handle table: how a `tenure_client *` (or any other handle) that C holds is turned
//! back into a Rust object, safely even when C passes a freed, consumed or foreign handle.
//!
//! A handle is not the address of the object. It is a number, `(generation << 20) | (index +
//! 1)`, cast to the opaque pointer type; C never dereferences it. `index` names a slot in a
//! global table whose memory is never returned to the allocator (chunks of 1024 slots are
//! added as needed and live as long as the process), so looking a handle up never reads freed
//! memory. A slot holds a *generation* counter, the handle *kind* (client, lock, ...) and the
//! object. Freeing a handle takes the object out and increments the slot's generation, so
//! every copy of the old handle stops matching, also after the slot is reused for a new
//! object. Use after free, double free, use of a consumed builder and a handle of the wrong
//! type are therefore detected on every call: they return `TENURE_STATUS_INVALID_HANDLE` (or
//! the documented default, or do nothing for `_free`). On 64-bit targets the generation has
//! 44 bits, so a stale handle could match again only after 2^44 reuses of one slot.
//!
//! Calls on a handle lock its slot only long enough to read the object, or to clone the
//! `Arc` it keeps; blocking work (waiting for a lock, closing a client) runs after the slot
//! is unlocked, so freeing never waits for a blocked call on another thread, and a callback
//! can free its own handle. A few immutable fields (a lock's fencing token) are also copied
//! into the slot and read without a lock, with a generation check before and after the read.

use crate::status::{fail, tenure_status, R};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const CHUNK_BITS: u32 = 10;
const CHUNK_SIZE: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 1 << (INDEX_BITS - CHUNK_BITS);
/// Most handles alive at once (index 0 ..= MAX_INDEX - 1, stored as index + 1).
const MAX_INDEX: u32 = (1 << INDEX_BITS) - 1;
/// Bits of the generation carried in a handle.
const GEN_BITS: u32 = usize::BITS - INDEX_BITS;
const GEN_MASK: u64 = if GEN_BITS >= 64 {
    u64::MAX
} else {
    (1u64 << GEN_BITS) - 1
};
const KIND_BITS: u32 = 8;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;

/// What a handle refers to. Stored in the slot; 0 means free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    ServerBuilder = 1,
    Server = 2,
    ClientBuilder = 3,
    Client = 4,
    Subscription = 5,
    Lock = 6,
    Election = 7,
    CandidacyBuilder = 8,
    Membership = 9,
    ServiceStatus = 10,
    DetectorBuilder = 11,
    Detector = 12,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ServerBuilder => "tenure_server_builder",
            Kind::Server => "tenure_server",
            Kind::ClientBuilder => "tenure_client_builder",
            Kind::Client => "tenure_client",
            Kind::Subscription => "tenure_subscription",
            Kind::Lock => "tenure_lock",
            Kind::Election => "tenure_election",
            Kind::CandidacyBuilder => "tenure_candidacy_builder",
            Kind::Membership => "tenure_membership",
            Kind::ServiceStatus => "tenure_service_status",
            Kind::DetectorBuilder => "tenure_detector_builder",
            Kind::Detector => "tenure_detector",
        }
    }
}

/// The objects handles refer to.
pub(crate) enum Obj {
    ServerBuilder(tenure::ServerConfig),
    Server(crate::server::ServerObj),
    ClientBuilder(tenure::ClientConfig),
    Client(tenure::Client),
    Subscription(crate::client::SubObj),
    Lock(crate::lock::LockObj),
    Election(crate::election::ElectionObj),
    CandidacyBuilder(tenure::client::Candidacy),
    Membership(std::sync::Arc<crate::group::MembershipObj>),
    ServiceStatus(tenure::proto::StatusInfo),
    DetectorBuilder(tenure::detector::UdpConfig),
    Detector(tenure::detector::Detector),
}

struct Slot {
    /// `(generation << 8) | kind`; kind 0 while the slot is free. Changed only with `obj`
    /// locked.
    meta: AtomicU64,
    /// An immutable field of the object, readable without the lock.
    fast: AtomicU64,
    obj: Mutex<Option<Obj>>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            meta: AtomicU64::new(1 << KIND_BITS),
            fast: AtomicU64::new(0),
            obj: Mutex::new(None),
        }
    }
}

struct Table {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    free: Mutex<Free>,
}

struct Free {
    /// Freed slots, reused oldest first (so a stale handle's slot is reused late).
    queue: VecDeque<u32>,
    /// Slots ever used.
    used: u32,
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// Handles alive (inserted and not yet taken).
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// The number of handles alive.
pub(crate) fn alive() -> usize {
    ALIVE.load(Ordering::Relaxed)
}

fn table() -> &'static Table {
    TABLE.get_or_init(|| Table {
        chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        free: Mutex::new(Free {
            queue: VecDeque::new(),
            used: 0,
        }),
    })
}

fn slot_at(t: &Table, index: u32) -> Option<&Slot> {
    let i = index as usize;
    t.chunks
        .get(i >> CHUNK_BITS)?
        .get()?
        .get(i & (CHUNK_SIZE - 1))
}

fn invalid(kind: Kind) -> crate::status::Fail {
    fail(
        tenure_status::InvalidHandle,
        format!(
            "not a live {}: freed already, consumed by an earlier call, of another type, or never \
             returned by tenure",
            kind.name()
        ),
    )
}

fn null_check(h: usize, kind: Kind) -> R<()> {
    if h == 0 {
        return Err(fail(
            tenure_status::NullArgument,
            format!("the {} argument is NULL", kind.name()),
        ));
    }
    Ok(())
}

/// Splits a handle into (index, generation bits).
fn decode(h: usize) -> Option<(u32, u64)> {
    let h = h as u64;
    let low = h & INDEX_MASK;
    if low == 0 {
        return None;
    }
    Some(((low - 1) as u32, (h >> INDEX_BITS) & GEN_MASK))
}

fn matches(meta: u64, gen: u64, kind: Kind) -> bool {
    meta & KIND_MASK == kind as u64 && (meta >> KIND_BITS) & GEN_MASK == gen
}

/// Finds the slot a handle names, if the handle could be valid.
fn lookup(h: usize) -> Option<(&'static Slot, u64)> {
    let (index, gen) = decode(h)?;
    let t = TABLE.get()?;
    Some((slot_at(t, index)?, gen))
}

/// Stores `obj` in a free slot and returns its handle. `fast` is the value
/// [`fast`] returns for it.
pub(crate) fn insert(kind: Kind, obj: Obj, fast_value: u64) -> R<usize> {
    let t = table();
    let index = {
        let mut f = t.free.lock();
        match f.queue.pop_front() {
            Some(i) => i,
            None => {
                if f.used >= MAX_INDEX {
                    return Err(fail(
                        tenure_status::Limit,
                        format!("more than {MAX_INDEX} tenure handles alive at once"),
                    ));
                }
                let i = f.used;
                let c = i as usize >> CHUNK_BITS;
                t.chunks[c].get_or_init(|| (0..CHUNK_SIZE).map(|_| Slot::new()).collect());
                f.used += 1;
                i
            }
        }
    };
    let slot = slot_at(t, index).expect("allocated slot");
    let mut g = slot.obj.lock();
    let gen = slot.meta.load(Ordering::Relaxed) >> KIND_BITS;
    *g = Some(obj);
    // Seqlock order for readers of `fast` (see `fast`): the slot's free (generation change)
    // is ordered before the new value.
    fence(Ordering::Release);
    slot.fast.store(fast_value, Ordering::Relaxed);
    slot.meta
        .store((gen << KIND_BITS) | kind as u64, Ordering::Release);
    drop(g);
    ALIVE.fetch_add(1, Ordering::Relaxed);
    let h = ((gen & GEN_MASK) << INDEX_BITS) | (index as u64 + 1);
    Ok(h as usize)
}

/// Runs `f` on the object of a live handle of kind `kind`, with its slot locked. `f` must not
/// block or call user code.
pub(crate) fn with<T>(h: usize, kind: Kind, f: impl FnOnce(&mut Obj) -> T) -> R<T> {
    null_check(h, kind)?;
    let Some((slot, gen)) = lookup(h) else {
        return Err(invalid(kind));
    };
    let mut g = slot.obj.lock();
    if !matches(slot.meta.load(Ordering::Relaxed), gen, kind) {
        return Err(invalid(kind));
    }
    match g.as_mut() {
        Some(o) => Ok(f(o)),
        None => Err(invalid(kind)),
    }
}

/// The body of every `_free` function: NULL is ignored; a live handle of `kind` is taken
/// out and its object dropped (ending what it holds); a handle freed already, or of another
/// kind, is ignored with a last error. Never panics across the ABI.
pub(crate) fn free(h: usize, kind: Kind) {
    crate::status::unit(|| {
        if h != 0 {
            drop(take(h, kind)?);
        }
        Ok(())
    })
}

/// Takes the object out of a live handle, which stops being valid. Used by `_free` and by the
/// calls that consume a handle (builders).
pub(crate) fn take(h: usize, kind: Kind) -> R<Obj> {
    null_check(h, kind)?;
    let Some((slot, gen)) = lookup(h) else {
        return Err(invalid(kind));
    };
    let index = decode(h).map(|d| d.0).unwrap_or(0);
    let obj = {
        let mut g = slot.obj.lock();
        let meta = slot.meta.load(Ordering::Relaxed);
        if !matches(meta, gen, kind) {
            return Err(invalid(kind));
        }
        let obj = g.take();
        let next = (meta >> KIND_BITS).wrapping_add(1) & (u64::MAX >> KIND_BITS);
        slot.meta.store(next << KIND_BITS, Ordering::Release);
        obj
    };
    table().free.lock().queue.push_back(index);
    ALIVE.fetch_sub(1, Ordering::Relaxed);
    obj.ok_or_else(|| invalid(kind))
}

/// Reads the immutable value stored with a live handle, without locking: `None` when the
/// handle is not a live handle of `kind`.
#[inline]
pub(crate) fn fast(h: usize, kind: Kind) -> Option<u64> {
    let (slot, gen) = lookup(h)?;
    let m1 = slot.meta.load(Ordering::Acquire);
    if !matches(m1, gen, kind) {
        return None;
    }
    let v = slot.fast.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    let m2 = slot.meta.load(Ordering::Relaxed);
    (m1 == m2).then_some(v)
}

/// Why the handle `h` of `kind` was refused (for getters returning a default).
pub(crate) fn not_live(h: usize, kind: Kind) -> crate::status::Fail {
    match null_check(h, kind) {
        Err(f) => f,
        Ok(()) => invalid(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> Obj {
        Obj::ClientBuilder(tenure::ClientConfig::new(Vec::<String>::new()))
    }

    #[test]
    fn a_freed_handle_stays_invalid_after_its_slot_is_reused() {
        let a = insert(Kind::ClientBuilder, builder(), 7).unwrap();
        assert_eq!(fast(a, Kind::ClientBuilder), Some(7));
        assert!(take(a, Kind::ClientBuilder).is_ok());
        assert!(
            take(a, Kind::ClientBuilder).is_err(),
            "double free detected"
        );
        assert_eq!(fast(a, Kind::ClientBuilder), None);
        // Reuse every free slot, including a's.
        let many: Vec<usize> = (0..2000)
            .map(|i| insert(Kind::ClientBuilder, builder(), i).unwrap())
            .collect();
        assert!(!many.contains(&a));
        assert!(with(a, Kind::ClientBuilder, |_| ()).is_err());
        assert!(take(a, Kind::ClientBuilder).is_err());
        for (i, h) in many.iter().enumerate() {
            assert_eq!(fast(*h, Kind::ClientBuilder), Some(i as u64));
            assert!(take(*h, Kind::ClientBuilder).is_ok());
        }
    }

    #[test]
    fn a_handle_of_another_kind_or_garbage_is_refused() {
        let a = insert(Kind::ClientBuilder, builder(), 0).unwrap();
        assert!(with(a, Kind::Client, |_| ()).is_err());
        assert!(take(a, Kind::Lock).is_err());
        for garbage in [0usize, 1, 0xdead_beef, usize::MAX, 1 << 20] {
            assert!(with(garbage, Kind::Client, |_| ()).is_err());
            assert_eq!(fast(garbage, Kind::Lock), None);
        }
        assert!(take(a, Kind::ClientBuilder).is_ok());
    }
}
