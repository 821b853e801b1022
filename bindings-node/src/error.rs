//! Errors crossing into JavaScript.
//!
//! Every error of the native layer is a napi error whose message starts with a stable code in
//! brackets, `[ERR_TENURE_CLOSED] the client is closed`. The package's TypeScript layer (the
//! only user of this module's output) turns it into a `TenureError` with `.code`, or into a
//! `TypeError`/`RangeError` for invalid arguments. The mapping from [`tenure::Error`] lives
//! here, in one `match`.

use tenure::Error;

/// Code of an argument the core refused; the TypeScript layer throws a `RangeError` for it.
pub const INVALID_ARGUMENT: &str = "ERR_TENURE_INVALID_ARGUMENT";

/// A napi error carrying `code` for the TypeScript layer.
pub fn coded(code: &str, message: &str) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// What a call was doing, for the codes that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Waiting for a lock (`lock`, `tryLock`).
    Lock,
    /// Releasing a lock.
    Release,
    /// Anything else.
    Other,
}

/// The stable code of a core error, given what the call was doing.
pub fn code_of(e: &Error, op: Op) -> &'static str {
    match e {
        Error::AlreadyHeld(_) => "ERR_TENURE_LOCK_HELD",
        Error::InvalidArgument(_) => INVALID_ARGUMENT,
        Error::Timeout if op == Op::Lock => "ERR_TENURE_LOCK_TIMEOUT",
        Error::Timeout => "ERR_TENURE_TIMEOUT",
        Error::SessionExpired => "ERR_TENURE_SESSION_EXPIRED",
        Error::DataLost => "ERR_TENURE_DATA_LOST",
        Error::Closed => "ERR_TENURE_CLOSED",
        Error::ConnectionFailed(_) => "ERR_TENURE_CONNECTION_FAILED",
        Error::Limit(_) => "ERR_TENURE_LIMIT",
        Error::Rejected(_) => "ERR_TENURE_REJECTED",
        Error::NotHeld => "ERR_TENURE_LOCK_LOST",
        Error::Io(_) => "ERR_TENURE_IO",
        // `Error` is non-exhaustive: a kind added to the core later still gets a code.
        _ => "ERR_TENURE_OTHER",
    }
}

/// Converts a core error for a call that was doing `op`.
pub fn to_napi(e: Error, op: Op) -> napi::Error {
    let message = match (&e, op) {
        (Error::Timeout, Op::Other) => "timed out".to_string(),
        (Error::NotHeld, _) => "the lock is not held any more (it was lost)".to_string(),
        _ => e.to_string(),
    };
    coded(code_of(&e, op), &message)
}

/// Converts a core error for a call with no special codes.
pub fn conv(e: Error) -> napi::Error {
    to_napi(e, Op::Other)
}
