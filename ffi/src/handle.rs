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
//! Each C handle type says what it refers to by implementing [`CHandle`] beside its own
//! definition (its Rust object and its [`Kind`]), so the table needs no list of every
//! object type, and a call names no kind: `handle::with(client, |c| ...)` finds the object
//! of a `*const tenure_client` as a `tenure::Client`.
//!
//! Calls on a handle lock its slot only long enough to read the object, or to clone the
//! `Arc` it keeps; blocking work (waiting for a lock, closing a client) runs after the slot
//! is unlocked, so freeing never waits for a blocked call on another thread, and a callback
//! can free its own handle. A few immutable fields (a lock's fencing token) are also copied
//! into the slot and read without a lock, with a generation check before and after the read.

use crate::status::{fail, tenure_status, R};
use parking_lot::Mutex;
use std::any::Any;
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

/// A C handle type (an opaque type C holds pointers to): the Rust object behind it and
/// its kind. Implemented once per type, beside it.
pub(crate) trait CHandle: 'static {
    /// The object a handle of this type refers to.
    type Obj: Send + 'static;
    /// The kind stored in the slot, checked on every use.
    const KIND: Kind;
}

/// The C name of handle type `H` (`tenure_client`), for messages.
fn name_of<H: CHandle>() -> &'static str {
    let full = std::any::type_name::<H>();
    full.rsplit("::").next().unwrap_or(full)
}

