#!/usr/bin/env python3
"""ZooKeeper side of tenure's benchmarks: lock+release through kazoo's `Lock` recipe.

Run by `tenure-bench` (tests/bench/src/zk.rs) with the Python of `target/py-venv`, where
tests/bench/zk-setup.sh installs kazoo. The first argument picks the mode, the others are
`--key value` pairs. Every time printed is `time.monotonic_ns()` (CLOCK_MONOTONIC, the clock
the Rust side reads), every line is flushed at once, and every wait is bounded.

  lat  --hosts H --warmup W --iters I --secs S
      One client, lock `/bench/lat/<pid>`: W untimed acquire+release rounds, then up to I
      timed rounds or S seconds. Prints `samples v1 v2 ...` (ns per acquire+release).
  tput --hosts H --clients K --warm-ns W --run-ns R [--name N]
      K clients (one KazooClient and one thread each) connect, then `ready` is printed and
      one stdin line `start T` is read. Each client loops acquire+release on
      `/bench/tp/<pid>/<j>` (or all on `/bench/<N>`) from T to T+W+R and keeps the cycles
      that began at or after T+W and ended by T+W+R. Prints `count <n>`, then `samples ...`.
  loop --hosts H --name N --session-ms T
      One client with a session of T ms loops acquire+release on `/bench/<N>` until `stop`
      arrives on stdin. Prints `ready` after a first cycle, `c START END` after each cycle
      (when its acquire began, when its release ended), `err <Exception>` when a call fails
      (the failure that kazoo's RetryFailedError wraps, e.g. ConnectionLoss; then it retries
      after 5 ms and never gives up), `suspended T` / `lost T` / `connected T`
      on kazoo's state changes, and `done` on `stop`.

One acquire+release of kazoo's `Lock` is three requests: create an ephemeral sequential
node (a write), list the lock's children (a read), delete the node (a write). The lock's
parent is created once per `Lock` object (`ensure_path`), during the first, untimed, cycle.

Retry configuration (kazoo's defaults are used everywhere else):
  * connection_retry = {max_tries: -1, delay: 0.01, backoff: 1, max_delay: 0.05}. kazoo's
    default waits 0.1 s after a pass over every host fails and doubles that each time
    (0.1, 0.2, 0.4, 0.8 s..., up to an hour): while the ensemble elects a new leader every
    member refuses clients, so a default client comes back up to its current delay after
    the ensemble did. An operator who cares about fail-over sets a short, flat reconnect
    delay (retrying forever); that is what is used.
  * command_retry = {max_tries: 1}: `KazooClient.retry`, which `Lock.release` goes through,
    makes one attempt and raises, so `loop` sees and reports failures and retries them
    itself every 5 ms. (kazoo counts attempts before comparing: max_tries=0 would mean
    "retry forever", -1 too; 1 is "no retry".)
  * `Lock.acquire` has its own internal retry (kazoo's default KazooRetry: 0.1 s doubling,
    bounded here by the acquire's 30 s timeout), not configurable through the client; it
    is left as is. Requests made while the connection is down wait in kazoo's queue and
    are sent once it reconnects, so that retry rarely sleeps more than once.
"""

import logging
import os
import sys
import threading
import time

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException, LockTimeout
from kazoo.retry import RetryFailedError

CONNECTION_RETRY = {"max_tries": -1, "delay": 0.01, "backoff": 1, "max_delay": 0.05}
COMMAND_RETRY = {"max_tries": 1}
CONNECT_TIMEOUT_S = 15
ACQUIRE_TIMEOUT_S = 30

_print_lock = threading.Lock()


def say(line):
    with _print_lock:
        print(line, flush=True)


def fail(reason):
    say(f"failed {reason}")
    sys.stdout.flush()
    os._exit(1)


def parse_args(argv):
    out = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            fail(f"unexpected argument {a!r}")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[a[2:]] = argv[i + 1]
            i += 2
        else:
            out[a[2:]] = "true"
            i += 1
    return out


def need(args, key):
    if key not in args:
        fail(f"missing --{key}")
    return args[key]


def connect(hosts, session_s=10.0):
    c = KazooClient(
        hosts=hosts,
        timeout=session_s,
        connection_retry=dict(CONNECTION_RETRY),
        command_retry=dict(COMMAND_RETRY),
    )
    try:
        c.start(timeout=CONNECT_TIMEOUT_S)
    except Exception as e:  # kazoo's timeout_exception or a socket error
        fail(f"connect {hosts}: {type(e).__name__}: {e}")
    return c


def cycle(lock):
    """One acquire+release; returns (t0, t1) in monotonic ns."""
    t0 = time.monotonic_ns()
    if not lock.acquire(timeout=ACQUIRE_TIMEOUT_S):
        raise LockTimeout(f"not acquired within {ACQUIRE_TIMEOUT_S} s")
    lock.release()
    return t0, time.monotonic_ns()


def err_name(e):
    """The exception's name; for kazoo's RetryFailedError, that of the failure it wraps."""
    if isinstance(e, RetryFailedError) and e.__context__ is not None:
        e = e.__context__
    return type(e).__name__


def print_samples(tag, samples):
    say(tag + "".join(f" {v}" for v in samples))


