"""The handles a client's calls give: ``Lock``, ``Election``, ``Observer``, ``Membership`` and
``GroupWatch``. Each wraps its native object; what they share is :class:`~tenure._calls.Handle`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from ._calls import Handle, calls, native, nothing

if TYPE_CHECKING:
    from ._tenure import Event, Master, Subscription, View

EventCallback = Callable[["Event"], Any]


class Lock(Handle):
    """A held lock, from ``client.lock(...)`` or ``client.try_lock(...)``.

    ``fencing_token`` is larger than every token granted before it: pass it to the resources
    you write. ``held`` turns False at the client's lease deadline with no message needed,
    before the service could grant the lock to anyone else. The lock is held until
    ``release()``, the end of its ``with`` block or the client's ``close()``: garbage
    collection never releases it (a ``ResourceWarning`` says so; ``client.held_locks()`` and
    ``client.release(name)`` still reach it). ``close()`` releases it if it is still held and
    never raises ``NotHeld``.
    """

    __slots__ = ()

    name: str = native("name", "The lock's name.")
    fencing_token: int = native("fencing_token", "The fencing token of this grant.")
    held: bool = native(
        "held",
        "True while the lock is held: not released, not lost, and the session's lease valid "
        "by the client's own deadline.",
    )
    lost_reason: Optional[str] = native(
        "lost_reason",
        'Why the lock was lost ("session_expired", "released", "data_lost", '
        '"client_closed"), or None.',
    )

    def on_lost(self, callback: EventCallback) -> "Subscription":
        """Calls ``callback(event)`` with the lock_lost event when the lock is lost (at once if
        it is lost already), on the client's dispatcher thread. A release is not a loss."""
        return self._n.on_lost(callback)

    def _release(self) -> Any:
        """Releases the lock and waits for the service to confirm. Raises ``NotHeld`` when the
        lock had been lost before. Releasing twice does nothing more: the second release
        gives the first one's outcome."""
        return self._n.release_start()

    release, release_async = calls(_release, nothing)

    def __exit__(self, *_exc: Any) -> bool:
        """Releases the lock; a lock lost inside the block is not an error here (its loss was
        reported to ``on_lost`` and shows in ``held``)."""
        self.close()
        return False


class Election(Handle):
    """A candidacy in an election, from ``client.campaign(...)``.

    ``master`` is the master as last told (a ``Master`` with its epoch, or None);
    ``is_master`` is True while this candidate is the master by the client's own lease
    deadline. ``resign()`` withdraws (a master hands over at once); so do ``close()`` and the
    end of the ``with`` block.
    """

    __slots__ = ()

    name: str = native("name", "The election's name.")
    candidate_id: str = native("candidate_id", "This candidate's id.")
    master: Optional["Master"] = native(
        "master", "The master as last told (with its epoch), or None."
    )
    epoch: int = native("epoch", "The epoch of the last master change seen (0 before any).")
    is_master: bool = native(
        "is_master",
        "True while this candidate is the master: designated, not resigned, and the session's "
        "lease valid by the client's own deadline.",
    )
    master_epoch: Optional[int] = native(
        "master_epoch",
        "The epoch at which this candidate became master, while it is master (use it as a "
        "fencing token for the master's writes); None otherwise.",
    )

    def on_master_change(self, callback: EventCallback) -> "Subscription":
        """Calls ``callback(event)`` with every master_changed event of this election, in
        epoch order, on the client's dispatcher thread; first with the current master if
        known."""
        return self._n.on_master_change(callback)

    def _resign(self) -> Any:
        """Withdraws the candidacy and waits for the service to confirm. Idempotent."""
        return self._n.resign_start()

    resign, resign_async = calls(_resign, nothing)
    _close_start = _resign


class Observer(Handle):
    """An observation of an election's master, from ``client.observe(...)``. ``close()`` (or
    the end of the ``with`` block) stops it and its callbacks."""

    __slots__ = ()

    name: str = native("name", "The election's name.")
    master: Optional["Master"] = native(
        "master", "The master as last told (with its epoch), or None."
    )
    epoch: int = native("epoch", "The epoch of the last master change seen (0 before any).")

    def on_master_change(self, callback: EventCallback) -> "Subscription":
        """See ``Election.on_master_change``."""
        return self._n.on_master_change(callback)


class Membership(Handle):
    """Membership of this client in a group, from ``client.join(...)``.

    It starts on probation; the service promotes it to full member (a member_promoted event)
    or removes it. ``leave()`` (or ``close()``, or the end of the ``with`` block) leaves the
    group.
    """

    __slots__ = ()

    group: str = native("group", "The group's name.")
    member_id: str = native("member_id", "This member's id.")
    view: "View" = native("view", "The group's view as last told.")
    is_member: bool = native(
        "is_member",
        "True while this process is a member in the last view told and its lease is valid.",
    )
    is_full: bool = native(
        "is_full", "True while this process is a full member (see ``is_member``)."
    )

    def on_view_change(self, callback: EventCallback) -> "Subscription":
        """Calls ``callback(event)`` with the group's view_changed, member_promoted and
        member_removed events, on the client's dispatcher thread; first with the current
        view."""
        return self._n.on_view_change(callback)

    def _report_check(self, ok: bool) -> Any:
        """Reports the application's evaluation of this probationary member: True lets the
        service promote it once its probation has passed; False removes it."""
        return self._n.report_check_start(ok)

    report_check, report_check_async = calls(_report_check, nothing)

    def _leave(self) -> Any:
        """Leaves the group and waits for the service to confirm. Idempotent."""
        return self._n.leave_start()

    leave, leave_async = calls(_leave, nothing)
    _close_start = _leave


class GroupWatch(Handle):
    """A watch on a group's views, from ``client.watch_group(...)``. ``close()`` (or the end of
    the ``with`` block) stops it."""

    __slots__ = ()

    group: str = native("group", "The group's name.")
    view: "View" = native("view", "The group's view as last told.")

    def on_view_change(self, callback: EventCallback) -> "Subscription":
        """See ``Membership.on_view_change``."""
        return self._n.on_view_change(callback)
