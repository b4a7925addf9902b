#!/usr/bin/env bash
# Run one container from a busybox image built offline: the README's first command.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export POLIS_BIN=${POLIS_BIN:-$here/../target/release/polis}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/lib/busybox-bundle.sh" "$work/demo" /polis/demo \
  sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"; uname -sr'
"$POLIS_BIN" runtime --root "$work/state" run --bundle "$work/demo" demo