def mode_lat(args):
    hosts = need(args, "hosts")
    warm, iters = int(need(args, "warmup")), int(need(args, "iters"))
    secs = float(need(args, "secs"))
    c = connect(hosts)
    lock = c.Lock(f"/bench/lat/{os.getpid()}", f"lat-{os.getpid()}")
    try:
        for _ in range(warm):
            cycle(lock)
        out = []
        end = time.monotonic_ns() + int(secs * 1e9)
        while len(out) < iters:
            t0, t1 = cycle(lock)
            out.append(t1 - t0)
            if t1 >= end:
                break
    except KazooException as e:
        fail(f"lock: {type(e).__name__}: {e}")
    print_samples("samples", out)
    c.stop()
    c.close()


def read_start():
    say("ready")
    line = sys.stdin.readline()
    parts = line.split()
    if len(parts) != 2 or parts[0] != "start" or not parts[1].isdigit():
        fail(f"expected 'start NS', got {line!r}")
    return int(parts[1])


def sleep_until(t):
    left = t - time.monotonic_ns()
    if left > 0:
        time.sleep(left / 1e9)


def mode_tput(args):
    hosts = need(args, "hosts")
    k = int(need(args, "clients"))
    warm, run = int(need(args, "warm-ns")), int(need(args, "run-ns"))
    shared = args.get("name")
    pid = os.getpid()
    clients = [connect(hosts) for _ in range(k)]
    locks = []
    for j, c in enumerate(clients):
        path = f"/bench/{shared}" if shared else f"/bench/tp/{pid}/{j}"
        locks.append(c.Lock(path, f"tp-{pid}-{j}"))
    # The lock's parent exists before the clock starts (kazoo creates it on a Lock's first
    # acquire): one untimed cycle per client.
    try:
        for lock in locks:
            cycle(lock)
    except KazooException as e:
        fail(f"lock: {type(e).__name__}: {e}")
    start = read_start()
    frm, to = start + warm, start + warm + run
    results = [[] for _ in range(k)]
    errors = []

    def run_client(j):
        lock, lat = locks[j], results[j]
        sleep_until(start)
        try:
            while True:
                if time.monotonic_ns() >= to:
                    break
                t0, t1 = cycle(lock)
                if t0 >= frm and t1 <= to:
                    lat.append(t1 - t0)
        except KazooException as e:
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run_client, args=(j,), daemon=True) for j in range(k)]
    for t in threads:
        t.start()
    limit = time.monotonic() + (to - time.monotonic_ns()) / 1e9 + ACQUIRE_TIMEOUT_S + 5
    for t in threads:
        t.join(max(0.0, limit - time.monotonic()))
    if any(t.is_alive() for t in threads):
        fail("a client did not finish in time")
    if errors:
        fail(f"lock: {errors[0]}")
    all_lat = [v for lat in results for v in lat]
    say(f"count {len(all_lat)}")
    print_samples("samples", all_lat)
    for c in clients:
        c.stop()
        c.close()


def mode_loop(args):
    hosts, name = need(args, "hosts"), need(args, "name")
    session_ms = int(need(args, "session-ms"))
    c = connect(hosts, session_ms / 1000.0)
    suspended = [False]
    quiet = threading.Event()  # set before the client is stopped: its LOST is not an event

    def on_state(state):
        now = time.monotonic_ns()
        if quiet.is_set():
            return False
        if state == KazooState.SUSPENDED:
            suspended[0] = True
            say(f"suspended {now}")
        elif state == KazooState.LOST:
            suspended[0] = True
            say(f"lost {now}")
        elif state == KazooState.CONNECTED and suspended[0]:
            suspended[0] = False
            say(f"connected {now}")
        return False  # keep listening

    c.add_listener(on_state)
    lock = c.Lock(f"/bench/{name}", f"loop-{os.getpid()}")
    try:
        cycle(lock)
    except KazooException as e:
        fail(f"lock: {type(e).__name__}: {e}")
    stop = threading.Event()

    def read_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()  # `stop`, or stdin closed

    threading.Thread(target=read_stdin, daemon=True).start()
    say("ready")

    def main_loop():
        # One Lock object throughout: after a failed acquire kazoo finds its own node again
        # by the Lock's uuid prefix, and a failed release is retried on the same object
        # (a fresh Lock would queue behind this session's own leftover node).
        while not stop.is_set():
            t0 = time.monotonic_ns()
            try:
                if not lock.acquire(timeout=ACQUIRE_TIMEOUT_S):
                    raise LockTimeout(f"not acquired within {ACQUIRE_TIMEOUT_S} s")
            except Exception as e:  # never give up: report, retry
                say(f"err {err_name(e)}")
                time.sleep(0.005)
                continue
            while True:
                try:
                    lock.release()
                    break
                except Exception as e:
                    say(f"err {err_name(e)}")
                    if stop.is_set():
                        return
                    time.sleep(0.005)
            say(f"c {t0} {time.monotonic_ns()}")

    worker = threading.Thread(target=main_loop, daemon=True)
    worker.start()
    stop.wait()
    worker.join(5.0)  # a cycle under way ends, or is abandoned (the process exits)
    quiet.set()
    say("done")
    # client.stop() joins kazoo's connection thread; bound it too.
    closer = threading.Thread(target=lambda: (c.stop(), c.close()), daemon=True)
    closer.start()
    closer.join(5.0)
    sys.stdout.flush()
    os._exit(0)


def main():
    # kazoo logs a warning on every dropped connection; the events that matter are printed
    # on stdout (`loop`), so only its errors go to stderr.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if len(sys.argv) < 2:
        fail("usage: zk_worker.py lat|tput|loop --key value ...")
    mode, args = sys.argv[1], parse_args(sys.argv[2:])
    modes = {"lat": mode_lat, "tput": mode_tput, "loop": mode_loop}
    if mode not in modes:
        fail(f"unknown mode {mode!r}")
    modes[mode](args)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
