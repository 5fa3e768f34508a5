#!/usr/bin/env bash
# Builds httpsrvd and the example modules, then runs the demo server.
#
#   scripts/demo.sh                          # http://127.0.0.1:8080/ and https://127.0.0.1:8443/
#   scripts/demo.sh --listen 127.0.0.1:0     # any free port (printed at start), no HTTPS
#   scripts/demo.sh --set access_log=-       # extra arguments go to httpsrvd
#
# Without a --listen or --tls argument it listens on 127.0.0.1:8080 and, with
# TLS, on 127.0.0.1:8443: a self-signed ECDSA P-256 certificate for localhost
# and 127.0.0.1 is made at start (openssl) in a temporary directory, removed
# when the server exits; `curl -k https://127.0.0.1:8443/hello`, or trust it
# with `--cacert` (its path is printed). It needs cargo, a C compiler and a
# C++ compiler (CC, CXX; default gcc and g++); make is not needed: the modules
# are compiled here with the same flags as c_examples/Makefile. Stop it with
# Ctrl-C; SIGHUP reloads the certificate and reopens the access log.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# A fresh machine may lack g++ (for the C++ example) or openssl (for the demo's
# certificate): the project installs them.
if ! command -v "${CXX:-g++}" >/dev/null || ! command -v openssl >/dev/null; then
    "$root/scripts/setup.sh" build
fi
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

# Listen on 127.0.0.1:8080 and 127.0.0.1:8443 (TLS) unless the caller chose an address.
listen_args=(--listen 127.0.0.1:8080)
tls=1
for arg in "$@"; do
    case "$arg" in
        --listen | --listen=* | --tls | --tls=*) listen_args=() tls=0 ;;
    esac
done
if [ "$tls" = 1 ]; then
    # A certificate of this run only: never committed, gone when the server exits (a watcher
    # outlives the exec below and removes the directory once the server's process is gone).
    certs=$(mktemp -d "${TMPDIR:-/tmp}/httpsrv-demo-tls.XXXXXX")
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$certs/key.pem" -out "$certs/cert.pem" 2>/dev/null
    server=$$
    ( while kill -0 "$server" 2>/dev/null; do sleep 1; done; rm -rf "$certs" ) \
        </dev/null >/dev/null 2>&1 &
    listen_args+=(--tls "127.0.0.1:8443=$certs/cert.pem:$certs/key.pem")
    echo "demo certificate (self-signed, for this run): $certs/cert.pem" >&2
fi

# ${a[@]+"${a[@]}"}: an empty array is fine under set -u on old bash too.
# cargo's output directory: CARGO_TARGET_DIR (relative to the tree) when set.
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
exec "$target/release/httpsrvd" ${listen_args[@]+"${listen_args[@]}"} "${module_args[@]}" "$@"
