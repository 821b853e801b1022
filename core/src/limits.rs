//! The limits a user of tenure meets, listed for the language bindings. Each limit is defined
//! once, beside the rule that enforces it (the codec, the lock queue, the server state...);
//! this table only names them, so that C, Python and Node export the same values under the
//! same names and a binding never copies a number.

use std::time::Duration;

/// One limit: its stable name, its value and the unit of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Stable lowercase name (`"name_bytes"`, `"waiters_per_lock"`, ...).
    pub name: &'static str,
    /// The value, in `unit`.
    pub value: u64,
    /// `"bytes"`, `"ms"` or `"count"`.
    pub unit: &'static str,
    /// What is limited, in a few words.
    pub what: &'static str,
}

const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Every limit, in a fixed order.
pub const LIMITS: &[Limit] = &[
    Limit {
        name: "name_bytes",
        value: crate::proto::MAX_NAME_LEN as u64,
        unit: "bytes",
        what: "lock, election and group names (at least 1 byte, no NUL)",
    },
    Limit {
        name: "id_bytes",
        value: crate::proto::MAX_ID_LEN as u64,
        unit: "bytes",
        what: "candidate and member ids",
    },
    Limit {
        name: "endpoint_bytes",
        value: crate::proto::MAX_ENDPOINT_LEN as u64,
        unit: "bytes",
        what: "a candidate's host:port",
    },
    Limit {
        name: "client_name_bytes",
        value: crate::proto::MAX_CLIENT_NAME_LEN as u64,
        unit: "bytes",
        what: "a client's name",
    },
    Limit {
        name: "detector_name_bytes",
        value: crate::detector::MAX_NAME_LEN as u64,
        unit: "bytes",
        what: "a failure detector's peer, network and own names",
    },
    Limit {
        name: "request_bytes",
        value: crate::proto::MAX_REQUEST_FRAME as u64,
        unit: "bytes",
        what: "one request frame",
    },
    Limit {
        name: "reply_bytes",
        value: crate::proto::MAX_FRAME as u64,
        unit: "bytes",
        what: "one frame from a server",
    },
    Limit {
        name: "ttl_min_ms",
        value: crate::server::state::MIN_TTL_MS,
        unit: "ms",
        what: "shortest session TTL",
    },
    Limit {
        name: "ttl_max_ms",
        value: crate::server::state::MAX_TTL_MS,
        unit: "ms",
        what: "longest session TTL (and probation)",
    },
    Limit {
        name: "timeout_max_ms",
        value: ms(crate::client::MAX_TIMEOUT),
        unit: "ms",
        what: "longest wait a call accepts",
    },
    Limit {
        name: "waiters_per_lock",
        value: crate::lock::MAX_WAITERS as u64,
        unit: "count",
        what: "sessions waiting for one lock",
    },
    Limit {
        name: "locks_per_session",
        value: crate::server::state::MAX_LOCKS_PER_SESSION as u64,
        unit: "count",
        what: "locks held or waited for by one session",
    },
    Limit {
        name: "candidates_per_election",
        value: crate::election::MAX_CANDIDATES as u64,
        unit: "count",
        what: "candidates of one election",
    },
    Limit {
        name: "members_per_group",
        value: crate::membership::MAX_MEMBERS as u64,
        unit: "count",
        what: "members of one group",
    },
    Limit {
        name: "sessions_per_server",
        value: crate::server::state::MAX_SESSIONS as u64,
        unit: "count",
        what: "sessions one server keeps",
    },
    Limit {
        name: "queued_events",
        value: crate::events::QUEUE_CAPACITY as u64,
        unit: "count",
        what: "events queued for one subscription before new ones are dropped",
    },
];

/// The limit named `name`.
pub fn get(name: &str) -> Option<Limit> {
    LIMITS.iter().copied().find(|l| l.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_values_are_the_rules_own() {
        let mut names: Vec<&str> = LIMITS.iter().map(|l| l.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LIMITS.len());
        assert_eq!(get("name_bytes").map(|l| l.value), Some(1024));
        // The checks refuse one past the limit and accept the limit itself.
        let max = get("name_bytes").unwrap().value as usize;
        assert!(crate::proto::Text::LockName.check(&"x".repeat(max)).is_ok());
        assert!(crate::proto::Text::LockName
            .check(&"x".repeat(max + 1))
            .is_err());
        assert_eq!(get("nope"), None);
    }
}
