//! Status codes, the thread-local last-error message, and the panic boundary every exported
//! function runs in.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of a fallible tenure call.
///
/// Values are grouped by area and never renumbered: 0 is success, 1xx a problem with the
/// arguments of the call, 2xx the session, its connection or the service, 3xx locks, 4xx
/// elections and groups, 5xx the embedded server, 9xx internal failures. New values may be
/// added in later versions; treat an unknown value as a failure and print it with
/// `tenure_status_str()`. A detailed message of the last failure on the calling thread is
/// available from `tenure_last_error()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tenure_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument is NULL.
    NullArgument = 100,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 101,
    /// An argument is out of range or malformed (a name too long, a TTL outside its limits,
    /// an unknown enum value...); `tenure_last_error()` says which and why.
    InvalidArgument = 102,
    /// A handle is not a live object of the expected type: it was freed already, consumed by
    /// an earlier call (a builder after `_start`/`_connect`), or never returned by tenure.
    InvalidHandle = 103,
    /// An output buffer is too small; the size needed (without the terminating NUL) was
    /// written to `*out_n`.
    BufferTooSmall = 104,
    /// An event getter was called on an event of a kind that does not carry that field.
    WrongEventType = 105,
    /// No server could be reached.
    ConnectionFailed = 200,
    /// The session expired (or the server no longer knows it).
    SessionExpired = 201,
    /// The client (or the handle's client) is closed.
    Closed = 202,
    /// The service lost its state (its incarnation changed).
    DataLost = 203,
    /// The wait ended before the lock (or the answer) came.
    Timeout = 204,
    /// The service refused the request; `tenure_last_error()` says why.
    Rejected = 205,
    /// A limit of the service or of this library was reached (queue, handles, sizes).
    Limit = 206,
    /// The call was cancelled (kept in step with the core's error kinds; no C call returns
    /// it today).
    Cancelled = 207,
    /// `tenure_client_try_lock`: another session holds the lock.
    LockHeld = 300,
    /// The lock is not held (any more): it was lost or released.
    NotHeld = 301,
    /// This client's session already holds the lock it asked for.
    AlreadyHeld = 302,
    /// The candidate is not the master of its election.
    NotMaster = 400,
    /// The election has no master (no candidate, or none answered its check).
    NoMaster = 401,
    /// An operating-system error (binding the listen address, the data directory).
    Io = 500,
    /// A panic inside tenure was caught at the API boundary; the call had no effect that
    /// can be relied on. Please report it with `tenure_last_error()`'s message.
    Panic = 900,
    /// An internal error (a core error this version of the C API does not know).
    Internal = 901,
}

impl tenure_status {
    /// Every status, for `tenure_status_str` and the tests.
    pub(crate) const ALL: [tenure_status; 23] = [
        tenure_status::Ok,
        tenure_status::NullArgument,
        tenure_status::InvalidUtf8,
        tenure_status::InvalidArgument,
        tenure_status::InvalidHandle,
        tenure_status::BufferTooSmall,
        tenure_status::WrongEventType,
        tenure_status::ConnectionFailed,
        tenure_status::SessionExpired,
        tenure_status::Closed,
        tenure_status::DataLost,
        tenure_status::Timeout,
        tenure_status::Rejected,
        tenure_status::Limit,
        tenure_status::Cancelled,
        tenure_status::LockHeld,
        tenure_status::NotHeld,
        tenure_status::AlreadyHeld,
        tenure_status::NotMaster,
        tenure_status::NoMaster,
        tenure_status::Io,
        tenure_status::Panic,
        tenure_status::Internal,
    ];

    /// The static, NUL-terminated name of the status.
    pub(crate) fn text(self) -> &'static str {
        match self {
            tenure_status::Ok => "ok\0",
            tenure_status::NullArgument => "a required pointer argument is NULL\0",
            tenure_status::InvalidUtf8 => "a string argument is not valid UTF-8\0",
            tenure_status::InvalidArgument => "invalid argument\0",
            tenure_status::InvalidHandle => {
                "invalid handle (freed, consumed, of another type, or never valid)\0"
            }
            tenure_status::BufferTooSmall => "output buffer too small\0",
            tenure_status::WrongEventType => "the event does not carry this field\0",
            tenure_status::ConnectionFailed => "could not reach a server\0",
            tenure_status::SessionExpired => "the session expired\0",
            tenure_status::Closed => "closed\0",
            tenure_status::DataLost => "the service lost its state (new incarnation)\0",
            tenure_status::Timeout => "timed out\0",
            tenure_status::Rejected => "rejected by the service\0",
            tenure_status::Limit => "limit reached\0",
            tenure_status::Cancelled => "the call was cancelled\0",
            tenure_status::LockHeld => "the lock is held by another session\0",
            tenure_status::NotHeld => "the lock is not held\0",
            tenure_status::AlreadyHeld => "this client's session already holds the lock\0",
            tenure_status::NotMaster => "not the master\0",
            tenure_status::NoMaster => "the election has no master\0",
            tenure_status::Io => "I/O error\0",
            tenure_status::Panic => "internal panic (a bug in tenure)\0",
            tenure_status::Internal => "internal error\0",
        }
    }
}

