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

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result with tenure's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