struct Slot {
    /// `(generation << 8) | kind`; kind 0 while the slot is free. Changed only with `obj`
    /// locked.
    meta: AtomicU64,
    /// An immutable field of the object, readable without the lock.
    fast: AtomicU64,
    obj: Mutex<Option<Box<dyn Any + Send>>>,
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

fn invalid<H: CHandle>() -> crate::status::Fail {
    fail(
        tenure_status::InvalidHandle,
        format!(
            "not a live {}: freed already, consumed by an earlier call, of another type, or never \
             returned by tenure",
            name_of::<H>()
        ),
    )
}

fn null_check<H: CHandle>(h: usize) -> R<()> {
    if h == 0 {
        return Err(fail(
            tenure_status::NullArgument,
            format!("the {} argument is NULL", name_of::<H>()),
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
pub(crate) fn insert<H: CHandle>(obj: H::Obj, fast_value: u64) -> R<*mut H> {
    let kind = H::KIND;
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
    *g = Some(Box::new(obj));
    // Seqlock order for readers of `fast` (see `fast`): the slot's free (generation change)
    // is ordered before the new value.
    fence(Ordering::Release);
    slot.fast.store(fast_value, Ordering::Relaxed);
    slot.meta
        .store((gen << KIND_BITS) | kind as u64, Ordering::Release);
    drop(g);
    ALIVE.fetch_add(1, Ordering::Relaxed);
    let h = ((gen & GEN_MASK) << INDEX_BITS) | (index as u64 + 1);
    Ok(h as usize as *mut H)
}

/// Runs `f` on the object of a live handle, with its slot locked. `f` must not block or call
/// user code.
pub(crate) fn with<H: CHandle, T>(h: *const H, f: impl FnOnce(&mut H::Obj) -> T) -> R<T> {
    let h = h as usize;
    null_check::<H>(h)?;
    let Some((slot, gen)) = lookup(h) else {
        return Err(invalid::<H>());
    };
    let mut g = slot.obj.lock();
    if !matches(slot.meta.load(Ordering::Relaxed), gen, H::KIND) {
        return Err(invalid::<H>());
    }
    match g.as_mut().and_then(|o| o.downcast_mut::<H::Obj>()) {
        Some(o) => Ok(f(o)),
        None => Err(invalid::<H>()),
    }
}

/// The body of every `_free` function: NULL is ignored; a live handle is taken out and its
/// object dropped (ending what it holds); a handle freed already, or of another type, is
/// ignored with a last error. Never panics across the ABI.
pub(crate) fn free<H: CHandle>(h: *const H) {
    crate::status::unit(|| {
        if !h.is_null() {
            drop(take(h)?);
        }
        Ok(())
    })
}

/// Takes the object out of a live handle, which stops being valid. Used by `_free` and by the
/// calls that consume a handle (builders).
pub(crate) fn take<H: CHandle>(h: *const H) -> R<H::Obj> {
    let (h, kind) = (h as usize, H::KIND);
    null_check::<H>(h)?;
    let Some((slot, gen)) = lookup(h) else {
        return Err(invalid::<H>());
    };
    let index = decode(h).map(|d| d.0).unwrap_or(0);
    let obj = {
        let mut g = slot.obj.lock();
        let meta = slot.meta.load(Ordering::Relaxed);
        if !matches(meta, gen, kind) {
            return Err(invalid::<H>());
        }
        let obj = g.take();
        let next = (meta >> KIND_BITS).wrapping_add(1) & (u64::MAX >> KIND_BITS);
        slot.meta.store(next << KIND_BITS, Ordering::Release);
        obj
    };
    table().free.lock().queue.push_back(index);
    ALIVE.fetch_sub(1, Ordering::Relaxed);
    match obj.map(|o| o.downcast::<H::Obj>()) {
        Some(Ok(o)) => Ok(*o),
        _ => Err(invalid::<H>()),
    }
}

/// Reads the immutable value stored with a live handle, without locking: `None` when the
/// handle is not a live handle of its type.
#[inline]
pub(crate) fn fast<H: CHandle>(h: *const H) -> Option<u64> {
    let (slot, gen) = lookup(h as usize)?;
    let m1 = slot.meta.load(Ordering::Acquire);
    if !matches(m1, gen, H::KIND) {
        return None;
    }
    let v = slot.fast.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    let m2 = slot.meta.load(Ordering::Relaxed);
    (m1 == m2).then_some(v)
}

/// Why the handle `h` was refused (for getters returning a default).
pub(crate) fn not_live<H: CHandle>(h: *const H) -> crate::status::Fail {
    match null_check::<H>(h as usize) {
        Err(f) => f,
        Ok(()) => invalid::<H>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle type for the tests, of the builder kind.
    struct TestBuilder;
    impl CHandle for TestBuilder {
        type Obj = u64;
        const KIND: Kind = Kind::ClientBuilder;
    }

    /// Another type, of another kind.
    struct TestClient;
    impl CHandle for TestClient {
        type Obj = String;
        const KIND: Kind = Kind::Client;
    }

    /// A third type that shares the builder kind but not its object type.
    struct Impostor;
    impl CHandle for Impostor {
        type Obj = String;
        const KIND: Kind = Kind::ClientBuilder;
    }

    #[test]
    fn a_freed_handle_stays_invalid_after_its_slot_is_reused() {
        let a = insert::<TestBuilder>(70, 7).unwrap();
        assert_eq!(fast(a), Some(7));
        assert_eq!(take(a).ok(), Some(70));
        assert!(take(a).is_err(), "double free detected");
        assert_eq!(fast(a), None);
        // Reuse every free slot, including a's.
        let many: Vec<*mut TestBuilder> = (0..2000)
            .map(|i| insert::<TestBuilder>(i, i).unwrap())
            .collect();
        assert!(!many.contains(&a));
        assert!(with(a, |_| ()).is_err());
        assert!(take(a).is_err());
        for (i, h) in many.iter().enumerate() {
            assert_eq!(fast(*h), Some(i as u64));
            assert_eq!(take(*h).ok(), Some(i as u64));
        }
    }

    #[test]
    fn a_handle_of_another_type_or_garbage_is_refused() {
        let a = insert::<TestBuilder>(1, 0).unwrap();
        assert!(with(a as *const TestClient, |_| ()).is_err());
        assert!(take(a as *const TestClient).is_err());
        // Same kind, other object type: refused, and the object stays.
        assert!(with(a as *const Impostor, |_| ()).is_err());
        for garbage in [0usize, 1, 0xdead_beef, usize::MAX, 1 << 20] {
            assert!(with(garbage as *const TestClient, |_| ()).is_err());
            assert_eq!(fast(garbage as *const TestBuilder), None);
        }
        assert_eq!(take(a).ok(), Some(1));
    }
}
