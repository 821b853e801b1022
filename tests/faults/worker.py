"""A lock client of tenure-faults in Python (the same histories as the Rust worker: see
src/worker.rs). Started by the run as `python worker.py --endpoints ... --resource ...
--id K --ttl-ms T --seed S --names N --log FILE`."""

import os
import random
import socket
import sys
import time

import tenure


def main(argv):
    a = dict(zip(argv[0::2], argv[1::2]))
    endpoints = a["--endpoints"].split(",")
    host, port = a["--resource"].rsplit(":", 1)
    cid = int(a.get("--id", "0"))
    ttl = int(a.get("--ttl-ms", "1000")) / 1000.0
    names = max(1, int(a.get("--names", "2")))
    rng = random.Random(int(a.get("--seed", "0")) ^ os.getpid())
    fd = os.open(a["--log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.getpid()

    def line(what):
        os.write(fd, f"{time.monotonic_ns()} {pid} {what}\n".encode())

    res = {"sock": None, "file": None}

    def write(name, token):
        try:
            if res["sock"] is None:
                s = socket.create_connection((host, int(port)), timeout=5)
                res["sock"], res["file"] = s, s.makefile("r")
            res["sock"].sendall(f"W {cid} {name} {token}\n".encode())
            answer = res["file"].readline().strip()
            if not answer:
                raise OSError("closed")
            return "ok" if answer == "OK" else "stale"
        except OSError:
            res["sock"] = None
            return "unreachable"

    def on_event(ev):
        if ev.kind == "lock_lost":
            line(f"L {ev.name} {ev.fencing_token} {ev.reason}")
        elif ev.kind == "data_lost":
            line("D")

    line("S")
    while True:
        try:
            client = tenure.Client(endpoints, session_ttl=ttl, on_event=on_event)
            break
        except tenure.TenureError:
            time.sleep(0.1)
    pause = ttl / 5
    while True:
        name = f"f{rng.randrange(names)}"
        try:
            lock = client.lock(name, timeout=2.0)
        except tenure.TenureError:
            time.sleep(rng.uniform(0.001, 0.03))
            continue
        token = lock.fencing_token
        line(f"G {name} {token}")
        writes = rng.randrange(5, 16) if rng.randrange(4) == 0 else rng.randrange(1, 6)
        for _ in range(writes):
            if not lock.held:
                break
            line(f"W {name} {token} {write(name, token)}")
            time.sleep(rng.uniform(0, pause))
        line(f"E {name} {token}")
        try:
            lock.release()
        except tenure.TenureError:
            pass
        time.sleep(rng.uniform(0, 0.01))


if __name__ == "__main__":
    main(sys.argv[1:])
