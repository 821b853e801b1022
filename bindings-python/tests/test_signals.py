"""Ctrl-C (SIGINT) interrupts a blocked lock(), and the interrupted wait leaves nothing held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent(
    """
    import sys, tempfile, time
    import tenure

    with tempfile.TemporaryDirectory() as d, tenure.Server("127.0.0.1:0", d) as s:
        a = tenure.Client([s.address], session_ttl=2.0)
        b = tenure.Client([s.address], session_ttl=2.0)
        held = a.lock("x", timeout=5.0)
        print("waiting", flush=True)
        t0 = time.monotonic()
        try:
            b.lock("x")  # no timeout: blocks until Ctrl-C
            print("granted?!", flush=True)
        except KeyboardInterrupt:
            print("interrupted %.3f" % (time.monotonic() - t0), flush=True)
        # The abandoned wait must not keep the lock once it is granted to it.
        held.release()
        c = tenure.Client([s.address], session_ttl=2.0)
        deadline = time.monotonic() + 10
        got = None
        while time.monotonic() < deadline and got is None:
            got = c.try_lock("x")
            time.sleep(0.02)
        print("free-again" if got is not None else "still-held", flush=True)
        for x in (c, b, a):
            x.close()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_blocked_lock():
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        sent = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        line = p.stdout.readline().strip()
        reacted = time.monotonic() - sent
        assert line.startswith("interrupted"), line + p.stderr.read()
        assert reacted < 1.0, f"KeyboardInterrupt came {reacted:.3f} s after SIGINT"
        assert p.stdout.readline().strip() == "free-again"
        assert p.wait(timeout=20) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_connect_that_waits():
    # A listener that accepts but never answers: connecting waits for its reply.
    child = textwrap.dedent(
        """
        import socket, time, tenure
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
        addr = "127.0.0.1:%d" % ls.getsockname()[1]
        print("waiting", flush=True)
        t0 = time.monotonic()
        try:
            tenure.Client([addr], session_ttl=30.0, connect_timeout=30.0)
            print("connected?!", flush=True)
        except KeyboardInterrupt:
            print("interrupted %.3f" % (time.monotonic() - t0), flush=True)
        except tenure.TenureError as e:
            print("error", type(e).__name__, e, flush=True)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        os.kill(p.pid, signal.SIGINT)
        line = p.stdout.readline().strip()
        assert line.startswith("interrupted"), line + p.stderr.read()
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
