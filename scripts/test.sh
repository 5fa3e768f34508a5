#!/usr/bin/env bash
# Runs every test: formatting and lints, the generated-header check, and the Rust unit and
# integration tests, which compile the C harness and examples with -Wall -Wextra -Werror and
# drive them over real sockets on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# The C harness loads target/debug/libhttpsrv.so, which only `cargo build` refreshes.
cargo build --all-targets
cargo test --all-targets
# The build refreshes include/httpsrv.h outside CI: a difference here means it was not committed.
if git rev-parse --git-dir >/dev/null 2>&1; then
  git diff --exit-code -- include/ || { echo "include/httpsrv.h is stale: commit it"; exit 1; }
fi
