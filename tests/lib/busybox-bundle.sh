#!/usr/bin/env bash
# Build an OCI bundle offline from Debian's busybox-static:
#   busybox-bundle.sh DIR [CGROUP_PATH] [ARGS...]
# DIR/rootfs gets /bin/busybox and one symlink per applet; DIR/config.json is the
# runtime's default config with an absolute cgroupsPath (default /polis/<basename DIR>)
# and, if given, ARGS as the process arguments.
set -euo pipefail
dir=$1; shift
cgroup=${1:-/polis/$(basename "$dir")}; [ $# -gt 0 ] && shift
polis=${POLIS_BIN:-$(dirname "$0")/../../target/release/polis}

"$(dirname "$0")/busybox-rootfs.sh" "$dir/rootfs"
rm -f "$dir/config.json"
"$polis" runtime spec --bundle "$dir"
python3 - "$dir/config.json" "$cgroup" "$@" <<'PY'
import json, sys
path, cgroup, args = sys.argv[1], sys.argv[2], sys.argv[3:]
c = json.load(open(path))
c["linux"]["cgroupsPath"] = cgroup
c["process"]["terminal"] = False
if args:
    c["process"]["args"] = args
json.dump(c, open(path, "w"), indent=2)
PY
