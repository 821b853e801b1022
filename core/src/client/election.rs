//! Election handles of the client: campaigns, observers and election requests (SPEC 3.3).
//! The rules of designation live in [`crate::election`] and the server; here the client only
//! keeps what it was told, in epoch order.

use super::watched::{handle_of, watch_handle, Handle, Versioned, WatchHandle, Watched};
use super::{Answer, Client, Held, Pending, Shared};
use crate::error::{Error, Result};
use crate::events::{Event, Handler, Master};
use crate::proto::{MasterInfo, Reply, Request, Text};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a candidate registers.
#[derive(Debug, Clone)]
pub struct Candidacy {
    /// Candidate id, unique in the election (1..=256 bytes, no NUL).
    pub id: String,
    /// Priority: higher wins.
    pub priority: i64,
    /// How other processes reach this candidate (`host:port`); the service checks that it
    /// accepts connections before designating it. Without one, the live session is the check.
    pub endpoint: Option<String>,
    /// Take over from a live master of lower priority (default false: a master is kept until
    /// it fails or resigns).
    pub preempt: bool,
}

impl Candidacy {
    /// A candidacy with this id and priority, no endpoint, no preemption.
    pub fn new(id: impl Into<String>, priority: i64) -> Self {
        Candidacy {
            id: id.into(),
            priority,
            endpoint: None,
            preempt: false,
        }
    }
}

/// An election's master and the epoch it was designated at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterState {
    /// The master, if there is one.
    pub master: Option<Master>,
    /// Epoch of the last change; strictly increases.
    pub epoch: u64,
}

pub(crate) fn to_state(info: &MasterInfo) -> MasterState {
    MasterState {
        epoch: info.epoch,
        master: info.master.as_ref().map(|(id, endpoint)| Master {
            id: id.clone(),
            endpoint: endpoint.clone(),
        }),
    }
}

/// Shared record of one campaign or observation, between its handle and the session.
pub(crate) type ElectionShared = Watched<MasterInfo>;

impl Versioned for MasterInfo {
    fn version(&self) -> u64 {
        self.epoch
    }

    fn changes(name: &str, _prev: &Self, next: &Self) -> Vec<Event> {
        let st = to_state(next);
        vec![Event::MasterChanged {
            election: name.to_string(),
            epoch: st.epoch,
            master: st.master,
        }]
    }

    fn held(w: Arc<Watched<Self>>) -> Held {
        Held::Election(w)
    }

    type Public = MasterState;
    fn public(&self) -> MasterState {
        to_state(self)
    }
}

impl ElectionShared {
    /// The epoch at which this candidacy is master at `now` (`Election::is_master`): the last
    /// master it was told is itself, and the candidacy is live ([`Watched::live`]).
    pub(crate) fn master_at(&self, shared: &Shared, now: Instant) -> Option<u64> {
        self.live(shared, now, |info| {
            let me = info.master.as_ref().map(|m| &m.0) == self.id.as_ref();
            me.then_some(info.epoch)
        })
        .flatten()
    }
}

watch_handle!(Election => MasterState, Observer => MasterState);

fn pick(held: Held) -> Option<Arc<ElectionShared>> {
    match held {
        Held::Election(e) => Some(e),
        _ => None,
    }
}

/// A candidacy in an election. Dropping it resigns.
pub struct Election {
    h: Handle<MasterInfo>,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.h.shared.name)
            .field("id", &self.h.shared.id)
            .field("master", &self.master())
            .finish()
    }
}

impl Election {
    /// The election's name.
    pub fn name(&self) -> &str {
        WatchHandle::name(self)
    }

    /// The master as last told, and its epoch.
    pub fn master(&self) -> MasterState {
        self.value()
    }

    /// True while this candidate is the master: designated, not resigned, and the session's
    /// lease valid by the client's own deadline (false from the deadline on, with no message
    /// needed, before the service could designate another master).
    pub fn is_master(&self) -> bool {
        self.master_epoch().is_some()
    }

    /// The epoch at which this candidate became master, while it is master: use it as a
    /// fencing token for the master's writes.
    pub fn master_epoch(&self) -> Option<u64> {
        self.h
            .shared
            .master_at(&self.h.client.inner.shared, Instant::now())
    }

    /// Calls `callback` with every `master_changed` event of this election, in epoch order,
    /// on a dispatcher thread; first with the current master if one is known.
    pub fn on_master_change(&self, callback: impl Fn(Event) + Send + Sync + 'static) {
        self.on_change(Handler::dispatched(callback));
    }

