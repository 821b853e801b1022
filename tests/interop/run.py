"""The same lock from Python, Node and C through the etcd backend.

Starts a one-member etcd on loopback (Debian's etcd-server, a temporary data directory), then
one process per language, each taking the lock `interop` ROUNDS times through tenure's etcd
backend (`etcd://127.0.0.1:PORT`). While holding it, each creates a marker file with O_EXCL,
which fails if another holder's marker is there (two holders at once), and records its fencing
token and the grant time. The check: every process finished every round, no process saw
another's marker, and the tokens, merged in grant order, only grow.

    python tests/interop/run.py --node-package bindings-node --c-binary target/c/bin/interop-lock

Run by tests/run-all.sh after the three packages are built, with the venv's Python (where the
tenure package is installed). Prints "interop: N passed, N failed"; exits non-zero on failure.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROUNDS = 20
NAME = "interop"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(endpoints, rounds, marker, out):
    """The Python process: the same loop as lock.c and lock.js."""
    import tenure

    client = tenure.Client(endpoints, session_ttl=5.0)
    lines = []
    for _ in range(rounds):
        lock = client.lock(NAME, timeout=30.0)
        now = time.time_ns()
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            print("python: two holders at once", file=sys.stderr)
            sys.exit(2)
        os.close(fd)
        lines.append(f"{lock.fencing_token} {now}")
        time.sleep(0.002)
        os.unlink(marker)
        lock.release()
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    client.close()


def start_etcd(tmp):
    cp, pp = free_port(), free_port()
    proc = subprocess.Popen(
        [
            "etcd", "--name", "interop", "--data-dir", os.path.join(tmp, "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{cp}",
            "--advertise-client-urls", f"http://127.0.0.1:{cp}",
            "--listen-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-cluster", f"interop=http://127.0.0.1:{pp}",
            "--logger", "zap", "--log-level", "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        r = subprocess.run(
            ["etcdctl", "--endpoints", f"http://127.0.0.1:{cp}", "--command-timeout=2s",
             "endpoint", "health"],
            env={**os.environ, "ETCDCTL_API": "3"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if r.returncode == 0:
            return proc, cp
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("interop: etcd did not start within 30 s")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=4, metavar=("ENDPOINTS", "ROUNDS", "MARKER", "OUT"))
    ap.add_argument("--node-package")
    ap.add_argument("--c-binary")
    a = ap.parse_args()
    if a.worker:
        endpoints, rounds, marker, out = a.worker
        worker(endpoints, int(rounds), marker, out)
        return
    tmp = tempfile.mkdtemp(prefix="tenure-interop-")
    etcd, port = start_etcd(tmp)
    passed = failed = 0
    try:
        endpoints = f"etcd://127.0.0.1:{port}"
        marker = os.path.join(tmp, "held")
        here = os.path.dirname(os.path.abspath(__file__))
        outs = {lang: os.path.join(tmp, f"{lang}.txt") for lang in ("python", "node", "c")}
        env = {**os.environ, "TENURE_NODE_PACKAGE": os.path.abspath(a.node_package)}
        procs = {
            "python": [sys.executable, os.path.abspath(__file__), "--worker", endpoints,
                       str(ROUNDS), marker, outs["python"]],
            "node": ["node", os.path.join(here, "lock.js"), endpoints, NAME, str(ROUNDS),
                     marker, outs["node"]],
            "c": [os.path.abspath(a.c_binary), endpoints, NAME, str(ROUNDS), marker,
                  outs["c"]],
        }
        running = {lang: subprocess.Popen(cmd, env=env) for lang, cmd in procs.items()}
        records = []
        for lang, p in running.items():
            try:
                rc = p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "timeout"
            if rc != 0:
                print(f"FAIL {lang}: exit {rc}")
                failed += 1
                continue
            with open(outs[lang]) as f:
                got = [tuple(map(int, line.split())) for line in f if line.strip()]
            if len(got) != ROUNDS:
                print(f"FAIL {lang}: {len(got)} of {ROUNDS} rounds")
                failed += 1
                continue
            print(f"ok   {lang}: {ROUNDS} grants, no other holder's marker seen")
            passed += 1
            records += [(t_ns, token, lang) for token, t_ns in got]
        records.sort()
        tokens = [token for _, token, _ in records]
        if failed == 0 and all(x < y for x, y in zip(tokens, tokens[1:])):
            langs = {lang for _, _, lang in records}
            print(f"ok   tokens grow over {len(tokens)} grants in grant order ({', '.join(sorted(langs))})")
            passed += 1
        else:
            print("FAIL tokens, in grant order, do not only grow (or a process failed)")
            failed += 1
    finally:
        etcd.kill()
        etcd.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"interop: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
