#!/bin/bash
# Full check: formatting, lints, the whole test suite on this host, then the
# cgroup tests again on pure cgroup v2 (in a VM).
#
#   tests/run-all.sh      POLIS_TEST_RUNTIME=/usr/sbin/runc tests/run-all.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$repo"

step() { printf '\n==== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "OCI conformance checks"
cargo build -p polis
"$repo/tests/conformance.sh"

step "Podman with polis-runtime"
"$repo/tests/podman.sh"

step "cgroup v2 (VM)"
"$repo/tests/cgroup-v2.sh"

step "all passed"
