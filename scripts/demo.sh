#!/usr/bin/env bash
# Builds httpsrvd and the example modules, then runs the demo server.
#
#   scripts/demo.sh                          # http://127.0.0.1:8080/
#   scripts/demo.sh --listen 127.0.0.1:0     # any free port (printed at start)
#   scripts/demo.sh --set access_log=-       # extra arguments go to httpsrvd
#
# Without a --listen argument it listens on 127.0.0.1:8080. It needs cargo,
# a C compiler and a C++ compiler (CC, CXX; default gcc and g++); make is not
# needed: the modules are compiled here with the same flags as
# c_examples/Makefile. Stop it with Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A fresh machine may lack g++ (for the C++ example): the project installs it.
command -v "${CXX:-g++}" >/dev/null || "$root/scripts/setup.sh" build
cargo build --release

CC="${CC:-gcc}"
CXX="${CXX:-g++}"
include="$root/include"
src="$root/c_examples"
build="$src/build"
cflags=(-std=c11 -Wall -Wextra -Werror -fPIC -shared -O2 -g "-I$include")
cxxflags=(-std=c++17 -Wall -Wextra -Werror -fPIC -shared -O2 -g "-I$include")

# The order of the modules is the order they are loaded in.
c_modules=(index hello streaming sse echo longpoll cache)
cxx_modules=(hello_cpp)

mkdir -p "$build"
module_args=()
for m in "${c_modules[@]}"; do
    echo "building c_examples/build/$m.so" >&2
    "$CC" "${cflags[@]}" -pthread -o "$build/$m.so" "$src/$m.c"
    module_args+=(--module "$build/$m.so")
done
for m in "${cxx_modules[@]}"; do
    echo "building c_examples/build/$m.so" >&2
    "$CXX" "${cxxflags[@]}" -o "$build/$m.so" "$src/$m.cpp"
    module_args+=(--module "$build/$m.so")
done

# Listen on 127.0.0.1:8080 unless the caller chose an address.
listen_args=(--listen 127.0.0.1:8080)
for arg in "$@"; do
    case "$arg" in
        --listen | --listen=*) listen_args=() ;;
    esac
done

# ${a[@]+"${a[@]}"}: an empty array is fine under set -u on old bash too.
exec "$root/target/release/httpsrvd" ${listen_args[@]+"${listen_args[@]}"} "${module_args[@]}" "$@"
