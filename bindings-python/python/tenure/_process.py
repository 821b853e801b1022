"""``tenure.Server`` and ``tenure.Detector``: parts of the service run in this process.

Starting and stopping them is bounded local work (binding sockets, reading the data directory,
joining threads), not a call to the service: the blocking forms run on the calling thread with
the GIL released, the ``*_async`` forms in the event loop's default executor
(:class:`~tenure._aio.Blocking`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from . import _tenure
from ._aio import Blocking
from ._calls import Handle, native

if TYPE_CHECKING:
    from typing import Literal

    from ._tenure import Event, Subscription

EventCallback = Callable[["Event"], Any]
Peers = Union[Mapping[str, str], Sequence[Tuple[str, str]]]


class Server(Handle):
    """The tenure server, embedded in this process.

    ``Server(listen="127.0.0.1:0", data_dir=path)`` recovers the state from ``data_dir``,
    binds ``listen`` and serves on a thread of its own (the constructor returns once it
    listens). ``durability`` is "fsync" (the default: a change is acknowledged once on disk)
    or "none" (nothing written; ``data_dir`` is then optional). Use it as a context manager,
    or call ``stop()``.
    """

    __slots__ = ()

    def __init__(
        self,
        listen: str = "127.0.0.1:7411",
        data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        durability: "Literal['fsync', 'none']" = "fsync",
    ) -> None:
        super().__init__(_tenure.Server(listen, data_dir, durability))

    @staticmethod
    def start_async(*args: Any, **kwargs: Any) -> "Blocking[Server]":
        """Awaitable variant of ``Server(...)``, with the same arguments: ``server = await
        Server.start_async(...)``."""
        return Blocking(lambda: Server(*args, **kwargs), "server-start")

    address: str = native(
        "address", 'The address the server listens on, "host:port" (the port chosen when 0 '
        "was asked).",
    )
    incarnation: int = native("incarnation", "The incarnation token of the service's state.")
    running: bool = native("running", "True until stopped.")

    def stop(self) -> None:
        """Stops serving: commits what was applied, closes every connection and returns.
        Clients keep their sessions until they expire; a restart on the same data directory
        gives each a grace period of its TTL. Idempotent."""
        self._n.stop()

    def stop_async(self) -> "Blocking[None]":
        """Awaitable variant of ``stop``."""
        return Blocking(self._n.stop, "server-stop")

    close = stop
    close_async = stop_async


class Detector(Handle):
    """A failure detector: this process (``name``) sends a heartbeat to each peer every
    ``interval`` seconds on every network, and reports peer_suspected, peer_recovered,
    network_down and network_up events to ``on_event`` callbacks.

    ``networks`` is a list of ``(network_name, bind, peers)``: the local "host:port" to bind
    (port 0 picks one) and the peers with their address on that network, as a dict
    ``{peer_name: "host:port"}`` or a list of ``(peer_name, "host:port")``. Every network lists
    the same peers. ``estimator`` is "adaptive" (default), "phi" (with ``phi_threshold``) or
    "fixed" (with ``fixed_timeout`` seconds). ``network_failure_limit`` defaults to four
    intervals. ``stop()`` (or ``close()``, or the end of the ``with`` block) stops it.
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        interval: float,
        networks: Sequence[Tuple[str, str, Peers]],
        *,
        estimator: "Literal['adaptive', 'phi', 'fixed']" = "adaptive",
        phi_threshold: float = 8.0,
        fixed_timeout: Optional[float] = None,
        network_failure_limit: Optional[float] = None,
    ) -> None:
        super().__init__(
            _tenure.Detector(
                name,
                interval,
                networks,
                estimator=estimator,
                phi_threshold=phi_threshold,
                fixed_timeout=fixed_timeout,
                network_failure_limit=network_failure_limit,
            )
        )

    name: str = native("name", "This process's name.")
    running: bool = native("running", "True until stopped.")

    def on_event(self, callback: EventCallback) -> "Subscription":
        """Calls ``callback(event)`` with every later event of this detector, on the
        detector's dispatcher thread. Returns the ``Subscription``."""
        return self._n.on_event(callback)

    def local_address(self, network: str) -> Optional[str]:
        """The address a network's socket is bound to ("host:port"), or None for an unknown
        network."""
        return self._n.local_address(network)

    def set_sending(self, network: str, on: bool) -> None:
        """Switches sending on one network off or on (fault drills): peers then see this
        process silent on that network only. Receiving goes on."""
        self._n.set_sending(network, on)

    def status(self) -> "dict[str, Any]":
        """A snapshot of the detector's state: ``{"networks": [...], "peers": [...]}`` with,
        per network, ``name``, ``down``, ``silent_for`` (seconds); per peer, ``name``,
        ``process_suspected`` and ``links`` (per network: ``network``, ``heartbeats``,
        ``silent_for``, ``timeout``, ``phi``, ``silent``, ``path_suspected``)."""
        return self._n.status()

    def counters(self) -> "dict[str, int]":
        """Datagram counters: ``{"sent", "send_errors", "received", "rejected"}``."""
        return self._n.counters()

    def stop(self) -> None:
        """Stops heartbeating, closes the sockets and ends the callbacks. Idempotent."""
        self._n.stop()

    def stop_async(self) -> "Blocking[None]":
        """Awaitable variant of ``stop``."""
        return Blocking(self._n.stop, "detector-stop")

    close = stop
    close_async = stop_async
