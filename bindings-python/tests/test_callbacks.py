"""Callbacks: on a dispatcher thread, exceptions logged, slow callbacks and a busy main
thread do not stop anything."""

from __future__ import annotations

import logging
import threading
import time

from conftest import wait_until


def test_callbacks_run_on_a_dispatcher_thread(connect):
    a = connect()
    threads = []

    def record(ev):
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/comm") as f:
            threads.append((threading.current_thread(), f.read().strip()))

    a.on_event(record)
    a.lock("x", timeout=1.0).release()
    wait_until(lambda: threads, 5.0, "an event")
    t, comm = threads[0]
    assert t is not threading.main_thread()
    # The package's dispatcher ("tenure-py-client"; Linux keeps 15 characters), not a
    # heartbeat or I/O thread of the core.
    assert comm.startswith("tenure-py-"), comm


def test_a_raising_callback_is_logged_and_later_events_arrive(connect, caplog):
    a = connect()
    seen = []

    def callback(ev):
        seen.append(ev.kind)
        if len(seen) == 1:
            raise RuntimeError("boom in user code")

    with caplog.at_level(logging.ERROR, logger="tenure"):
        a.on_event(callback)
        a.lock("first", timeout=1.0).release()
        wait_until(lambda: any(r.name == "tenure" for r in caplog.records), 5.0, "log record")
        a.lock("second", timeout=1.0).release()
        wait_until(lambda: len(seen) >= 2, 5.0, "a later event")
    rec = [r for r in caplog.records if r.name == "tenure"][0]
    assert rec.levelno == logging.ERROR
    assert "on_event" in rec.getMessage()
    assert rec.exc_info is not None and rec.exc_info[0] is RuntimeError
    assert "boom in user code" in caplog.text
    assert "in callback" in caplog.text  # the traceback names the raising function


def test_a_callback_that_sleeps_does_not_cost_the_session(connect):
    a, admin = connect(session_ttl=1.0), connect()
    session = a.session_id
    keep = a.lock("keep", timeout=1.0)
    lost = []
    sleeper_done = []

    def sleepy(ev):
        lost.append(ev)
        time.sleep(2.0)
        sleeper_done.append(time.monotonic())

    revoked = a.lock("revoked", timeout=1.0, on_lost=sleepy)
    admin.revoke("revoked")
    wait_until(lambda: lost, 5.0, "on_lost")
    # While the callback sleeps (twice the TTL), heartbeats go on.
    time.sleep(1.0)
    assert a.connected and a.state == "connected"
    assert keep.held
    wait_until(lambda: sleeper_done, 5.0, "the sleeping callback returns")
    assert a.session_id == session and keep.held
    # Events after the slow callback still arrive.
    more = []
    a.on_event(more.append)
    a.lock("after", timeout=1.0).release()
    wait_until(lambda: more, 5.0, "a later event")
    keep.release()
    assert not revoked.held


def test_callbacks_keep_working_while_the_main_thread_is_busy(connect):
    a, admin = connect(), connect()
    got = []
    locks = [a.lock(f"busy/{i}", timeout=1.0, on_lost=lambda ev: got.append(time.monotonic()))
             for i in range(5)]

    def revoker():
        time.sleep(0.2)
        for i in range(5):
            admin.revoke(f"busy/{i}")

    t = threading.Thread(target=revoker)
    start = time.monotonic()
    t.start()
    # Pure Python work on the main thread, holding the GIL between switches.
    x = 0
    while time.monotonic() - start < 2.0:
        x += 1
    end = time.monotonic()
    t.join(timeout=10)
    assert len(got) == 5, f"only {len(got)} callbacks ran while the main thread was busy"
    assert all(start < g < end for g in got)
    del locks


