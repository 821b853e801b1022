"""``tenure.Client``: a connection to the tenure service with one session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

from . import _tenure
from ._aio import Op
from ._calls import Handle, calls, maybe, native, nothing, same
from ._handles import Election, GroupWatch, Lock, Membership, Observer

if TYPE_CHECKING:
    from typing import Literal

    from ._tenure import Event, Subscription

EventCallback = Callable[["Event"], Any]


class Client(Handle):
    """A connection to the tenure service with one session, kept alive by heartbeats on a
    library thread.

    ``Client(endpoints, session_ttl=10.0)`` connects (blocking; Ctrl-C aborts it);
    ``"etcd://host:port,host:port"`` endpoints use an etcd cluster instead of tenure servers
    (the etcd backend). Use it as a context manager, or call ``close()``: the session ends and
    every lock it holds is released (reported lost with reason "client_closed").
    ``on_event=callback`` gets every event of the client from the session's first
    ``connected`` on (``client.on_event(...)``, called after the constructor returns, cannot
    see that first one), until the client closes. ``connect_timeout`` bounds each connection
    attempt; ``reopen`` opens a new session after an expiry; ``name`` is shown by ``tenure
    status``; ``drift_ratio`` and ``safety_margin`` shorten the client's own lease deadline;
    ``retry`` is "inverse_exponential" (the default), "exponential" or "fixed".
    """

    __slots__ = ()

    def __init__(
        self,
        endpoints: Union[str, Iterable[str]],
        session_ttl: float = 10.0,
        *,
        connect_timeout: float = 1.0,
        reopen: bool = True,
        name: Optional[str] = None,
        drift_ratio: float = 0.01,
        safety_margin: Optional[float] = None,
        retry: "Literal['inverse_exponential', 'exponential', 'fixed']" = "inverse_exponential",
        on_event: Optional[EventCallback] = None,
    ) -> None:
        started = _tenure.Client.connect_start(
            endpoints,
            session_ttl,
            connect_timeout=connect_timeout,
            reopen=reopen,
            name=name,
            drift_ratio=drift_ratio,
            safety_margin=safety_margin,
            retry=retry,
            on_event=on_event,
        )
        super().__init__(started.wait())

    @staticmethod
    def connect_async(*args: Any, **kwargs: Any) -> "Op[Client]":
        """Awaitable variant of ``Client(...)``, with the same arguments: ``client = await
        Client.connect_async([...])``."""
        return Op(_tenure.Client.connect_start(*args, **kwargs), Client._of)

    session_id: int = native("session_id", "The current session id (0 while none is open).")
    incarnation: int = native(
        "incarnation", "The service's incarnation token, as learnt at the last connection."
    )
    state: "Literal['connected', 'jeopardy', 'expired', 'closed']" = native(
        "state", '"connected", "jeopardy", "expired" or "closed".'
    )
    connected: bool = native(
        "connected", "True while the session's lease is valid by the client's own deadline."
    )
    closed: bool = native("closed", "True once ``close()`` was called.")

    def on_event(self, callback: EventCallback) -> "Subscription":
        """Calls ``callback(event)`` with every event of this client (session, locks, data
        loss) on the client's dispatcher thread. Returns the ``Subscription``."""
        return self._n.on_event(callback)

    def _lock(
        self,
        name: str,
        timeout: Optional[float] = None,
        on_lost: Optional[EventCallback] = None,
    ) -> Any:
        """Waits up to ``timeout`` seconds (None: without limit) for the lock ``name``; waiters
        are served in arrival order. Returns the ``Lock``; raises ``LockTimeout`` (a
        TimeoutError) when the time passes, ``LockHeld`` when this client holds it already.
        ``on_lost(event)`` is called if the lock is lost. Ctrl-C (or cancelling the awaiting
        task) gives the wait up; a grant that races it is released at once."""
        return self._n.lock_start(name, timeout, on_lost)

    lock, lock_async = calls(_lock, Lock._of)

    def _try_lock(self, name: str, on_lost: Optional[EventCallback] = None) -> Any:
        """Takes the lock ``name`` if it is free: the ``Lock``, or None when another session
        holds it."""
        return self._n.try_lock_start(name, on_lost)

    try_lock, try_lock_async = calls(_try_lock, maybe(Lock._of))

    def held_locks(self) -> "list[str]":
        """The names of the locks this client holds now, whether or not their ``Lock`` objects
        are still referenced (garbage collection never releases a lock)."""
        return self._n.held_locks()

    def _release(self, name: str) -> Any:
        """Releases the lock ``name`` this client holds (also one whose ``Lock`` object was
        garbage-collected) and waits for the service to confirm. Raises ``NotHeld`` when this
        client does not hold it."""
        return self._n.release_start(name)

    release, release_async = calls(_release, nothing)

    def _revoke(self, name: str) -> Any:
        """Administrative: releases the lock ``name`` whoever holds it. The holder's lock is
        lost with reason "released" and the next waiter is granted it."""
        return self._n.revoke_start(name)

    revoke, revoke_async = calls(_revoke, nothing)

    def _campaign(
        self,
        election: str,
        candidate_id: str,
        priority: int = 0,
        *,
        endpoint: Optional[str] = None,
        on_master_change: Optional[EventCallback] = None,
        preempt: bool = False,
    ) -> Any:
        """Registers this client as candidate ``candidate_id`` of ``election`` with
        ``priority`` (higher wins). ``endpoint`` ("host:port") is checked by the service
        before designation; ``preempt`` takes over from a live master of lower priority.
        Returns the ``Election``; ``on_master_change(event)`` gets every master change, first
        the current master."""
        start = self._n.campaign_start
        return start(election, candidate_id, priority, endpoint=endpoint,
                     on_master_change=on_master_change, preempt=preempt)

    campaign, campaign_async = calls(_campaign, Election._of)

    def _observe(self, election: str, on_master_change: Optional[EventCallback] = None) -> Any:
        """Observes ``election`` without being a candidate. Returns the ``Observer``;
        ``on_master_change(event)`` gets every master change, first the current master."""
        return self._n.observe_start(election, on_master_change)

    observe, observe_async = calls(_observe, Observer._of)

    def _request_election(self, election: str, timeout: float = 5.0) -> Any:
        """Asks for ``election``'s master: the current one when it is live, else the one the
        service designates now. Returns a ``Master``, or None when no candidate answers.
        Raises ``Timeout`` after ``timeout`` seconds."""
        return self._n.request_election_start(election, timeout)

    request_election, request_election_async = calls(_request_election, same)

    def _join(
        self,
        group: str,
        member_id: str,
        *,
        probation: float = 0.0,
        needs_check: bool = False,
        on_view_change: Optional[EventCallback] = None,
    ) -> Any:
        """Joins ``group`` as probationary member ``member_id``. The service promotes it to
        full member after ``probation`` seconds of live session with no missed heartbeat
        (and, with ``needs_check``, once ``report_check(True)`` was called). Returns the
        ``Membership``; ``on_view_change(event)`` gets view_changed, member_promoted and
        member_removed events."""
        start = self._n.join_start
        return start(group, member_id, probation=probation, needs_check=needs_check,
                     on_view_change=on_view_change)

    join, join_async = calls(_join, Membership._of)

    def _watch_group(self, group: str, on_view_change: Optional[EventCallback] = None) -> Any:
        """Watches ``group``'s views without being a member. Returns the ``GroupWatch``."""
        return self._n.watch_group_start(group, on_view_change)

    watch_group, watch_group_async = calls(_watch_group, GroupWatch._of)

    def _replace(self, group: str, failed: str, probationary: str) -> Any:
        """Removes the failed full member ``failed`` and promotes the probationary member
        ``probationary`` of ``group`` in one view change; returns the new ``View``."""
        return self._n.replace_start(group, failed, probationary)

    replace, replace_async = calls(_replace, same)

    def _close_start(self) -> Any:
        """Closes the session: every held lock is reported lost ("client_closed") and
        released, callbacks stop, and later calls raise ``Closed``. Idempotent."""
        return self._n.close_start()