/// Why a call failed: the status to return and the message for `tenure_last_error()`.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: tenure_status,
    pub(crate) msg: String,
}

/// Result of the bodies of exported functions.
pub(crate) type R<T> = Result<T, Fail>;

/// A failure with a status and a message.
pub(crate) fn fail(status: tenure_status, msg: impl Into<String>) -> Fail {
    Fail {
        status,
        msg: msg.into(),
    }
}

impl From<tenure::Error> for Fail {
    /// The status is the core's number for the error's kind ([`tenure::ErrorKind::number`]):
    /// C has no table of its own.
    fn from(e: tenure::Error) -> Fail {
        let n = e.kind().number();
        let status = tenure_status::ALL
            .into_iter()
            .find(|s| *s as u32 == n)
            .unwrap_or(tenure_status::Internal);
        fail(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error.
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\u{fffd}")).unwrap_or_default();
    // Ignore the error when the thread-local is being destroyed (thread exit).
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = c);
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// The panic boundary of functions returning a status: runs `f`, turns its failure into a
/// status and the last-error message, and a panic into [`tenure_status::Panic`].
pub(crate) fn status(f: impl FnOnce() -> R<()>) -> tenure_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => tenure_status::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(p) => {
            set_last_error(&format!("panic inside tenure: {}", panic_text(&*p)));
            tenure_status::Panic
        }
    }
}

/// The panic boundary of functions returning a value: runs `f`; on failure or panic records
/// the last error and returns `default`.
pub(crate) fn value<T>(default: T, f: impl FnOnce() -> R<T>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            default
        }
        Err(p) => {
            set_last_error(&format!("panic inside tenure: {}", panic_text(&*p)));
            default
        }
    }
}

/// The panic boundary of functions returning nothing (`_free`).
pub(crate) fn unit(f: impl FnOnce() -> R<()>) {
    value((), f)
}

/// Returns a static, NUL-terminated English description of a status code (for logs). Unknown
/// values give "unknown status". Never NULL; the string must not be freed.
///
/// Takes the code as an integer so that any value, even one this version does not know, is
/// safe to pass. Threads: any.
#[no_mangle]
pub extern "C" fn tenure_status_str(status: u32) -> *const c_char {
    value(b"unknown status\0".as_ptr().cast(), || {
        let s = tenure_status::ALL
            .iter()
            .find(|s| **s as u32 == status)
            .map(|s| s.text())
            .unwrap_or("unknown status\0");
        Ok(s.as_ptr().cast())
    })
}

/// Copies the message of the last failed call on this thread into `buf`.
///
/// Every call that returns a status other than `TENURE_STATUS_OK` (and every getter that
/// returns its documented default because of bad input) records a message saying what went
/// wrong; successful calls leave it as it was. The message is empty when no call failed on
/// this thread yet. This function never changes the message.
///
/// `buf` receives the message and a terminating NUL when `len` is large enough, and `*out_n`
/// its length without the NUL. When `len` is too small, nothing is copied,
/// `TENURE_STATUS_BUFFER_TOO_SMALL` is returned and `*out_n` is set to the length needed
/// (without the NUL). `buf` may be NULL when `len` is 0, to ask for the length. Threads: any
/// (the message is per thread).
///
/// # Safety
///
/// `buf` must be NULL or point to `len` writable bytes; `out_n` must point to a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tenure_last_error(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> tenure_status {
    match catch_unwind(AssertUnwindSafe(|| {
        let msg = LAST_ERROR
            .try_with(|l| l.borrow().to_bytes().to_vec())
            .unwrap_or_default();
        // SAFETY: the caller's contract.
        match unsafe { crate::util::check_buf(buf, len, out_n) } {
            Ok(()) => unsafe { crate::util::copy_bytes(&msg, buf, len, out_n) },
            Err(f) => f.status,
        }
    })) {
        Ok(s) => s,
        Err(_) => tenure_status::Panic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_kind_has_its_c_status() {
        for k in tenure::ErrorKind::ALL {
            let st = tenure_status::ALL
                .into_iter()
                .find(|s| *s as u32 == k.number());
            assert!(
                st.is_some(),
                "{} ({}) has no C status",
                k.name(),
                k.number()
            );
        }
        let f = Fail::from(tenure::Error::NotHeld);
        assert_eq!(f.status, tenure_status::NotHeld);
        let f = Fail::from(tenure::Error::Timeout);
        assert_eq!(f.status, tenure_status::Timeout);
    }
}
