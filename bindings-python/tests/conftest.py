"""Shared fixtures: an embedded server, clients closed after each test, a freezable TCP proxy."""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Callable, Iterator, List

import pytest

import tenure


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Polls ``pred`` until it is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def server(tmp_path) -> Iterator[tenure.Server]:
    with tenure.Server(listen="127.0.0.1:0", data_dir=str(tmp_path / "data")) as s:
        yield s


@pytest.fixture
def connect(server) -> Iterator[Callable[..., tenure.Client]]:
    """``connect(**kw)`` gives a client of the test's server, closed at the end of the test."""
    clients: List[tenure.Client] = []

    def make(endpoints=None, **kw) -> tenure.Client:
        kw.setdefault("session_ttl", 2.0)
        c = tenure.Client(endpoints or [server.address], **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of the server. ``freeze()`` stops forwarding in both
    directions (connections stay open, new ones are accepted and held): the client behind it
    hears nothing, as if its network or the server paused."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.socks: List[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name="test-proxy", daemon=True)
        self.thread.start()

    def freeze(self) -> None:
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
        self.thread.join(timeout=5)

    def _accept(self) -> None:
        while not self.stopped.is_set():
            r, _, _ = select.select([self.listener], [], [], 0.05)
            if not r:
                continue
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.target, timeout=5)
            with self.lock:
                self.socks += [down, up]
            threading.Thread(target=self._pipe, args=(down, up), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        while not self.stopped.is_set():
            if self.frozen.is_set():
                time.sleep(0.01)
                continue
            try:
                r, _, _ = select.select([a, b], [], [], 0.02)
            except (OSError, ValueError):
                return
            for s in r:
                if self.frozen.is_set():
                    break
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    peer[s].sendall(data)
                except OSError:
                    return


@pytest.fixture
def proxy(server) -> Iterator[Proxy]:
    p = Proxy(server.address)
    yield p
    p.close()
