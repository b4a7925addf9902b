#!/usr/bin/env bash
# Build an OCI bundle offline from Debian's busybox-static:
#   busybox-bundle.sh DIR [CGROUP_PATH] [ARGS...]
# DIR/rootfs gets /bin/busybox and one symlink per applet; DIR/config.json is the
# runtime's default config with an absolute cgroupsPath (default /polis/<basename DIR>)
# and, if given, ARGS as the process arguments.
set -euo pipefail
dir=$1; shift
cgroup=${1:-/polis/$(basename "$dir")}; [ $# -gt 0 ] && shift
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-bundle: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
polis=${POLIS_BIN:-$(dirname "$0")/../../target/release/polis}

mkdir -p "$dir/rootfs"/{bin,etc,proc,sys,dev,tmp,root}
cp "$busybox" "$dir/rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$dir/rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$dir/rootfs/etc/group"
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
