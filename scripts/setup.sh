#!/usr/bin/env bash
# Installs what the tests need beyond Rust and gcc, when it is missing (Debian packages).
set -euo pipefail

# `scripts/setup.sh build` installs only what building and serving the demo needs.
need=()
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
# The TLS tests and the demo make their certificates at run time with the openssl command.
command -v openssl >/dev/null || need+=(openssl)
if [ "${1:-all}" = build ]; then
  command -v cc >/dev/null || need+=(gcc)
else
  command -v curl >/dev/null || need+=(curl)
  command -v valgrind >/dev/null || need+=(valgrind)
  command -v python3 >/dev/null || need+=(python3)
  command -v pkg-config >/dev/null || need+=(pkg-config)
  # The browser test drives the server-sent-events demo page in headless Chromium.
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ "${1:-all}" = build ] && exit 0

# rustfmt and clippy come with rustup's default profile; add them if this toolchain lacks them.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
