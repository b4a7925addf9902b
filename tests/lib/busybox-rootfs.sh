#!/usr/bin/env bash
# Build a busybox root filesystem offline from Debian's busybox-static:
#   busybox-rootfs.sh DIR
# DIR gets /bin/busybox with one symlink per applet, /etc/passwd and /etc/group
# (root, tty, nobody) and the usual empty directories.
set -euo pipefail
dir=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "busybox-rootfs: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root,var}
cp "$busybox" "$dir/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnobody:x:65534:\n' >"$dir/etc/group"
chmod 1777 "$dir/tmp"
