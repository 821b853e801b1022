#!/usr/bin/env bash
# Builds libtenure and runs the C tests of the C API:
#   1. installs the library with install-c.sh under the prefix target/c (libtenure.so with
#      its soname and links, libtenure.a, include/tenure.h, lib/pkgconfig/tenure.pc), and
#      builds everything below with `pkg-config --cflags --libs tenure` against it;
#   2. compiles include/tenure.h alone as C99, C11, C++11 and C++17 with warnings as errors;
#   3. builds tests/c/test_api.c as C99 against the shared and the static library, as C++
#      against both, and as C99 under AddressSanitizer + UndefinedBehaviorSanitizer (leak
#      detection on), and runs each;
#   4. builds and runs the example program tests/c/example.c (quoted in the README), and
#      builds tests/c/bench.c.
# Prints one line per test and closes with "c: N passed, N failed"; exits non-zero on any
# failure. Usage: tests/c/run.sh [test-name-filter]. TENURE_C_PROFILE=debug uses a debug
# build of the library.
set -uo pipefail
cd "$(dirname "$0")/../.."

filter="${1:-}"
profile="${TENURE_C_PROFILE:-release}"
cc="${CC:-gcc}"
cxx="${CXX:-g++}"
out=target/c
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
  echo "c: ${passed} passed, ${failed} failed"
  [ "$failed" -eq 0 ]
  exit $?
}

if ! command -v "$cc" >/dev/null 2>&1 || ! command -v "$cxx" >/dev/null 2>&1; then
  echo "a C and a C++ compiler ($cc, $cxx) are required for the C tests" >&2
  fail "toolchain"
  finish
fi

# 1. The library, under its installed names.
# And the command line, whose `tenure serve` the replicated-group test starts (TENURE_BIN).
if [ "$profile" = release ]; then
  cargo build -p tenure --release || { fail "cargo build -p tenure"; finish; }
else
  cargo build -p tenure || { fail "cargo build -p tenure"; finish; }
fi
export TENURE_BIN="$PWD/target/$profile/tenure"
rm -rf "$out/lib" "$out/include"
mkdir -p "$out/bin"
if PREFIX="$PWD/$out" TENURE_C_PROFILE="$profile" TENURE_C_STRIP=0 bash install-c.sh > "$out/install.log" 2>&1; then
  pass "install-c.sh into $out"
else
  cat "$out/install.log"
  fail "install-c.sh into $out"
  finish
fi
export PKG_CONFIG_PATH="$PWD/$out/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
if ! command -v pkg-config >/dev/null 2>&1; then
  echo "pkg-config is required for the C tests (Debian: apt-get install pkgconf)" >&2
  fail "pkg-config"
  finish
fi
# The installed files, as a user of the prefix sees them.
soname=$(readelf -d "$out/lib/libtenure.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ -n "$soname" ] && [ -L "$out/lib/$soname" ] && [ -f "$out/include/tenure.h" ] \
  && [ -f "$out/lib/libtenure.a" ] && pkg-config --exists tenure; then
  pass "installed: $soname, libtenure.a, tenure.h, tenure.pc ($(pkg-config --modversion tenure))"
else
  fail "installed files (soname '$soname')"
fi

warn="-Wall -Wextra -Wpedantic -Werror"
pc_cflags=$(pkg-config --cflags tenure)
cflags="-std=c99 $warn -g -O1 $pc_cflags -Itests/c"
cxxflags="-std=c++11 $warn -g -O1 $pc_cflags -Itests/c"
shared_link="$(pkg-config --libs tenure) -Wl,-rpath,$PWD/$out/lib -lpthread"
# The static library, with what it needs besides it (tenure.pc's Libs.private).
static_link="$(pkg-config --static --libs tenure | sed 's/-ltenure/-Wl,-Bstatic -ltenure -Wl,-Bdynamic/')"

# 2. The header alone, in every language mode, included twice.
printf '#include "tenure.h"\n#include "tenure.h"\nint main(void) { return tenure_version_number() == TENURE_VERSION ? 0 : 1; }\n' \
  > "$out/header_only.c"
for mode in "$cc -std=c99" "$cc -std=c11" "$cxx -x c++ -std=c++11" "$cxx -x c++ -std=c++17"; do
  if $mode $warn $pc_cflags -c "$out/header_only.c" -o "$out/header_only.o" 2> "$out/header.log"; then
    pass "header compiles: $mode"
  else
    head -c 20000 "$out/header.log"
    fail "header compiles: $mode"
  fi
done

# 3. The test program in each variant. Its last line reads "<variant>: N passed, N failed".
run_variant() {
  local name="$1" build="$2"
  shift 2
  if ! eval "$build" > "$out/$name.build.log" 2>&1; then
    head -c 20000 "$out/$name.build.log"
    fail "$name: build"
    return
  fi
  local log="$out/$name.log"
  timeout 300 "$@" "$out/bin/$name" "$filter" "$name" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local summary p f
  summary=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed$" "$log" | tail -1)
  if [ -z "$summary" ]; then
    fail "$name: the test program ended without its summary (exit $rc)"
    return
  fi
  p=$(echo "$summary" | awk '{print $2}')
  f=$(echo "$summary" | awk '{print $4}')
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    fail "$name: exit status $rc (sanitizer report or crash)"
  fi
}

src="tests/c/test_api.c"
run_variant c99-shared "$cc $cflags $src -o $out/bin/c99-shared $shared_link" env
run_variant c99-static "$cc $cflags $src -o $out/bin/c99-static $static_link" env
run_variant cxx-shared "$cxx -x c++ $cxxflags $src -x none -o $out/bin/cxx-shared $shared_link" env
run_variant cxx-static "$cxx -x c++ $cxxflags $src -x none -o $out/bin/cxx-static $static_link" env
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
run_variant c99-asan-ubsan "$cc $cflags $san $src -o $out/bin/c99-asan-ubsan $shared_link" \
  env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
  LSAN_OPTIONS="suppressions=$PWD/tests/c/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# 4. The example, and the benchmark (built here, run by hand: see its header).
if $cc $cflags tests/c/example.c -o "$out/bin/example" $shared_link > "$out/example.build.log" 2>&1 \
  && $cxx -x c++ $cxxflags -c tests/c/example.c -o "$out/example.o" >> "$out/example.build.log" 2>&1; then
  if timeout 60 "$out/bin/example" > "$out/example.log" 2>&1; then
    sed 's/^/     | /' "$out/example.log"
    pass "example runs"
  else
    sed 's/^/     | /' "$out/example.log"
    fail "example runs"
  fi
else
  head -c 20000 "$out/example.build.log"
  fail "example builds"
fi
if $cc $cflags -O2 tests/c/bench.c -o "$out/bin/bench" $shared_link > "$out/bench.build.log" 2>&1; then
  pass "bench builds"
else
  head -c 20000 "$out/bench.build.log"
  fail "bench builds"
fi

finish
