"""asyncio: awaitable variants, cancellation that leaves nothing held, callbacks on a loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tenure


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_awaitable_calls_and_cancellation(tmp_path):
    async def main():
        server = await tenure.Server.start_async("127.0.0.1:0", str(tmp_path / "d"))
        a = await tenure.Client.connect_async([server.address], session_ttl=2.0)
        b = await tenure.Client.connect_async(server.address, session_ttl=2.0)
        c = await tenure.Client.connect_async([server.address], session_ttl=2.0)

        async with a.lock_async("x", timeout=5.0) as lock:
            assert isinstance(lock, tenure.Lock) and lock.held
            assert await b.try_lock_async("x") is None
        assert not lock.held

        # A waiting lock_async is cancelled; its late grant is released.
        held = await a.lock_async("y", timeout=5.0)
        task = asyncio.ensure_future(b.lock_async("y"))
        await asyncio.sleep(0.2)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await held.release_async()
        got = None
        for _ in range(250):
            got = await c.try_lock_async("y")
            if got is not None:
                break
            await asyncio.sleep(0.02)
        assert got is not None, "the cancelled wait kept the lock"
        await got.release_async()

        with pytest.raises(tenure.LockTimeout):
            other = await a.lock_async("z", timeout=5.0)
            try:
                await b.lock_async("z", timeout=0.1)
            finally:
                await other.release_async()

        e = await a.campaign_async("svc", "a", 3)
        assert (await c.request_election_async("svc")).id == "a"
        for _ in range(250):
            if e.is_master:
                break
            await asyncio.sleep(0.02)
        assert e.is_master
        obs = await c.observe_async("svc")
        assert obs.master is None or obs.master.id == "a"
        obs.close()
        await e.resign_async()
        assert await c.request_election_async("svc", timeout=2.0) is None

        m = await a.join_async("grp", "m1")
        w = await b.watch_group_async("grp")
        await m.leave_async()
        w.close()
        victim = await a.lock_async("victim")
        await b.revoke_async("victim")
        with pytest.raises(tenure.InvalidArgument):
            await b.revoke_async("nothing-held")
        assert not victim.held

        for x in (a, b, c):
            await x.close_async()
        await server.stop_async()
        assert not server.running

    run(main())


def test_on_loop_delivers_callbacks_on_the_loop(tmp_path):
    async def main():
        loop_thread = threading.get_ident()
        server = await tenure.Server.start_async("127.0.0.1:0", str(tmp_path / "d"))
        async with tenure.Client.connect_async([server.address]) as client:
            plain, coro = [], []
            got_both = asyncio.Event()

            def on_plain(ev):
                plain.append((ev.kind, threading.get_ident()))

            async def on_coro(ev):
                await asyncio.sleep(0)
                coro.append((ev.kind, threading.get_ident()))
                got_both.set()

            client.on_event(tenure.on_loop(on_plain))
            client.on_event(tenure.on_loop(on_coro))
            lock = await client.lock_async("x")
            await asyncio.wait_for(got_both.wait(), 5)
            await lock.release_async()
            assert plain and plain[0] == ("lock_acquired", loop_thread)
            assert coro[0] == ("lock_acquired", loop_thread)
        await server.stop_async()

    run(main())


def test_on_loop_needs_a_loop():
    with pytest.raises(RuntimeError):
        tenure.on_loop(print)  # no running loop, none given
    with pytest.raises(TypeError):
        tenure.on_loop(42, loop=asyncio.new_event_loop())


def _threads() -> int:
    import os

    return len(os.listdir("/proc/self/task"))


def test_waiting_locks_take_no_thread_each(tmp_path):
    """Fifty lock_async calls waiting on held locks add no thread per call: the core keeps
    their timeouts and tells them when they are granted. Each is then granted or times out."""

    async def main():
        server = await tenure.Server.start_async("127.0.0.1:0", str(tmp_path / "d"))
        a = await tenure.Client.connect_async([server.address], session_ttl=2.0)
        b = await tenure.Client.connect_async([server.address], session_ttl=2.0)
        held = [await a.lock_async(f"n{i}") for i in range(50)]
        before = _threads()
        waits = [asyncio.ensure_future(b.lock_async(f"n{i}", timeout=10.0)) for i in range(50)]
        blocker = await a.lock_async("short")
        short = asyncio.ensure_future(b.lock_async("short", timeout=0.2))
        await asyncio.sleep(0.3)
        assert _threads() - before < 5, (before, _threads())
        with pytest.raises(tenure.LockTimeout):
            await short
        for lock in held:
            await lock.release_async()
        granted = await asyncio.gather(*waits)
        assert all(l.held for l in granted)
        for l in granted:
            await l.release_async()
        await blocker.release_async()
        await a.close_async()
        await b.close_async()
        await server.stop_async()

    run(main())


def test_connecting_and_closing_take_no_thread_each(tmp_path):
    """Twenty clients connected and closed at once: each has its session's own two threads
    (its timer, and its connection's reader or dial) and nothing more; a connect or a close
    makes no helper thread of the binding. Closed, their threads are gone."""
    n = 20

    async def settles(want, what):
        # A dial thread hands over to its reader and ends: counts settle within moments.
        loop = asyncio.get_running_loop()
        until = loop.time() + 5.0
        while _threads() != want and loop.time() < until:
            await asyncio.sleep(0.01)
        assert _threads() == want, (what, want, _threads())

    async def main():
        server = await tenure.Server.start_async("127.0.0.1:0", str(tmp_path / "d"))
        first = await tenure.Client.connect_async([server.address], session_ttl=2.0)
        await first.close_async()
        before = _threads()
        ops = [tenure.Client.connect_async([server.address], session_ttl=2.0) for _ in range(n)]
        # Timer and dial of each; a dial handing over to its reader may overlap for a moment.
        assert _threads() - before <= 2 * n + 3, (before, _threads())
        clients = [await op for op in ops]
        await settles(before + 2 * n, "connected")
        closes = [c.close_async() for c in clients]
        assert _threads() <= before + 2 * n, (before, _threads())
        await asyncio.gather(*closes)
        await settles(before, "closed")
        await server.stop_async()

    run(main())
