#!/usr/bin/env bash
# Installs what the ZooKeeper side of tenure's benchmarks (tests/bench/src/zk.rs) needs when
# it is missing, and nothing else; safe to run again (it then does nothing):
#
#   - Apache ZooKeeper: Debian's `zookeeper` package (its jars in /usr/share/java, and Java),
#     with apt-get when run as root; otherwise it says what to install;
#   - kazoo, the Python ZooKeeper client that tests/bench/zk_worker.py uses, into the
#     repository's venv target/py-venv (created if missing; what is already in it is kept).
#
#   bash tests/bench/zk-setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -e /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper
    else
        echo "zk-setup.sh: ZooKeeper is missing; install it (Debian: apt-get install zookeeper)" >&2
    fi
fi

venv=target/py-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import kazoo' >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install -q kazoo
fi
