//! Errors crossing into JavaScript.
//!
//! Every error of the native layer is a napi error whose message starts with a stable code in
//! brackets, `[ERR_TENURE_CLOSED] the client is closed`. The package's TypeScript layer (the
//! only user of this module's output) turns it into a `TenureError` with `.code`, or into a
//! `TypeError`/`RangeError` for invalid arguments. The code is the core's error kind
//! ([`tenure::ErrorKind`]) in capitals, with two first names kept ([`RENAMED`]).

use tenure::{Call, Error, ErrorKind};

/// Code of an argument the core refused; the TypeScript layer throws a `RangeError` for it.
pub const INVALID_ARGUMENT: &str = "ERR_TENURE_INVALID_ARGUMENT";

/// A napi error carrying `code` for the TypeScript layer.
pub fn coded(code: &str, message: &str) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// Codes this package gave some kinds first, kept: the rest are `ERR_TENURE_` and the
/// core's kind name in capitals ([`tenure::ErrorKind::name`]).
const RENAMED: &[(ErrorKind, &str)] = &[
    (ErrorKind::AlreadyHeld, "ERR_TENURE_LOCK_HELD"),
    (ErrorKind::NotHeld, "ERR_TENURE_LOCK_LOST"),
];

/// The stable code of a core error, given the call that failed.
pub fn code_of(e: &Error, call: Call) -> String {
    let kind = e.kind_in(call);
    match RENAMED.iter().find(|(k, _)| *k == kind) {
        Some((_, code)) => (*code).to_string(),
        None => format!("ERR_TENURE_{}", kind.name().to_ascii_uppercase()),
    }
}

/// Converts a core error for a call of kind `call`.
pub fn to_napi(e: Error, call: Call) -> napi::Error {
    let message = match (&e, call) {
        (Error::Timeout, Call::Other) => "timed out".to_string(),
        (Error::NotHeld, _) => "the lock is not held any more (it was lost)".to_string(),
        _ => e.to_string(),
    };
    coded(&code_of(&e, call), &message)
}

/// Converts a core error for a call with no special codes.
pub fn conv(e: Error) -> napi::Error {
    to_napi(e, Call::Other)
}
