"""Failure detector: a stopped peer is suspected as a process, and heard again."""

from __future__ import annotations

import socket
import threading

import pytest

import tenure
from conftest import wait_until


def free_udp_ports(n):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start(names, ports, me, **kw):
    peers = {n: f"127.0.0.1:{p}" for n, p in zip(names, ports) if n != me}
    bind = f"127.0.0.1:{ports[names.index(me)]}"
    return tenure.Detector(me, 0.02, [("lan", bind, peers)], **kw)


def test_a_stopped_peer_is_suspected_and_recovers():
    names = ["a", "b", "c"]
    ports = free_udp_ports(3)
    seen = []
    lock = threading.Lock()
    dets = {n: start(names, ports, n, estimator="fixed", fixed_timeout=0.15) for n in names}
    try:
        da = dets["a"]
        sub = da.on_event(lambda ev: (lock.acquire(), seen.append(ev), lock.release()))
        assert da.local_address("lan") == f"127.0.0.1:{ports[0]}"
        assert da.local_address("nope") is None
        wait_until(lambda: da.counters()["received"] > 10, 5.0, "heartbeats")
        dets["c"].stop()
        wait_until(
            lambda: any(e.kind == "peer_suspected" and e.peer == "c" for e in seen),
            5.0,
            "c suspected",
        )
        with lock:
            ev = [e for e in seen if e.kind == "peer_suspected"][0]
        assert ev.suspicion == "process" and ev.network is None
        st = da.status()
        c = [p for p in st["peers"] if p["name"] == "c"][0]
        assert c["process_suspected"]
        assert not [p for p in st["peers"] if p["name"] == "b"][0]["process_suspected"]
        dets["c"] = start(names, ports, "c", estimator="fixed", fixed_timeout=0.15)
        wait_until(
            lambda: any(e.kind == "peer_recovered" and e.peer == "c" for e in seen),
            5.0,
            "c recovered",
        )
        sub.close()
    finally:
        for d in dets.values():
            d.stop()


def test_detector_bad_input():
    with pytest.raises(TypeError):
        tenure.Detector("a", 0.1, "lan")
    with pytest.raises(TypeError):
        tenure.Detector("a", 0.1, [("lan", "127.0.0.1:0", 5)])
    with pytest.raises(tenure.InvalidArgument):
        tenure.Detector("a", -1.0, [("lan", "127.0.0.1:0", {"b": "127.0.0.1:9"})])
    with pytest.raises(tenure.InvalidArgument):
        tenure.Detector("a", 0.1, [])
    with pytest.raises(tenure.InvalidArgument):
        tenure.Detector("a\n", 0.1, [("lan", "127.0.0.1:0", {"b": "127.0.0.1:9"})])
    with pytest.raises(tenure.InvalidArgument):
        tenure.Detector("a", 0.1, [("lan", "127.0.0.1:0", {"b": "127.0.0.1:9"})],
                        estimator="fixed")
    d = tenure.Detector("a", 0.1, [("lan", "127.0.0.1:0", [("b", "127.0.0.1:9")])])
    d.stop()
    d.stop()
    with pytest.raises(tenure.Closed):
        d.status()
