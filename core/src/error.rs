//! The error type of tenure's public API.

use std::fmt;

/// Why a tenure call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of range or malformed; the text says which and why.
    InvalidArgument(String),
    /// The request (a lock, an election request) was not granted within the timeout.
    Timeout,
    /// The session expired (or the server no longer knows it).
    SessionExpired,
    /// The service's state was lost (its incarnation changed).
    DataLost,
    /// The handle, or the client it belongs to, is closed.
    Closed,
    /// No server could be reached; the text says what was tried.
    ConnectionFailed(String),
    /// A limit of the service was reached; the text says which.
    Limit(String),
    /// The server refused the request; the text says why.
    Rejected(String),
    /// The lock is not held (any more) by this client.
    NotHeld,
    /// This client's session already holds the lock it asked for (the name).
    AlreadyHeld(String),
    /// An operating-system error (binding a socket, the data directory).
    Io(String),
    /// The caller cancelled the call ([`crate::Pending::cancel`]).
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::Timeout => write!(
                f,
                "timed out before the service granted the request (a lock, or a master designation)"
            ),
            Error::SessionExpired => write!(f, "the session expired"),
            Error::DataLost => write!(f, "the service lost its state (new incarnation)"),
            Error::Closed => write!(f, "the client is closed"),
            Error::ConnectionFailed(s) => write!(f, "could not reach a server: {s}"),
            Error::Limit(s) => write!(f, "limit reached: {s}"),
            Error::Rejected(s) => write!(f, "rejected by the server: {s}"),
            Error::NotHeld => write!(f, "the lock is not held"),
            Error::AlreadyHeld(name) => {
                write!(f, "this client's session already holds the lock {name:?}")
            }
            Error::Io(s) => write!(f, "I/O error: {s}"),
            Error::Cancelled => write!(f, "the call was cancelled"),
        }
    }
}

impl std::error::Error for Error {}

/// The kind of a failure: one stable code per kind, the same in every language. The C
/// status number ([`ErrorKind::number`]), Node's `.code` and Python's exception class are
/// derived from it in one table each, and never from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::Timeout`] of any call but a lock's.
    Timeout,
    /// [`Error::Timeout`] of a lock call: no lock is held.
    LockTimeout,
    /// [`Error::SessionExpired`].
    SessionExpired,
    /// [`Error::DataLost`].
    DataLost,
    /// [`Error::Closed`].
    Closed,
    /// [`Error::ConnectionFailed`].
    ConnectionFailed,
    /// [`Error::Limit`].
    Limit,
    /// [`Error::Rejected`].
    Rejected,
    /// [`Error::NotHeld`]: the lock was lost (or released) before.
    NotHeld,
    /// [`Error::AlreadyHeld`].
    AlreadyHeld,
    /// [`Error::Io`].
    Io,
    /// [`Error::Cancelled`].
    Cancelled,
}

impl ErrorKind {
    /// Every kind, in number order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::InvalidArgument,
        ErrorKind::ConnectionFailed,
        ErrorKind::SessionExpired,
        ErrorKind::Closed,
        ErrorKind::DataLost,
        ErrorKind::Timeout,
        ErrorKind::LockTimeout,
        ErrorKind::Rejected,
        ErrorKind::Limit,
        ErrorKind::Cancelled,
        ErrorKind::NotHeld,
        ErrorKind::AlreadyHeld,
        ErrorKind::Io,
    ];

    /// The stable number (the C API's `tenure_status` value of this kind; a lock's timeout
    /// shares [`ErrorKind::Timeout`]'s).
    pub fn number(self) -> u32 {
        match self {
            ErrorKind::InvalidArgument => 102,
            ErrorKind::ConnectionFailed => 200,
            ErrorKind::SessionExpired => 201,
            ErrorKind::Closed => 202,
            ErrorKind::DataLost => 203,
            ErrorKind::Timeout => 204,
            ErrorKind::Rejected => 205,
            ErrorKind::Limit => 206,
            ErrorKind::Cancelled => 207,
            // C tells a lock's timeout from another by the call it made.
            ErrorKind::LockTimeout => 204,
            ErrorKind::NotHeld => 301,
            ErrorKind::AlreadyHeld => 302,
            ErrorKind::Io => 500,
        }
    }

    /// The stable lowercase name ("lock_timeout", "not_held", ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Timeout => "timeout",
            ErrorKind::LockTimeout => "lock_timeout",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::DataLost => "data_lost",
            ErrorKind::Closed => "closed",
            ErrorKind::ConnectionFailed => "connection_failed",
            ErrorKind::Limit => "limit",
            ErrorKind::Rejected => "rejected",
            ErrorKind::NotHeld => "not_held",
            ErrorKind::AlreadyHeld => "already_held",
            ErrorKind::Io => "io",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

/// What a failed call was: the one place where the same error means different kinds (a
/// timeout of a lock call is a [`ErrorKind::LockTimeout`]: no lock is held).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `lock` or `try_lock`.
    Lock,
    /// Any other call.
    Other,
}

impl Error {
    /// The kind of this error for a call of any sort but a lock (see [`Error::kind_in`]).
    pub fn kind(&self) -> ErrorKind {
        self.kind_in(Call::Other)
    }

    /// The kind of this error as the result of `call`.
    pub fn kind_in(&self, call: Call) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Timeout if call == Call::Lock => ErrorKind::LockTimeout,
            Error::Timeout => ErrorKind::Timeout,
            Error::SessionExpired => ErrorKind::SessionExpired,
            Error::DataLost => ErrorKind::DataLost,
            Error::Closed => ErrorKind::Closed,
            Error::ConnectionFailed(_) => ErrorKind::ConnectionFailed,
            Error::Limit(_) => ErrorKind::Limit,
            Error::Rejected(_) => ErrorKind::Rejected,
            Error::NotHeld => ErrorKind::NotHeld,
            Error::AlreadyHeld(_) => ErrorKind::AlreadyHeld,
            Error::Io(_) => ErrorKind::Io,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result with tenure's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_numbers_and_names_in_number_order() {
        let nums: Vec<u32> = ErrorKind::ALL
            .iter()
            .filter(|k| **k != ErrorKind::LockTimeout)
            .map(|k| k.number())
            .collect();
        let mut sorted = nums.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(nums, sorted, "ALL is in number order, numbers distinct");
        assert_eq!(ErrorKind::LockTimeout.number(), ErrorKind::Timeout.number());
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(Error::Timeout.kind_in(Call::Lock), ErrorKind::LockTimeout);
        assert_eq!(Error::Timeout.kind(), ErrorKind::Timeout);
    }
}