def test_a_closed_subscription_gets_no_more_events(connect):
    a = connect()
    seen = []
    sub = a.on_event(seen.append)
    a.lock("one", timeout=1.0).release()
    wait_until(lambda: seen, 5.0, "an event")
    sub.close()
    assert not sub.active
    n = len(seen)
    a.lock("two", timeout=1.0).release()
    time.sleep(0.3)
    assert len(seen) == n
    sub.close()  # idempotent


def test_a_callback_can_close_its_own_subscription(connect):
    a = connect()
    seen = []
    holder = {}

    def once(ev):
        seen.append(ev)
        holder["sub"].close()

    holder["sub"] = a.on_event(once)
    a.lock("self-close-1", timeout=1.0).release()
    wait_until(lambda: seen, 5.0, "an event")
    a.lock("self-close-2", timeout=1.0).release()
    time.sleep(0.3)
    assert len(seen) == 1


def test_events_have_the_fields_of_their_kind(connect):
    a, admin = connect(), connect()
    seen = []
    a.on_event(seen.append)
    lock = a.lock("fields", timeout=1.0)
    admin.revoke("fields")
    wait_until(lambda: any(e.kind == "lock_lost" for e in seen), 5.0, "lock_lost")
    acquired = [e for e in seen if e.kind == "lock_acquired"][0]
    lost_ev = [e for e in seen if e.kind == "lock_lost"][0]
    assert acquired.name == "fields" and acquired.fencing_token == lock.fencing_token
    assert lost_ev.reason == "released" and lost_ev.fencing_token == lock.fencing_token
    assert lost_ev.master is None and lost_ev.election is None and lost_ev.peer is None
    assert "lock_lost" in repr(lost_ev) and "released" in repr(lost_ev)


def test_on_event_given_to_the_constructor_sees_the_first_connected(connect, server):
    kinds = []
    c = connect(on_event=lambda ev: kinds.append(ev.kind))
    wait_until(lambda: kinds, 5.0, "the first event")
    assert kinds[0] == "connected"
    c.lock("early", timeout=1.0).release()
    wait_until(lambda: "lock_acquired" in kinds, 5.0, "later events too")
    c.close()
    n = len(kinds)
    time.sleep(0.05)
    assert len(kinds) == n, "no event after close"


def test_on_event_given_to_connect_async_sees_the_first_connected(server):
    import asyncio

    import tenure

    kinds = []

    async def main():
        c = await tenure.Client.connect_async(
            [server.address], 2.0, on_event=lambda ev: kinds.append(ev.kind)
        )
        try:
            await asyncio.sleep(0)
            wait_until(lambda: kinds, 5.0, "the first event")
        finally:
            c.close()

    asyncio.run(main())
    assert kinds[0] == "connected"


def test_on_event_must_be_callable(connect):
    import pytest

    with pytest.raises(TypeError):
        connect(on_event=42)


def _threads() -> int:
    import os

    return len(os.listdir("/proc/self/task"))


def test_subscriptions_take_no_thread_each(connect):
    """Ten client subscriptions and ten lost callbacks add no thread: the core hands each
    event straight to the client's one dispatcher. Every callback still gets its events."""
    a, admin = connect(), connect()
    a.on_event(lambda ev: None)  # the client's dispatcher is running from here on
    before = _threads()
    seen = []
    lost = []
    subs = [a.on_event(seen.append) for _ in range(10)]
    locks = [a.lock(f"sub/{i}", timeout=1.0, on_lost=lost.append) for i in range(10)]
    assert _threads() == before, (before, _threads())
    for i in range(10):
        admin.revoke(f"sub/{i}")
    wait_until(lambda: len(lost) == 10, 5.0, "ten lost callbacks")
    wait_until(
        lambda: sum(ev.kind == "lock_lost" for ev in seen) == 100,
        5.0,
        "every subscription told of every loss",
    )
    assert all(ev.reason == "released" for ev in lost)
    assert _threads() == before, (before, _threads())
    for s in subs:
        s.close()
    assert not any(l.held for l in locks)
