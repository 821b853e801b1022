//! Election handles of the client: campaigns, observers and election requests (SPEC 3.3).
//! The rules of designation live in [`crate::election`] and the server; here the client only
//! keeps what it was told, in epoch order.

use super::driver::Cmd;
use super::{Answer, Client, Pending, Shared};
use crate::error::{Error, Result};
use crate::events::{Event, Handler, Master, Sink, Subscription};
use crate::proto::{MasterInfo, Reply, Request, Text};
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::Ordering;
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

/// Shared record of one campaign or observation, between its handle and the driver.
pub(crate) struct ElectionShared {
    pub(crate) name: String,
    /// Candidate id; `None` for an observer.
    pub(crate) id: Option<String>,
    pub(crate) generation: u64,
    pub(crate) inner: Mutex<ElectionInner>,
}

pub(crate) struct ElectionInner {
    pub(crate) info: MasterInfo,
    /// The candidacy ended (resigned, or its session ended).
    pub(crate) ended: bool,
    sinks: Vec<Sink>,
    subs: Vec<Subscription>,
}

impl ElectionShared {
    pub(crate) fn new(
        name: String,
        id: Option<String>,
        generation: u64,
        info: MasterInfo,
    ) -> Arc<Self> {
        Arc::new(ElectionShared {
            name,
            id,
            generation,
            inner: Mutex::new(ElectionInner {
                info,
                ended: false,
                sinks: vec![],
                subs: vec![],
            }),
        })
    }

    /// Takes a newer master cache; returns the event when it is newer than what we had.
    pub(crate) fn update(&self, info: &MasterInfo) -> Option<Event> {
        let mut g = self.inner.lock();
        if info.epoch <= g.info.epoch {
            return None;
        }
        g.info = info.clone();
        let st = to_state(info);
        let ev = Event::MasterChanged {
            election: self.name.clone(),
            epoch: st.epoch,
            master: st.master,
        };
        g.sinks.retain(|s| s.send(ev.clone()));
        Some(ev)
    }

    /// Forgets the master cache (the service's state was lost; epochs start over).
    pub(crate) fn reset(&self) {
        self.inner.lock().info = MasterInfo::default();
    }

    pub(crate) fn end(&self) {
        self.inner.lock().ended = true;
    }

    /// The epoch at which this candidacy is master at `now` (`Election::is_master`): the last
    /// master it was told is itself, the candidacy has not ended, it belongs to the current
    /// session, and that session's deadline is after `now`.
    pub(crate) fn master_at(&self, shared: &Shared, now: std::time::Instant) -> Option<u64> {
        let g = self.inner.lock();
        let me = g.info.master.as_ref().map(|m| &m.0) == self.id.as_ref();
        let current = shared.generation.load(Ordering::Acquire) == self.generation;
        (!g.ended && me && current && shared.valid_at(now)).then_some(g.info.epoch)
    }

    /// The master cache this handle holds, and whether the candidacy ended.
    #[cfg(test)]
    pub(crate) fn seen(&self) -> (MasterInfo, bool) {
        let g = self.inner.lock();
        (g.info.clone(), g.ended)
    }
}

fn subscribe(client: &Client, shared: &ElectionShared, callback: Handler) {
    let (sub, sink) = client.inner.dispatcher.subscribe(callback);
    let mut g = shared.inner.lock();
    if g.info.epoch > 0 {
        let st = to_state(&g.info);
        sink.send(Event::MasterChanged {
            election: shared.name.clone(),
            epoch: st.epoch,
            master: st.master,
        });
    }
    g.sinks.push(sink);
    g.subs.push(sub);
}

/// A candidacy in an election. Dropping it resigns.
pub struct Election {
    client: Client,
    shared: Arc<ElectionShared>,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.shared.name)
            .field("id", &self.shared.id)
            .field("master", &self.master())
            .finish()
    }
}

impl Election {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The master as last told, and its epoch.
    pub fn master(&self) -> MasterState {
        to_state(&self.shared.inner.lock().info)
    }

    /// True while this candidate is the master: designated, not resigned, and the session's
    /// lease valid by the client's own deadline (false from the deadline on, with no message
    /// needed, before the service could designate another master).
    pub fn is_master(&self) -> bool {
        self.shared
            .master_at(&self.client.inner.shared, std::time::Instant::now())
            .is_some()
    }

    /// The epoch at which this candidate became master, while it is master: use it as a
    /// fencing token for the master's writes.
    pub fn master_epoch(&self) -> Option<u64> {
        self.is_master()
            .then(|| self.shared.inner.lock().info.epoch)
    }

    /// Calls `callback` with every `master_changed` event of this election, in epoch order,
    /// on a dispatcher thread; first with the current master if one is known.
    pub fn on_master_change(&self, callback: impl Into<Handler>) {
        subscribe(&self.client, &self.shared, callback.into());
    }

    /// Withdraws the candidacy and waits for the service to confirm. A master that resigns
    /// hands over to the next candidate at once.
    pub fn resign(self) -> Result<()> {
        self.resign_inner(true)
    }

    /// [`Election::resign`] without blocking (see [`Client::lock_start`]).
    pub fn resign_start(self) -> Result<Pending<()>> {
        self.client.give_up_start(self.mark_ended())
    }

    /// Marks the candidacy ended: the resignation to send (`None` when ended already).
    fn mark_ended(&self) -> Option<Request> {
        let mut g = self.shared.inner.lock();
        if g.ended {
            return None;
        }
        g.ended = true;
        Some(Request::Resign {
            election: self.shared.name.clone(),
            id: self.shared.id.clone().unwrap_or_default(),
        })
    }

    fn resign_inner(&self, wait: bool) -> Result<()> {
        match self.mark_ended() {
            Some(body) => self.client.give_up(body, wait),
            None => Ok(()),
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        let _ = self.resign_inner(false);
        let subs = std::mem::take(&mut self.shared.inner.lock().subs);
        drop(subs);
        let _ = self.client.inner.send(Cmd::Forget {
            shared: self.shared.clone(),
        });
    }
}

/// An observation of an election: master changes without being a candidate. Dropping it
/// stops the callbacks.
pub struct Observer {
    client: Client,
    shared: Arc<ElectionShared>,
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("name", &self.shared.name)
            .field("master", &self.master())
            .finish()
    }
}

impl Observer {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The master as last told, and its epoch.
    pub fn master(&self) -> MasterState {
        to_state(&self.shared.inner.lock().info)
    }

    /// Calls `callback` with every `master_changed` event of this election (see
    /// [`Election::on_master_change`]).
    pub fn on_master_change(&self, callback: impl Into<Handler>) {
        subscribe(&self.client, &self.shared, callback.into());
    }

    /// Stops the observation.
    pub fn close(self) {}
}

impl Drop for Observer {
    fn drop(&mut self) {
        let subs = std::mem::take(&mut self.shared.inner.lock().subs);
        drop(subs);
        let _ = self.client.inner.send(Cmd::Forget {
            shared: self.shared.clone(),
        });
    }
}

fn shared_of(client: &Client, a: super::Answer) -> Result<Arc<ElectionShared>> {
    let _ = client;
    match a? {
        (_, super::Held::Election(e)) => Ok(e),
        (r, _) => Err(Error::Rejected(format!("unexpected reply {r:?}"))),
    }
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
                client: c.clone(),
                shared: shared_of(c, a)?,
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
                client: c.clone(),
                shared: shared_of(c, a)?,
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
