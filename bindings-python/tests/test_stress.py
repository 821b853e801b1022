"""Many threads using one client at once: no deadlock, no crash, consistent answers."""

from __future__ import annotations

import random
import threading
import time

import pytest

import tenure


@pytest.mark.timeout(120)
def test_many_threads_on_one_client(connect):
    client = connect(session_ttl=5.0)
    other = connect(session_ttl=5.0)
    names = [f"stress/{i}" for i in range(4)]
    errors = []
    tokens = []
    events = []
    tokens_lock = threading.Lock()
    client.on_event(lambda ev: events.append(ev.kind))

    def worker(seed):
        rng = random.Random(seed)
        try:
            for i in range(40):
                op = rng.randrange(6)
                name = rng.choice(names)
                try:
                    if op == 0:
                        lock = client.try_lock(name)
                        if lock is not None:
                            with tokens_lock:
                                tokens.append(lock.fencing_token)
                            assert lock.held
                            lock.release()
                    elif op == 1:
                        with client.lock(name, timeout=0.5, on_lost=lambda ev: None) as lock:
                            with tokens_lock:
                                tokens.append(lock.fencing_token)
                    elif op == 2:
                        e = client.campaign(f"el/{seed % 3}", f"c{seed}-{i}", rng.randrange(10))
                        _ = (e.master, e.is_master, e.epoch)
                        e.resign()
                    elif op == 3:
                        sub = client.on_event(lambda ev: None)
                        sub.close()
                    elif op == 4:
                        _ = (client.state, client.connected, client.session_id, repr(client))
                        # A lock is held until released (collection never releases it).
                        taken = other.try_lock(name)
                        if taken is not None:
                            taken.release()
                    else:
                        client.request_election(f"el/{seed % 3}", timeout=2.0)
                except (tenure.LockHeld, tenure.LockTimeout):
                    pass  # one session: a second acquire of a name it holds, or a wait
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100 - (time.monotonic() - start))
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} threads still running: a deadlock?"
    assert not errors, errors
    assert len(tokens) == len(set(tokens)), "a fencing token was handed out twice"
    assert client.connected
