#!/bin/bash
# Runs end-to-end test binaries inside a throw-away VM booted with pure cgroup v2
# (the development host uses the hybrid v1 layout).
#
#   tests/cgroup-v2.sh [ARGS...]     ARGS go to each test binary (e.g. a name filter)
#
# Environment:
#   CGV2_TESTS           PACKAGE:TEST pairs to run (default: the cgroup tests of the
#                        runtime library and the end-to-end cgroup tests)
#   POLIS_TEST_RUNTIME   passed into the VM (e.g. /usr/sbin/runc); unset = Polis
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$repo"

cargo build -p polis

status=0
for entry in ${CGV2_TESTS:-polis-runtime:cgroups polis:cgroups}; do
  pkg=${entry%%:*} test=${entry#*:}
  bin=$(cargo test -p "$pkg" --test "$test" --no-run --message-format=json \
        | grep '"executable":"' | grep "\"name\":\"$test\"" \
        | sed -e 's/.*"executable":"\([^"]*\)".*/\1/' | tail -n1)
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "cgroup-v2.sh: no test executable for $test" >&2
    exit 1
  fi
  echo "== $pkg $test (pure cgroup v2 VM): $bin"
  run=(env)
  if [ -n "${POLIS_TEST_RUNTIME:-}" ]; then
    run+=("POLIS_TEST_RUNTIME=$POLIS_TEST_RUNTIME")
  fi
  run+=(RUST_BACKTRACE=1 "$bin" --test-threads=2 "$@")
  if ! "$repo/.ci/run-in-cgv2.sh" -d "$repo" -- "${run[@]}"; then
    status=1
  fi
done
exit $status
