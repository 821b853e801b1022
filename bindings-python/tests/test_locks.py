"""Locks: contention, fencing tokens, loss by session expiry, revocation, release rules."""

from __future__ import annotations

import gc
import threading
import time
import warnings

import pytest

import tenure
from conftest import wait_until


def test_contention_between_two_clients(connect):
    a, b = connect(), connect()
    la = a.lock("jobs/reindex", timeout=5.0)
    assert la.held and la.name == "jobs/reindex"
    assert isinstance(la.fencing_token, int) and la.fencing_token > 0
    assert b.try_lock("jobs/reindex") is None

    with pytest.raises(tenure.LockTimeout) as info:
        b.lock("jobs/reindex", timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, tenure.TenureError)

    got = {}

    def wait_for_it():
        got["lock"] = b.lock("jobs/reindex", timeout=10.0)
        got["at"] = time.monotonic()

    t = threading.Thread(target=wait_for_it)
    t.start()
    time.sleep(0.2)
    assert t.is_alive(), "b was granted a lock that a holds"
    released_at = time.monotonic()
    la.release()
    t.join(timeout=10)
    assert not t.is_alive()
    lb = got["lock"]
    assert lb.held
    assert lb.fencing_token > la.fencing_token
    assert got["at"] >= released_at
    assert not la.held
    lb.release()


def test_a_holder_whose_session_expires_is_told_before_the_next_grant(connect, proxy):
    # The holder talks to the server through a proxy that we freeze: its heartbeats stop.
    holder = connect([proxy.address], session_ttl=1.0)
    other = connect(session_ttl=1.0)
    lost = []
    la = holder.lock(
        "jobs/expiring",
        timeout=5.0,
        on_lost=lambda ev: lost.append((time.monotonic(), ev)),
    )
    granted = {}

    def waiter():
        granted["lock"] = other.lock("jobs/expiring", timeout=15.0)
        granted["at"] = time.monotonic()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    proxy.freeze()
    t.join(timeout=15)
    assert not t.is_alive(), "the waiter was never granted the lock"
    wait_until(lambda: lost, 2.0, "on_lost")
    lost_at, ev = lost[0]
    assert ev.kind == "lock_lost"
    assert ev.reason == "session_expired"
    assert ev.name == "jobs/expiring" and ev.fencing_token == la.fencing_token
    assert lost_at < granted["at"], "on_lost ran after the next holder was granted the lock"
    assert not la.held
    assert la.lost_reason == "session_expired"
    assert granted["lock"].fencing_token > la.fencing_token
    assert len(lost) == 1
    granted["lock"].release()


def test_context_manager_releases(connect):
    a, b = connect(), connect()
    with a.lock("cm", timeout=2.0) as lock:
        assert lock.held
        assert b.try_lock("cm") is None
    assert not lock.held
    again = b.try_lock("cm")
    assert again is not None and again.fencing_token > lock.fencing_token
    again.release()
    again.release()  # releasing twice does nothing


def test_a_second_acquire_by_the_same_client_is_lock_held(connect):
    a = connect()
    lock = a.lock("mine", timeout=1.0)
    with pytest.raises(tenure.LockHeld):
        a.lock("mine", timeout=1.0)
    with pytest.raises(tenure.LockHeld):
        a.try_lock("mine")
    lock.release()


def test_revoke_loses_the_lock_with_reason_released(connect):
    a, admin = connect(), connect()
    lost = []
    lock = a.lock("revocable", timeout=2.0, on_lost=lost.append)
    admin.revoke("revocable")
    wait_until(lambda: lost, 5.0, "on_lost after revoke")
    assert lost[0].reason == "released"
    assert not lock.held
    with pytest.raises(tenure.NotHeld):
        lock.release()
    # Leaving a with-block of a lost lock is not an error.
    with a.lock("revocable", timeout=2.0) as again:
        admin.revoke("revocable")
        wait_until(lambda: not again.held, 5.0, "revoked")


def test_closing_the_client_loses_its_locks_with_reason_client_closed(connect):
    a = connect()
    lost = []
    lock = a.lock("closing", timeout=2.0, on_lost=lost.append)
    other_cb = []
    lock.on_lost(other_cb.append)
    a.close()
    wait_until(lambda: lost and other_cb, 5.0, "on_lost after close")
    assert lost[0].reason == "client_closed"
    assert not lock.held
    assert lock.lost_reason == "client_closed"
    # A lock lost already still calls a late on_lost at once.
    late = []
    lock.on_lost(late.append)
    wait_until(lambda: late, 5.0, "late on_lost")


def test_a_collected_lock_stays_held_until_released_through_the_client(connect):
    """Garbage collection never releases a lock (kazoo, redis-py and threading users expect
    a lock to be held until they release it): a Lock object collected while held warns, and
    the client still lists and releases the lock."""
    a, b = connect(), connect()
    with pytest.warns(ResourceWarning, match="garbage-collected while held"):
        a.lock("dropped", timeout=1.0)  # the statement keeps no reference
        gc.collect()
    assert b.try_lock("dropped") is None, "still held by a"
    assert a.held_locks() == ["dropped"]
    a.release("dropped")
    assert a.held_locks() == []
    b.lock("dropped", timeout=5.0).release()  # granted: the lock was released
    with pytest.raises(tenure.NotHeld):
        a.release("dropped")
    # A released or lost lock collected says nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        a.lock("quiet", timeout=1.0).release()
        gc.collect()
