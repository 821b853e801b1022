//! The heartbeat datagram.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "TNHB"
//!      4     1  version (1)
//!      5     1  sender name length L (1 ..= 255)
//!      6     8  boot id, big-endian (random per start of the sender)
//!     14     8  sequence number, big-endian (grows by one per round of heartbeats)
//!     22     L  sender name, UTF-8
//! ```
//!
//! A datagram is accepted only when it has exactly this shape: right magic and version,
//! a length that matches the name, a valid name. Anything else, including anything longer
//! than [`MAX_DATAGRAM`], is rejected. The boot id lets a receiver tell a restarted sender
//! (whose sequence starts again) from a late duplicate.

use super::MAX_NAME_LEN;
use std::fmt;

/// The first four bytes of every heartbeat.
pub const MAGIC: [u8; 4] = *b"TNHB";
/// The format version this code writes and accepts.
pub const VERSION: u8 = 1;
/// Bytes before the name.
pub const HEADER_LEN: usize = 22;
/// The largest valid heartbeat datagram.
pub const MAX_DATAGRAM: usize = HEADER_LEN + MAX_NAME_LEN;

/// A decoded heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// The sender's process name.
    pub sender: &'a str,
    /// Random id of the sender's current run.
    pub boot: u64,
    /// Sequence number within that run.
    pub seq: u64,
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header, or longer than [`MAX_DATAGRAM`].
    BadLength(usize),
    /// The magic bytes are wrong: not a tenure heartbeat.
    BadMagic,
    /// A version this code does not know.
    BadVersion(u8),
    /// The name length does not match the datagram, or the name is empty or not UTF-8.
    BadName,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadLength(n) => write!(f, "datagram of {n} bytes"),
            WireError::BadMagic => write!(f, "not a tenure heartbeat"),
            WireError::BadVersion(v) => write!(f, "unknown heartbeat version {v}"),
            WireError::BadName => write!(f, "malformed sender name"),
        }
    }
}

impl std::error::Error for WireError {}

/// Encodes a heartbeat. `sender` must be 1 to [`MAX_NAME_LEN`] bytes (checked by the
/// runtime's configuration); a longer name is truncated at a character boundary.
pub fn encode(sender: &str, boot: u64, seq: u64) -> Vec<u8> {
    let mut end = sender.len().min(MAX_NAME_LEN);
    while !sender.is_char_boundary(end) {
        end -= 1;
    }
    let name = &sender.as_bytes()[..end];
    let mut out = Vec::with_capacity(HEADER_LEN + name.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(name.len() as u8);
    out.extend_from_slice(&boot.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// Decodes and validates a datagram.
pub fn decode(buf: &[u8]) -> Result<Heartbeat<'_>, WireError> {
    if buf.len() < HEADER_LEN + 1 || buf.len() > MAX_DATAGRAM {
        return Err(WireError::BadLength(buf.len()));
    }
    if buf[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if buf[4] != VERSION {
        return Err(WireError::BadVersion(buf[4]));
    }
    let len = buf[5] as usize;
    if len == 0 || HEADER_LEN + len != buf.len() {
        return Err(WireError::BadName);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[6..14]);
    let boot = u64::from_be_bytes(b);
    b.copy_from_slice(&buf[14..22]);
    let seq = u64::from_be_bytes(b);
    let sender = std::str::from_utf8(&buf[HEADER_LEN..]).map_err(|_| WireError::BadName)?;
    if sender.chars().any(char::is_control) {
        return Err(WireError::BadName);
    }
    Ok(Heartbeat { sender, boot, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let d = encode("node-é", 7, u64::MAX);
        assert_eq!(
            decode(&d),
            Ok(Heartbeat {
                sender: "node-é",
                boot: 7,
                seq: u64::MAX
            })
        );
        assert_eq!(
            decode(&d[..HEADER_LEN]),
            Err(WireError::BadLength(HEADER_LEN))
        );
        assert_eq!(decode(&d[..d.len() - 1]), Err(WireError::BadName));
        let mut long = d.clone();
        long.push(b'x');
        assert_eq!(decode(&long), Err(WireError::BadName));
        let mut bad = d.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(WireError::BadMagic));
        let mut bad = d.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad), Err(WireError::BadVersion(2)));
        let mut bad = d.clone();
        let n = bad.len();
        bad[n - 1] = 0xff;
        assert_eq!(decode(&bad), Err(WireError::BadName));
        let mut bad = encode("ab", 1, 1);
        bad[HEADER_LEN] = b'\n';
        assert_eq!(decode(&bad), Err(WireError::BadName));
        assert_eq!(
            decode(&vec![0u8; MAX_DATAGRAM + 1]),
            Err(WireError::BadLength(MAX_DATAGRAM + 1))
        );
        let max = encode(&"n".repeat(MAX_NAME_LEN + 10), 0, 0);
        assert_eq!(max.len(), MAX_DATAGRAM);
        assert_eq!(decode(&max).unwrap().sender.len(), MAX_NAME_LEN);
    }
}
