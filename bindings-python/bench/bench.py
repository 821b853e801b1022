"""Benchmarks of the Python package against the core it wraps.

Run: python bindings-python/bench/bench.py [--quick]

1. A no-op native call, and one that releases and retakes the GIL.
2. try_lock + release of a free lock from Python, against the same loop in Rust
   (`_tenure._bench_try_lock_release`: the core's calls on one thread, no Python), on the same
   client and embedded server (durability "none", so no fsync in the numbers). Rounds
   alternate and the medians are compared; the difference is what the binding adds.
3. Event delivery latency from the core to a Python callback: a Rust thread sends events
   through a core subscription (the path of every core event), each stamped with
   CLOCK_MONOTONIC; the callback subtracts it from time.monotonic(). Measured with an idle
   main thread, and with the main thread busy in pure Python code (at the default GIL switch
   interval of 5 ms, and at 0.5 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import tenure
from tenure import _tenure


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def bench_noop(n: int) -> None:
    def py_noop() -> None:
        pass

    for label, fn in [
        ("Python function call (reference)", py_noop),
        ("native no-op (_tenure._noop)", _tenure._noop),
        ("native no-op releasing the GIL", _tenure._noop_detached),
    ]:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t) / n)
        print(f"  {label:42s} {ns(best):>10s} per call (best of 5)")


def bench_try_lock(n: int, rounds: int) -> None:
    with tenure.Server(listen="127.0.0.1:0", durability="none") as server:
        with tenure.Client([server.address], session_ttl=10.0) as client:
            name = "bench/lock"
            # Warm up both paths.
            _tenure._bench_try_lock_release(client._n, name, 200)
            for _ in range(200):
                client.try_lock(name).release()
            # Loops: rounds alternate, medians compared.
            py_times, rs_times = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                for _ in range(n):
                    lock = client.try_lock(name)
                    lock.release()
                py_times.append((time.perf_counter() - t) / n)
                rs_times.append(_tenure._bench_try_lock_release(client._n, name, n) / n)
            py, rs = statistics.median(py_times), statistics.median(rs_times)
            print(f"  loops: Rust median {us(rs)}, Python median {us(py)} per try_lock+release;"
                  f" difference {ns(py - rs)}")
            # Pairs: one Python iteration, then one Rust iteration (timed inside Rust), many
            # times; the median of the differences is robust to the load drifting.
            diffs, pys, rss = [], [], []
            perf = time.perf_counter
            for _ in range(n * rounds):
                t = perf()
                lock = client.try_lock(name)
                lock.release()
                d_py = perf() - t
                d_rs = _tenure._bench_try_lock_release(client._n, name, 1)
                pys.append(d_py)
                rss.append(d_rs)
                diffs.append(d_py - d_rs)
            diffs.sort()
            k = len(diffs)
            print(f"  pairs ({k}): Rust median {us(statistics.median(rss))}, Python median "
                  f"{us(statistics.median(pys))}; median of differences {ns(diffs[k // 2])} "
                  f"(quartiles {ns(diffs[k // 4])} .. {ns(diffs[3 * k // 4])})")


def bench_latency(n: int, gap: float, busy: bool) -> None:
    lat = []
    done = threading.Event()

    def callback(ev: tenure.Event) -> None:
        lat.append(time.monotonic() - ev.remaining)
        if len(lat) >= n:
            done.set()

    sub = _tenure._bench_events(callback, n, gap)
    if busy:
        x = 0
        while not done.is_set():
            x += 1  # pure Python work holding the GIL between switch intervals
    if not done.wait(60):
        print(f"  only {len(lat)} of {n} events arrived")
    sub.close()
    lat.sort()
    p50 = lat[len(lat) // 2]
    p99 = lat[int(len(lat) * 0.99)]
    label = "busy main thread" if busy else "idle main thread"
    print(f"  {label:18s} p50 {us(p50):>10s}   p99 {us(p99):>10s}   max {us(lat[-1]):>10s}"
          f"   ({len(lat)} events, {gap * 1e3:.1f} ms apart; switch interval "
          f"{sys.getswitchinterval() * 1e3:.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    a = ap.parse_args()
    q = a.quick
    print(f"tenure {tenure.__version__}, Python {sys.version.split()[0]}")
    print("\nno-op calls")
    bench_noop(200_000 if q else 1_000_000)
    print("\ntry_lock + release of a free lock (embedded server, durability none)")
    bench_try_lock(500 if q else 3_000, 3 if q else 7)
    print("\nevent delivery, core -> Python callback")
    bench_latency(500 if q else 3_000, 0.001, busy=False)
    bench_latency(200 if q else 1_000, 0.001, busy=True)
    # With the main thread busy, a callback waits for the GIL: the interpreter's switch
    # interval bounds that wait.
    default = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        bench_latency(200 if q else 1_000, 0.001, busy=True)
    finally:
        sys.setswitchinterval(default)


if __name__ == "__main__":
    main()
