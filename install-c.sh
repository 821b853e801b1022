#!/usr/bin/env bash
# Installs tenure's C library under a prefix, as a C user expects to find it:
#
#   $PREFIX/lib/libtenure.so.<version>        the shared library (soname libtenure.so.<abi>)
#   $PREFIX/lib/libtenure.so.<abi>, libtenure.so   links to it
#   $PREFIX/lib/libtenure.a                   the static library
#   $PREFIX/include/tenure.h                  the header
#   $PREFIX/lib/pkgconfig/tenure.pc           for `pkg-config --cflags --libs tenure`
#                                             (`--static` adds what libtenure.a needs)
#
# Usage: PREFIX=/usr/local bash install-c.sh   (the default prefix; LIBDIR overrides
# $PREFIX/lib). Builds the library with cargo first (release; TENURE_C_PROFILE=debug for a
# debug build). Nothing is written under the prefix unless the build succeeded.
#
# Why not cargo-c (`cargo cinstall`), the ecosystem's tool for this: building cargo-c itself
# compiles cargo as a library, which takes longer on this project's 2-core CI machine than
# the rest of the C tests together. This script produces the same files (a versioned soname
# with its links, the static library, the header, a pkg-config file with the static
# library's own dependencies).
set -euo pipefail
cd "$(dirname "$0")"

prefix="${PREFIX:-/usr/local}"
libdir="${LIBDIR:-$prefix/lib}"
includedir="$prefix/include"
profile="${TENURE_C_PROFILE:-release}"

if [ "$profile" = release ]; then
  cargo build -p tenure-ffi --release
else
  cargo build -p tenure-ffi
fi
built="target/$profile"

# The version is the workspace's; the soname is what ffi/build.rs gave the library (the one
# place that rule lives): read back from the library itself.
version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' Cargo.toml | head -n 1)
soname=$(readelf -d "$built/libtenure_ffi.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ -z "$version" ] || [ -z "$soname" ]; then
  echo "install-c.sh: cannot read the version ($version) or the soname ($soname)" >&2
  exit 1
fi
# What a program linking libtenure.a needs besides it (rustc's native-static-libs).
static_libs="-lpthread -ldl -lm -lrt -lutil -lgcc_s"

mkdir -p "$libdir/pkgconfig" "$includedir"
install -m 0755 "$built/libtenure_ffi.so" "$libdir/libtenure.so.$version"
ln -sfn "libtenure.so.$version" "$libdir/$soname"
ln -sfn "$soname" "$libdir/libtenure.so"
install -m 0644 "$built/libtenure_ffi.a" "$libdir/libtenure.a"
install -m 0644 include/tenure.h "$includedir/tenure.h"
# The release profile keeps debug info (for profiles and backtraces); an installed library
# does without it (60 MB -> a few), unless TENURE_C_STRIP=0.
if [ "${TENURE_C_STRIP:-1}" != 0 ] && command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$libdir/libtenure.so.$version" "$libdir/libtenure.a"
fi
cat > "$libdir/pkgconfig/tenure.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: tenure
Description: Coordination library: leases, fenced locks, elections, groups, failure detection
Version: $version
Libs: -L\${libdir} -ltenure
Libs.private: $static_libs
Cflags: -I\${includedir}
EOF
echo "installed tenure $version (soname $soname) under $prefix"
