"""Lifetimes: interpreter exit with live callbacks, abandoned awaitables, dropped clients."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time

import tenure
from conftest import wait_until

EXIT_CHILD = textwrap.dedent(
    """
    import tempfile, threading, time
    import tenure
    from tenure import _tenure

    s = tenure.Server("127.0.0.1:0", tempfile.mkdtemp())
    c = tenure.Client([s.address], session_ttl=1.0)
    c.on_event(lambda ev: None)
    locks = [c.lock(f"l{i}", on_lost=lambda ev: time.sleep(0.01)) for i in range(20)]
    src = _tenure._bench_events(lambda ev: None, 100000, 0.0001)  # events still flowing
    e = c.campaign("e", "me", 1, on_master_change=lambda ev: None)

    def revoker():
        c2 = tenure.Client([s.address])
        for i in range(20):
            c2.revoke(f"l{i}")

    threading.Thread(target=revoker, daemon=True).start()
    time.sleep(0.05)
    print("exiting", flush=True)
    """
)


def test_interpreter_exit_with_live_callbacks_is_clean():
    for _ in range(3):
        start = time.monotonic()
        r = subprocess.run([sys.executable, "-c", EXIT_CHILD], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "exiting"
        assert "panicked" not in r.stderr and "Fatal" not in r.stderr, r.stderr
        assert time.monotonic() - start < 10


def test_an_awaitable_never_awaited_releases_its_lock(connect):
    a, b = connect(), connect()
    op = a.lock_async("never-awaited", timeout=5.0)
    del op
    gc.collect()
    wait_until(lambda: b.try_lock("never-awaited") is not None, 5.0, "lock free again")


def test_dropping_a_client_closes_its_session(server):
    a = tenure.Client([server.address], session_ttl=2.0)
    b = tenure.Client([server.address], session_ttl=2.0)
    lock = a.lock("dropped-client", timeout=1.0)
    del lock, a
    gc.collect()
    wait_until(lambda: b.try_lock("dropped-client") is not None, 5.0, "lock free again")
    b.close()
