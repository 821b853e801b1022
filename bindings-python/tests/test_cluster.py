"""A replicated group: three ``tenure serve`` processes (the command line, ``TENURE_BIN``); a
client given all three endpoints keeps its lock when the leader is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

import tenure
from conftest import wait_until

BIN = os.environ.get("TENURE_BIN", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def group(tmp_path):
    if not (BIN and os.access(BIN, os.X_OK)):
        pytest.fail("TENURE_BIN must name the tenure command line (tests/run-all.sh sets it)")
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    cluster = ",".join(f"{i + 1}={a}" for i, a in enumerate(addrs))
    procs = [
        subprocess.Popen(
            [BIN, "serve", "--id", str(i + 1), "--listen", a, "--data", str(tmp_path / f"m{i + 1}"),
             "--cluster", cluster, "--bootstrap"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, a in enumerate(addrs)
    ]
    yield addrs, procs
    for p in procs:
        p.kill()
        p.wait()


def leader_of(addrs) -> int:
    """The id of the group's leader, from ``tenure status --json``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run([BIN, "status", "--json", "--endpoints", ",".join(addrs)],
                           capture_output=True, text=True, timeout=10)
        if r.returncode == 0:
            leader = json.loads(r.stdout)["leader"]
            if leader:
                return leader["id"]
        time.sleep(0.05)
    raise AssertionError("no leader within 10 s")


@pytest.mark.timeout(60)
def test_a_client_given_three_endpoints_survives_a_leader_kill(group):
    addrs, procs = group
    deadline = time.monotonic() + 10
    while True:
        try:
            c = tenure.Client(addrs, session_ttl=3.0)
            break
        except tenure.TenureError:
            assert time.monotonic() < deadline, "the group did not serve within 10 s"
            time.sleep(0.05)
    try:
        events = []
        sub = c.on_event(events.append)
        held = c.lock("py/held", timeout=5.0)
        leader = leader_of(addrs)
        procs[leader - 1].send_signal(signal.SIGKILL)
        procs[leader - 1].wait()
        killed = time.monotonic()
        nxt = None
        while nxt is None:
            assert time.monotonic() - killed < 10, "no lock within 10 s of the kill"
            try:
                nxt = c.try_lock("py/next")
            except tenure.TenureError:
                time.sleep(0.005)
        assert nxt.fencing_token > held.fencing_token
        assert held.held, "the lock is kept"
        wait_until(lambda: any(e.kind == "lock_acquired" for e in events), 5.0, "events")
        kinds = {e.kind for e in events}
        assert not kinds & {"lock_lost", "expired", "data_lost"}, kinds
        nxt.release()
        held.release()
        sub.close()
    finally:
        c.close()
