"""tenure: coordination primitives for Python.

Sessions kept alive by heartbeats, locks with fencing tokens and lost callbacks, elections
with master-change callbacks, group membership and failure detectors, from a Rust core.

Quick start::

    import tenure

    with tenure.Server(listen="127.0.0.1:0", data_dir="/tmp/tenure-data") as server:
        with tenure.Client([server.address], session_ttl=2.0) as client:
            with client.lock("jobs/reindex", timeout=5.0,
                             on_lost=lambda ev: print("lost:", ev.reason)) as lock:
                print("token", lock.fencing_token)

Locks
    A lock is held until ``release()``, the end of its ``with`` block or the client's
    ``close()``; garbage collection never releases it. A ``Lock`` collected while held raises
    a ``ResourceWarning``; ``client.held_locks()`` lists and ``client.release(name)`` releases
    what the client holds.

Layers
    This package is a hand-written layer over the private native module ``tenure._tenure``:
    each call is one native ``*_start`` method that starts the core's pending call (no thread
    waits for it); the blocking method is "start, then wait" and the ``*_async`` one awaits
    the same pending call (``_calls.py``); every handle shares one close/context base.

Threads and callbacks
    Blocking calls (connecting, ``lock``, ``campaign``, ``close``, ...) release the GIL and
    wake every 50 ms so that Ctrl-C raises ``KeyboardInterrupt``; an interrupted ``lock``
    never leaves the lock held. No thread is made per call. Callbacks
    (``on_event``, ``on_lost``, ``on_master_change``, ``on_view_change``) run on a dispatcher
    thread owned by the package (one per client and per detector), never on the heartbeat
    thread, one at a time in the order of the events. A callback that blocks delays the later
    callbacks of its client only; the session's heartbeats go on. An exception raised in a
    callback is logged to ``logging.getLogger("tenure")`` with its traceback, and later
    events are still delivered.

asyncio
    Every blocking call has an awaitable variant named ``*_async`` (``await
    client.lock_async("name", timeout=5)``, ``await tenure.Client.connect_async([...])``,
    ``await tenure.Server.start_async(...)``); cancelling the awaiting task gives the call up
    and releases whatever it would have produced. The awaitables of calls that return a
    handle are also async context managers (``async with client.lock_async("x") as lock:``).
    Callbacks run on tenure's dispatcher thread; wrap them with :func:`on_loop` to have them
    run on an event loop instead (through ``loop.call_soon_threadsafe``).

Errors
    Every exception derives from :class:`TenureError`. ``LockTimeout`` (a ``Timeout``) is also
    a ``TimeoutError``; ``InvalidArgument`` is also a ``ValueError``; ``ConnectionFailed`` a
    ``ConnectionError``; ``IoError`` an ``OSError``. Wrong argument types raise
    ``TypeError``.
"""

from __future__ import annotations

import atexit as _atexit

from . import _tenure
from ._aio import on_loop
from ._client import Client
from ._handles import Election, GroupWatch, Lock, Membership, Observer
from ._process import Detector, Server
from ._tenure import (
    LIMITS,
    MAX_TIMEOUT,
    Closed,
    ConnectionFailed,
    DataLost,
    Event,
    InvalidArgument,
    IoError,
    LimitReached,
    LockHeld,
    LockTimeout,
    Master,
    Member,
    NotHeld,
    Rejected,
    SessionExpired,
    Subscription,
    TenureError,
    Timeout,
    View,
    __version__,
)

__all__ = [
    "LIMITS",
    "MAX_TIMEOUT",
    "Client",
    "Closed",
    "ConnectionFailed",
    "DataLost",
    "Detector",
    "Election",
    "Event",
    "GroupWatch",
    "InvalidArgument",
    "IoError",
    "LimitReached",
    "Lock",
    "LockHeld",
    "LockTimeout",
    "Master",
    "Member",
    "Membership",
    "NotHeld",
    "Observer",
    "Rejected",
    "Server",
    "SessionExpired",
    "Subscription",
    "TenureError",
    "Timeout",
    "View",
    "__version__",
    "on_loop",
]

# Stop the dispatcher threads before the interpreter finalises, so that no callback runs
# while it does.
_atexit.register(_tenure._shutdown)
