#!/usr/bin/env bash
# Sets up and runs every test of tenure. This is the README's second command; .ci/run calls it.
#
# Rust (format, lints, the demo five times, unit tests against a manual clock, the
# deterministic simulation, in-process end-to-end tests and multi-process CLI tests), then
# Python, C, Node, the benchmark harness's smoke run and a short run of the fault suite.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# What the build and the tests need besides Rust: protoc (Debian's protobuf-compiler) builds
# the etcd client of the etcd backend (the `etcd` feature, which the C library and the
# packages enable) and of the benchmark; etcd (etcd-server) is what the etcd backend's tests
# and the benchmarks run against; taskset pins processes in the A/B rounds. Installed as root
# with apt-get when missing.
tools_need=()
command -v etcd >/dev/null 2>&1 || tools_need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || tools_need+=(etcd-client)
command -v protoc >/dev/null 2>&1 || tools_need+=(protobuf-compiler)
command -v taskset >/dev/null 2>&1 || tools_need+=(util-linux)
if [ ${#tools_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tools_need[@]}"
  else
    echo "missing ${tools_need[*]} (Debian: apt-get install ${tools_need[*]})" >&2
    exit 1
  fi
fi
export PROTOC="${PROTOC:-$(command -v protoc || echo /usr/bin/protoc)}"

step "cargo fmt --check"
if rustfmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "rustfmt not installed; skipping the format check"
fi

step "cargo clippy (default members, all targets, warnings are errors)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets -- -D warnings
else
  echo "clippy not installed; skipping lints"
fi

step "cargo build --release (the tenure command)"
cargo build --release
# The replicated-group tests of the bindings start this command's `tenure serve`.
export TENURE_BIN="$PWD/target/release/tenure"

# ---- The demo (the README's first command) ------------------------------------------------
# Five runs of `tenure demo`: each must exit 0 (it exits 70 when a holder is told after the
# next grant, or a scenario goes wrong) and leave no data directory behind.
step "demo: tenure demo, 5 runs"
demo_passed=0
demo_failed=0
demo_tmp="$PWD/target/demo-tmp"
rm -rf "$demo_tmp"
mkdir -p "$demo_tmp"
for i in 1 2 3 4 5; do
  if TMPDIR="$demo_tmp" timeout 120 target/release/tenure demo > "target/demo-$i.txt" 2>&1; then
    if [ -z "$(ls -A "$demo_tmp")" ]; then
      demo_passed=$((demo_passed + 1))
    else
      echo "demo run $i left a data directory behind" >&2
      demo_failed=$((demo_failed + 1))
    fi
  else
    echo "demo run $i failed; its output:" >&2
    cat "target/demo-$i.txt" >&2
    demo_failed=$((demo_failed + 1))
  fi
done
grep -h "told .* erin was granted" target/demo-*.txt || true
echo "demo: ${demo_passed} passed, ${demo_failed} failed"
if [ "$demo_failed" -ne 0 ]; then
  exit 1
fi
# ---- end of the demo --------------------------------------------------------------------------

step "cargo test (unit, simulation, end-to-end, multi-process)"
cargo test --no-fail-fast 2>&1 | tee target/test-output.txt
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
# ---- Python package (bindings-python) -------------------------------------------------
# A tools venv under target/ with maturin from PyPI; the abi3 wheel built with `maturin build
# --release` as a release would be; a fresh venv with only that wheel and pytest installed;
# the package's tests run from there (each with a time limit). Prints "python: N passed, N
# failed".
step "python: lint the native crate, build the wheel, install it into a fresh venv, run the tests"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy -p tenure-python --all-targets -- -D warnings
fi
py_venv="$PWD/target/py-venv"
if ! "$py_venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  rm -rf "$py_venv"
  python3 -m venv "$py_venv"
fi
"$py_venv/bin/python" -m pip install --quiet --upgrade pip
"$py_venv/bin/python" -m pip install --quiet "maturin>=1.9.4,<2"
# The build is shared with cargo's target/.
rm -rf target/wheels
(cd bindings-python && "$py_venv/bin/maturin" build --release --quiet --out ../target/wheels)
wheel=$(ls target/wheels/tenure-*-abi3-*.whl)
wheel_venv="$PWD/target/py-wheel-venv"
rm -rf "$wheel_venv"
python3 -m venv "$wheel_venv"
"$wheel_venv/bin/python" -m pip install --quiet "$wheel" pytest pytest-timeout
# What the later steps (interop, faults) run Python with: the installed wheel.
py="$wheel_venv/bin/python"
echo "installed $(basename "$wheel") into $wheel_venv"
py_rc=0
(cd bindings-python && "$py" -m pytest tests -q -rfE -p no:cacheprovider \
  --timeout=60) 2>&1 | tee target/py-test-output.txt || py_rc=${PIPESTATUS[0]}
py_summary=$(grep -E '[0-9]+ (passed|failed|error)' target/py-test-output.txt | tail -n 1 || true)
py_passed=$(echo "$py_summary" | { grep -Eo '[0-9]+ passed' || true; } | awk '{s+=$1} END {print s+0}')
py_failed=$(echo "$py_summary" | { grep -Eo '[0-9]+ (failed|errors?)' || true; } | awk '{s+=$1} END {print s+0}')
echo
echo "python: ${py_passed:-0} passed, ${py_failed:-0} failed"
if [ "$py_rc" -eq 5 ]; then
  echo "python: pytest collected no tests" >&2
  exit 1
elif [ "$py_rc" -ne 0 ] || [ "${py_passed:-0}" -eq 0 ]; then
  echo "python: tests failed (pytest exit code $py_rc)" >&2
  exit 1
fi
# ---- end of Python package ------------------------------------------------------------

# ---- C API (ffi/, include/tenure.h, tests/c) ------------------------------------------
# Builds libtenure, compiles the header and tests/c as C99 and C++, runs them against the
# shared and the static library and under ASan+UBSan, runs the example program. Prints one
# line per test and "c: N passed, N failed"; a failure stops the script (set -e).
step "c: build libtenure, run tests/c (C99, C++, shared, static, ASan+UBSan) and the example"
bash tests/c/run.sh
# ---- end of C API ----------------------------------------------------------------------

# ---- Node.js package (bindings-node) ----------------------------------------------------
# npm ci (TypeScript and @types/node from the npm registry, pinned by package-lock.json),
# npm run build (the native addon with cargo --release into native.node, then tsc into
# dist/), npm test (node:test; every test with a time limit). Needs node and npm. Prints
# "node: N passed, N failed"; a failure stops the script.
step "node: lint the addon crate, npm ci, build bindings-node (addon + TypeScript), run its tests"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are required for the Node package (https://nodejs.org)" >&2
  exit 1
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy -p tenure-node --all-targets -- -D warnings
fi
node_rc=0
(cd bindings-node && npm ci --no-audit --no-fund && npm run build && npm test) 2>&1 \
  | tee target/node-test-output.txt || node_rc=${PIPESTATUS[0]}
# The package as a user installs it: `npm pack`, the tarball installed into an empty project,
# and the README's quick start (examples/quickstart.js: a server, a client, a lock, an
# election) run there, requiring the installed package.
pack_dir="$PWD/target/npm-pack"
rm -rf "$pack_dir"
mkdir -p "$pack_dir/project"
if [ "$node_rc" -eq 0 ]; then
  cp bindings-node/examples/quickstart.js "$pack_dir/project/quickstart.js"
  if (cd bindings-node && npm pack --silent --pack-destination "$pack_dir" \
    && cd "$pack_dir/project" && npm init -y > /dev/null \
    && npm install --no-audit --no-fund "$pack_dir"/tenure-*.tgz \
    && timeout 60 node quickstart.js); then
    echo "node: the packed tarball installs and runs"
  else
    echo "node: the packed tarball failed its quick start" >&2
    node_rc=1
  fi
fi
node_passed=$({ grep -Eo '^ℹ pass [0-9]+' target/node-test-output.txt || true; } | tail -n 1 | awk '{s=$3} END {print s+0}')
node_failed=$({ grep -Eo '^ℹ fail [0-9]+' target/node-test-output.txt || true; } | tail -n 1 | awk '{s=$3} END {print s+0}')
echo
echo "node: ${node_passed:-0} passed, ${node_failed:-0} failed"
if [ "$node_rc" -ne 0 ] || [ "${node_passed:-0}" -eq 0 ]; then
  echo "node: build or tests failed (exit code $node_rc)" >&2
  exit 1
fi
# ---- end of Node.js package -------------------------------------------------------------

# ---- The same lock from Python, Node and C through the etcd backend -----------------------
# tests/interop/run.py starts a one-member etcd, then a Python, a Node and a C process that
# take one lock in turn through `etcd://` endpoints; each checks with an O_EXCL marker file
# that nobody else holds it, and the tokens, merged in grant order, must only grow. Prints
# "interop: N passed, N failed".
step "interop: the same lock from Python, Node and C on etcd"
gcc -std=c99 -Wall -Wextra -Werror -O1 -Iinclude tests/interop/lock.c -Ltarget/c/lib \
  -Wl,-rpath,"$PWD/target/c/lib" -ltenure -lpthread -o target/c/bin/interop-lock
interop_rc=0
timeout 300 "$py" tests/interop/run.py --node-package bindings-node \
  --c-binary target/c/bin/interop-lock 2>&1 | tee target/interop-output.txt || interop_rc=${PIPESTATUS[0]}
if [ "$interop_rc" -ne 0 ] || ! grep -Eq '^interop: [0-9]+ passed, 0 failed$' target/interop-output.txt; then
  echo "interop: failed (exit code $interop_rc)" >&2
  exit 1
fi

# ---- Benchmark harness smoke (tests/bench) -----------------------------------------------
# Lints and builds tenure-bench (etcd and protoc were installed at the top), and runs `tenure-bench --smoke`: every
# phase of the benchmark harness (baselines, latency, hand-over, throughput, sessions,
# expiry, start-up, the A/B rounds idle and pinned with taskset, plots) with tiny iteration
# counts against tenure and etcd on loopback. It checks that the harness works, not any
# speed; it writes target/bench-smoke/, never BENCHMARKS.md. Prints
# "bench-smoke: N passed, N failed" (N = phases checked); a failure stops the script.
step "bench-smoke: build tenure-bench, run every benchmark phase with tiny counts (tenure and etcd)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy -p tenure-bench --all-targets -- -D warnings
fi
cargo build -p tenure-bench
bench_rc=0
timeout 300 target/debug/tenure-bench --smoke --tenure target/release/tenure 2>&1 \
  | tee target/bench-smoke-output.txt || bench_rc=${PIPESTATUS[0]}
bench_line=$(grep -E '^bench-smoke: [0-9]+ passed, [0-9]+ failed$' target/bench-smoke-output.txt | tail -n 1 || true)
echo
echo "${bench_line:-bench-smoke: 0 passed, 1 failed}"
if [ "$bench_rc" -ne 0 ] || [ -z "$bench_line" ]; then
  echo "bench-smoke: the benchmark harness failed (exit code $bench_rc)" >&2
  exit 1
fi
# The replicated group's benchmark (`--group`: three-member tenure and etcd clusters; leader
# kill -9 trials, lock+release, 64 clients, keep-alives) with tiny counts; ZooKeeper is left
# out here (it needs Java). Prints "bench-smoke group: N passed, N failed".
group_rc=0
timeout 300 target/debug/tenure-bench --group --smoke --tenure target/release/tenure 2>&1 \
  | tee target/bench-smoke-group-output.txt || group_rc=${PIPESTATUS[0]}
group_line=$(grep -E '^bench-smoke group: [0-9]+ passed, [0-9]+ failed$' target/bench-smoke-group-output.txt | tail -n 1 || true)
echo
echo "${group_line:-bench-smoke group: 0 passed, 1 failed}"
if [ "$group_rc" -ne 0 ] || [ -z "$group_line" ]; then
  echo "bench-smoke group: the group benchmark failed (exit code $group_rc)" >&2
  exit 1
fi
# The retry benchmark (seed 000's claim, `tests/bench/run.sh --retry`) with tiny counts: the
# plan, its simulation (the library's tests), the same outages on real processes through the
# fault proxy, compared. Prints "bench-smoke retry: N passed, N failed".
retry_dir="$PWD/target/bench-smoke/retry"
mkdir -p "$retry_dir"
retry_rc=0
target/debug/tenure-bench --retry --smoke --plan-out "$retry_dir/plan.json" || retry_rc=$?
TENURE_RETRY_PLAN="$retry_dir/plan.json" TENURE_RETRY_OUT="$retry_dir/sim.json" \
  cargo test -p tenure --features etcd --lib sim::retry::bench -- --ignored --exact || retry_rc=$?
timeout 300 target/debug/tenure-bench --retry --smoke --tenure target/release/tenure \
  --plan "$retry_dir/plan.json" --sim "$retry_dir/sim.json" 2>&1 \
  | tee target/bench-smoke-retry-output.txt || retry_rc=${PIPESTATUS[0]}
retry_line=$(grep -E '^bench-smoke retry: [0-9]+ passed, [0-9]+ failed$' target/bench-smoke-retry-output.txt | tail -n 1 || true)
echo
echo "${retry_line:-bench-smoke retry: 0 passed, 1 failed}"
if [ "$retry_rc" -ne 0 ] || [ -z "$retry_line" ]; then
  echo "bench-smoke retry: the retry benchmark failed (exit code $retry_rc)" >&2
  exit 1
fi
# The etcd backend beside etcd's own lock recipes (`tests/bench/run.sh --etcd-backend`) with
# tiny counts: tenure on etcd, etcd-client's lock RPC and `etcdctl lock`, each measured
# (lock+release, hand-over); checks that each ran and that no waiter was granted before the
# release. Prints "bench-smoke etcd-backend: N passed, N failed".
eb_rc=0
timeout 300 target/debug/tenure-bench --etcd-backend --smoke 2>&1 \
  | tee target/bench-smoke-etcd-backend-output.txt || eb_rc=${PIPESTATUS[0]}
eb_line=$(grep -E '^bench-smoke etcd-backend: [0-9]+ passed, [0-9]+ failed$' target/bench-smoke-etcd-backend-output.txt | tail -n 1 || true)
echo
echo "${eb_line:-bench-smoke etcd-backend: 0 passed, 1 failed}"
if [ "$eb_rc" -ne 0 ] || [ -z "$eb_line" ]; then
  echo "bench-smoke etcd-backend: the etcd backend benchmark failed (exit code $eb_rc)" >&2
  exit 1
fi
# ---- end of benchmark harness smoke -------------------------------------------------------

# ---- Faults on real processes (tests/faults) ---------------------------------------------
# A short run of the fault suite: three `tenure serve` members behind proxies, six lock
# clients in processes of their own (two Rust, two Python from the venv above, two Node from
# the package built above) writing to a fenced resource, two busy processes on the cores,
# members' clocks at rates within 0.5 % of real time, and 60 s of a seeded nemesis (kill -9,
# SIGSTOP, cut-off and wiped members, killed, paused and cut-off clients); then the checker
# reads every history. The seed is printed: rerun
# with `target/debug/tenure-faults --tenure target/release/tenure --seed N ...`.
step "faults: tenure-faults checker tests, then a 60 s run under faults on a loaded machine"
# libfaketime runs each member's clocks at its own rate (within 0.5 % of real time).
if ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime
  else
    echo "faults: libfaketime is missing (Debian: apt-get install faketime)" >&2
    exit 1
  fi
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy -p tenure-faults --all-targets -- -D warnings
fi
cargo test -p tenure-faults
cargo build -p tenure-faults
faults_seed=$(date +%s)
faults_rc=0
timeout 300 target/debug/tenure-faults --tenure target/release/tenure --seconds 60 \
  --clients 6 --busy 2 --skew-ppm 5000 --seed "$faults_seed" --dir target/tenure-faults/ci \
  --python "$py" --node-module "$PWD/bindings-node" || faults_rc=$?
if [ "$faults_rc" -ne 0 ]; then
  echo "faults: 0 passed, 1 failed (seed $faults_seed, exit code $faults_rc)" >&2
  exit 1
fi
echo "faults: 1 passed, 0 failed (seed $faults_seed)"
# ---- end of faults ------------------------------------------------------------------------

echo
echo "rust: ${passed} passed, ${failed} failed"