    /// Withdraws the candidacy and waits for the service to confirm. A master that resigns
    /// hands over to the next candidate at once.
    pub fn resign(self) -> Result<()> {
        self.resign_inner(true)
    }

    /// [`Election::resign`] without blocking (see [`Client::lock_start`]).
    pub fn resign_start(self) -> Result<Pending<()>> {
        self.h.give_up_start(resign_request)
    }

    fn resign_inner(&self, wait: bool) -> Result<()> {
        self.h.give_up(wait, resign_request)
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        // Then `h` stops the callbacks and has the record forgotten.
        let _ = self.resign_inner(false);
    }
}

/// An observation of an election: master changes without being a candidate. Dropping it
/// stops the callbacks.
pub struct Observer {
    h: Handle<MasterInfo>,
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("name", &self.h.shared.name)
            .field("master", &self.master())
            .finish()
    }
}

impl Observer {
    /// The election's name.
    pub fn name(&self) -> &str {
        WatchHandle::name(self)
    }

    /// The master as last told, and its epoch.
    pub fn master(&self) -> MasterState {
        self.value()
    }

    /// Calls `callback` with every `master_changed` event of this election (see
    /// [`Election::on_master_change`]).
    pub fn on_master_change(&self, callback: impl Fn(Event) + Send + Sync + 'static) {
        self.on_change(Handler::dispatched(callback));
    }

    /// Stops the observation.
    pub fn close(self) {}
}

impl Client {
    /// Registers this client as a candidate of `election`. When the election has no master,
    /// the service designates one at once (the highest priority that answers its check).
    pub fn campaign(&self, election: &str, c: Candidacy) -> Result<Election> {
        self.campaign_start(election, c)?.wait()
    }

    /// [`Client::campaign`] without blocking (see [`Client::lock_start`]). A `Pending`
    /// dropped before its result withdraws the candidacy.
    pub fn campaign_start(&self, election: &str, c: Candidacy) -> Result<Pending<Election>> {
        super::check(Text::ElectionName, election)?;
        super::check(Text::CandidateId, &c.id)?;
        if let Some(e) = &c.endpoint {
            super::check(Text::Endpoint, e)?;
        }
        let body = Request::Campaign {
            election: election.to_string(),
            id: c.id,
            priority: c.priority,
            endpoint: c.endpoint,
            preempt: c.preempt,
        };
        let make = |c: &Client, a: Answer| {
            Ok(Election {
                h: handle_of(c, a, pick)?,
            })
        };
        self.pending(body, self.no_answer(), make, "campaign")
    }

    /// Observes `election`: its master and every change of it.
    pub fn observe(&self, election: &str) -> Result<Observer> {
        self.observe_start(election)?.wait()
    }

    /// [`Client::observe`] without blocking (see [`Client::lock_start`]).
    pub fn observe_start(&self, election: &str) -> Result<Pending<Observer>> {
        super::check(Text::ElectionName, election)?;
        let body = Request::Observe {
            election: election.to_string(),
        };
        let make = |c: &Client, a: Answer| {
            Ok(Observer {
                h: handle_of(c, a, pick)?,
            })
        };
        self.pending(body, self.no_answer(), make, "observe")
    }

    /// Asks for `election`'s master: the cached one when it is live, else the one the
    /// service designates now (`master: None` when no candidate answers). Waits up to
    /// `timeout`.
    pub fn request_election(&self, election: &str, timeout: Duration) -> Result<MasterState> {
        self.request_election_start(election, timeout)?.wait()
    }

    /// [`Client::request_election`] without blocking (see [`Client::lock_start`]).
    pub fn request_election_start(
        &self,
        election: &str,
        timeout: Duration,
    ) -> Result<Pending<MasterState>> {
        super::check(Text::ElectionName, election)?;
        super::check_timeout(timeout)?;
        let body = Request::RequestElection {
            election: election.to_string(),
        };
        let deadline = Instant::now()
            .checked_add(timeout)
            .map(|t| (t, Error::Timeout));
        let make = |_: &Client, a: Answer| match a? {
            (Reply::Master(info), _) => Ok(to_state(&info)),
            (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
        };
        self.pending(body, deadline, make, "request_election")
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Election>();
    f::<Observer>();
    f::<Shared>();
}

/// The request that gives up a candidacy.
fn resign_request(election: &str, id: String) -> Request {
    Request::Resign {
        election: election.to_string(),
        id,
    }
}
