#!/usr/bin/env bash
# Sets up and runs every test of tenure. This is the README's second command; .ci/run calls it.
#
# Today: Rust (format, lints, unit tests against a manual clock, the deterministic simulation,
# in-process end-to-end tests and multi-process CLI tests). The C, Python and Node suites join
# here as their packages land.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

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

step "cargo test (unit, simulation, end-to-end, multi-process)"
cargo test --no-fail-fast 2>&1 | tee target/test-output.txt
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
# ---- C API (ffi/, include/tenure.h, tests/c) ------------------------------------------
# Builds libtenure, compiles the header and tests/c as C99 and C++, runs them against the
# shared and the static library and under ASan+UBSan, runs the example program. Prints one
# line per test and "c: N passed, N failed"; a failure stops the script (set -e).
step "c: build libtenure, run tests/c (C99, C++, shared, static, ASan+UBSan) and the example"
bash tests/c/run.sh
# ---- end of C API ----------------------------------------------------------------------

echo
echo "rust: ${passed} passed, ${failed} failed"
