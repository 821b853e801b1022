#!/usr/bin/env bash
# Runs tenure's benchmarks (tests/bench) and writes BENCHMARKS.md at the repository root.
#
#   bash tests/bench/run.sh            # the full run (a few minutes)
#   bash tests/bench/run.sh --quick    # short phases, to try it out (writes BENCHMARKS.md too,
#                                      # marked as a quick run; add --out FILE to keep it apart)
#   bash tests/bench/run.sh --smoke    # tiny counts: checks that every phase works (what CI
#                                      # runs); writes target/bench-smoke/, not BENCHMARKS.md
#   bash tests/bench/run.sh --group    # the replicated group: three members of tenure, etcd
#                                      # (defaults, and with tenure's 200 ms election) and
#                                      # ZooKeeper + kazoo; replaces the group section of
#                                      # BENCHMARKS.md (--smoke: tiny counts, no ZooKeeper)
#   bash tests/bench/run.sh --retry    # retry policies through outages (seed 000's claim): the
#                                      # simulation (cargo test, 10,000 sessions per policy)
#                                      # and real processes through a fault proxy; replaces
#                                      # the retry section of BENCHMARKS.md (--smoke: tiny)
#   bash tests/bench/run.sh --etcd-backend  # tenure's client on etcd beside etcd-client's
#                                      # lock RPC and `etcdctl lock`; replaces its section of
#                                      # BENCHMARKS.md (--smoke: tiny counts)
#   bash tests/bench/run.sh --compare DIR  # this build against another build's `tenure` and
#                                      # `tenure-bench` in DIR, alternately; writes
#                                      # target/release/bench-compare.md, not BENCHMARKS.md
#
# BENCHMARKS.md is rewritten up to its `---` line; the hand-maintained part after it is kept.
# Plots (SVG) go to tests/bench/plots/.
#
# Installs what the run needs when it is missing: etcd (Debian's etcd-server, the system
# compared with) and protoc (protobuf-compiler, needed to build the etcd client).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    else
        echo "run.sh: missing ${need[*]}; install them (Debian: apt-get install ${need[*]})" >&2
    fi
fi
export PROTOC="${PROTOC:-$(command -v protoc || echo /usr/bin/protoc)}"
# The group benchmark compares with a ZooKeeper ensemble too (not in its smoke run).
case " $* " in
    *" --group "*) case " $* " in *" --smoke "*) ;; *) bash tests/bench/zk-setup.sh ;; esac ;;
esac

# The `tenure` command (its `serve` is the server measured), the benchmark program, and the
# failure-detector benchmark whose output the trade-off plot is drawn from.
cargo build --release -p tenure -p tenure-bench
cargo build --release -p tenure --features etcd --example detector_bench
bin="${CARGO_TARGET_DIR:-target}/release"
case " $* " in
    *" --retry "*)
        # The plan (policies, tuned parameters, outages), the simulation of it (the real
        # session and node, in the library's tests), then the real run and the report.
        out="${CARGO_TARGET_DIR:-target}/retry-bench"
        mkdir -p "$out"
        out=$(cd "$out" && pwd)
        "$bin/tenure-bench" "$@" --plan-out "$out/plan.json"
        TENURE_RETRY_PLAN="$out/plan.json" TENURE_RETRY_OUT="$out/sim.json" \
            cargo test --release -p tenure --features etcd --lib sim::retry::bench -- --ignored --exact --nocapture
        exec "$bin/tenure-bench" "$@" --plan "$out/plan.json" --sim "$out/sim.json"
        ;;
esac
exec "$bin/tenure-bench" "$@"
