//! Locks in the state machine: acquire, release, cancel and administrative revoke, each check
//! beside its application. The lock table's own rules (grant order, tokens, waiter limit) are
//! in [`crate::lock`].
//!
//! Rules kept here:
//! - A session holds or waits for at most [`MAX_LOCKS_PER_SESSION`] locks.
//! - Every release (by the holder, by a cancel of a granted acquire, by a revoke, by the end
//!   of the session) goes through [`State::release_and_hand_over`]: the lock goes to its first
//!   waiter with a new token.
//! - A cancel ends a waiting acquire, gives back a grant its client no longer waits for, or,
//!   arriving before its request, leaves a tombstone so the request is answered as cancelled.

use super::sessions::Session;
use super::{check, Output, State, MAX_LOCKS_PER_SESSION};
use crate::lock::{Acquired, Grant};
use crate::proto::{echo, ErrorReply, Notice, Reply, SessionId, Text};

impl State {
    pub(super) fn check_acquire(&self, s: &Session, name: &str) -> Result<(), ErrorReply> {
        check(Text::LockName, name)?;
        if s.held.len() + s.waiting().len() >= MAX_LOCKS_PER_SESSION {
            return Err(ErrorReply::Limit(format!(
                "a session may hold or wait for {MAX_LOCKS_PER_SESSION} locks"
            )));
        }
        Ok(())
    }

    pub(super) fn acquire(
        &mut self,
        session: SessionId,
        req: u64,
        name: &str,
        wait: bool,
        out: &mut Vec<Output>,
    ) {
        match self.locks.acquire(name, session, req, wait) {
            Acquired::Granted(g) => self.granted(g, out),
            Acquired::Queued => {
                self.session_mut(session)
                    .more()
                    .waiting
                    .insert(req, name.to_string());
            }
            Acquired::Busy => self.reply(session, req, Ok(Reply::Busy), out),
            Acquired::AlreadyHeld => self.reply(session, req, Err(ErrorReply::AlreadyHeld), out),
            Acquired::QueueFull => {
                let e = ErrorReply::Limit(format!(
                    "lock {} has {} waiters already",
                    echo(name),
                    crate::lock::MAX_WAITERS
                ));
                self.reply(session, req, Err(e), out)
            }
        }
    }

    pub(super) fn check_release(&self, name: &str) -> Result<(), ErrorReply> {
        check(Text::LockName, name)
    }

    pub(super) fn release(
        &mut self,
        session: SessionId,
        req: u64,
        name: &str,
        token: u64,
        out: &mut Vec<Output>,
    ) {
        if self.release_and_hand_over(name, session, token, out) {
            self.reply(session, req, Ok(Reply::Done), out);
        } else {
            self.reply(session, req, Err(ErrorReply::NotHolder), out);
        }
    }

    /// Cancels request `target` of the session (no check: any id may be cancelled).
    pub(super) fn cancel(
        &mut self,
        session: SessionId,
        req: u64,
        target: u64,
        out: &mut Vec<Output>,
    ) {
        let s = self.session_mut(session);
        if let Some(name) = s.take_waiting(&target) {
            self.locks.remove_waiter(&name, session, target);
            // The cancelled acquire gets no grant; remember that it ended.
            let e = Err(ErrorReply::Invalid("acquire cancelled".into()));
            self.session_mut(session).remember(target, e);
        } else if let Some(Ok(Reply::Granted { name, token })) = s.remembered(target).cloned() {
            // Granted before the cancel arrived: give it back.
            if self.locks.held_by(&name, session) == Some((token, target)) {
                self.release_and_hand_over(&name, session, token, out);
            }
        } else if s.awaiting().contains_key(&target) {
            self.cancel_awaiting(session, target);
        } else if s.remembered(target).is_none() {
            // The cancel overtook its request (it was sent on a connection the client gave
            // up): leave a tombstone so the request, if it arrives, is answered as cancelled
            // instead of taking a lock nobody waits for.
            s.remember(target, Err(ErrorReply::Invalid("request cancelled".into())));
        }
        self.reply(session, req, Ok(Reply::Done), out);
    }

    pub(super) fn check_revoke(&self, name: &str) -> Result<(), ErrorReply> {
        check(Text::LockName, name)?;
        if self.locks.get(name).is_some() {
            Ok(())
        } else {
            Err(ErrorReply::Invalid(format!(
                "no lock {} is held",
                echo(name)
            )))
        }
    }

    /// An administrator releases `name`, whoever holds it: the holder is told, the first
    /// waiter gets it.
    pub(super) fn revoke(&mut self, name: &str, out: &mut Vec<Output>) {
        let Some((holder, token, _)) = self.locks.get(name) else {
            return;
        };
        out.push(Output::Notice {
            session: holder,
            notice: Notice::LockRevoked {
                name: name.to_string(),
                token,
            },
        });
        self.release_and_hand_over(name, holder, token, out);
    }

    /// The one release: `holder` gives up `name` held with `token`, and its first waiter gets
    /// it with a new token. False (nothing changed) when `holder` does not hold it with `token`.
    pub(super) fn release_and_hand_over(
        &mut self,
        name: &str,
        holder: SessionId,
        token: u64,
        out: &mut Vec<Output>,
    ) -> bool {
        let (released, next) = self.locks.release(name, holder, token);
        if !released {
            return false;
        }
        if let Some(s) = self.sessions.get_mut(&holder) {
            s.held.remove(name);
        }
        if let Some(g) = next {
            self.granted(g, out);
        }
        true
    }

    /// A waiter (or a new acquire) got a lock: it is held, and the acquire is answered.
    fn granted(&mut self, g: Grant, out: &mut Vec<Output>) {
        let s = self
            .sessions
            .get_mut(&g.session)
            .expect("waiters belong to live sessions");
        s.take_waiting(&g.req);
        s.held.insert(g.name.clone());
        let reply = Reply::Granted {
            name: g.name,
            token: g.token,
        };
        self.reply(g.session, g.req, Ok(reply), out);
    }
}
