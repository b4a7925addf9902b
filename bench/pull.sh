#!/usr/bin/env bash
# Benchmark: pulling an image of about 300 MB in 6 layers from a local registry with
# polisd (`polis pull`), `skopeo copy` to an OCI directory and `podman pull`, side by
# side in one hyperfine run; prints medians, the ratios polis/skopeo and polis/podman,
# and the peak RSS of each puller during one more pull (polisd's own VmHWM, reset
# through clear_refs just before, for polis; GNU time's maximum RSS for the others).
#
# The image is built offline: a busybox root filesystem and 5 layers of one file of
# $LAYER_MB MiB of /dev/urandom each (random data does not compress, so the gzip
# layers keep their size), written as an OCI layout and pushed by skopeo to Debian's
# docker-registry on 127.0.0.1. Before every timed pull the destination is emptied:
# `rmi` of the image ID through polisd (which deletes its blobs), the skopeo directory removed,
# `podman rmi`. Registry, stores and destinations live on one tmpfs (this host's disk
# is small and its speed would dominate); everything is removed afterwards.
#
# Environment: RUNS (default 5), LAYER_MB (default 60), POLIS_BIN,
# POLIS_DYNAMIC=1 (see bench/build-polis.sh), SKIP_PODMAN=1,
# PERF_DATA=FILE (`perf record -g` of polisd during one more pull, into FILE).
set -euo pipefail

if [[ -z "${POLIS_BENCH_IN_NS:-}" ]]; then
    export POLIS_BENCH_IN_NS=1
    exec unshare -m --propagation private "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
LAYER_MB=${LAYER_MB:-60}
# shellcheck source=bench/build-polis.sh
source "$REPO/bench/build-polis.sh"

T=$(mktemp -d /tmp/polis-pullbench.XXXXXX)
OUT=$T/results
mount -t tmpfs -o size=3g polis-pullbench "$T"
mkdir -p "$OUT"
PEERS=(polis skopeo)
[[ -z "${SKIP_PODMAN:-}" ]] && command -v podman >/dev/null && PEERS+=(podman)
PIDS=()
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IMAGE=127.0.0.1:$PORT/bench/big:latest
POLIS="$POLIS_BIN -H unix://$T/polis.sock"
PODMAN="podman --root $T/podman/root --runroot $T/podman/run --storage-driver overlay --cgroup-manager=cgroupfs --events-backend=file"

cleanup() {
    set +e
    ${PODMAN} rmi -af >/dev/null 2>&1
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    grep -o " $T/[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    umount -l "$T"
    rm -rf "$T"
}
trap cleanup EXIT

wait_for() { # wait_for TEST-CMD LOG
    for _ in $(seq 300); do
        eval "$1" && return 0
        sleep 0.1
    done
    echo "timed out waiting for: $1; log:" >&2
    cat "$2" >&2
    exit 1
}

# --- registry and polisd ----------------------------------------------------------
mkdir -p "$T/registry"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$T/registry/data" "$PORT" >"$T/registry/config.yml"
/usr/bin/docker-registry serve "$T/registry/config.yml" >"$T/registry.log" 2>&1 &
PIDS+=($!)
wait_for "curl -sf http://127.0.0.1:$PORT/v2/ >/dev/null" "$T/registry.log"

"$POLIS_BIN" daemon --bridge none --root "$T/polis/root" --run-root "$T/polis/run" \
    -H "unix://$T/polis.sock" 2>"$T/polisd.log" &
POLISD=$!
PIDS+=($POLISD)
wait_for "[[ -S $T/polis.sock ]]" "$T/polisd.log"

# --- the image: OCI layout built here, pushed by skopeo ---------------------------
"$REPO/tests/lib/busybox-rootfs.sh" "$T/rootfs" >/dev/null
python3 - "$T/oci" "$T/rootfs" "$LAYER_MB" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, rootfs, layer_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return "sha256:" + d
def layer(fill):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        fill(t)
    raw = raw.getvalue()
    gz = gzip.compress(raw, compresslevel=1, mtime=0)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": put(gz), "size": len(gz)}, "sha256:" + hashlib.sha256(raw).hexdigest()
def busybox(t):
    for name in sorted(os.listdir(rootfs)):
        t.add(os.path.join(rootfs, name), arcname=name)
def random_file(i):
    def fill(t):
        data = os.urandom(layer_mb << 20)
        info = tarfile.TarInfo(f"data/blob{i}")
        info.size, info.mode = len(data), 0o644
        t.addfile(info, io.BytesIO(data))
    return fill
layers, diff_ids = [], []
for fill in [busybox] + [random_file(i) for i in range(5)]:
    desc, diff = layer(fill)
    layers.append(desc)
    diff_ids.append(diff)
config = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": put(config), "size": len(config)},
    "layers": layers,
}).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": put(manifest), "size": len(manifest),
    "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
json.dump(index, open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
EOF
skopeo copy -q --dest-tls-verify=false "oci:$T/oci:latest" "docker://$IMAGE"
SIZE_MB=$(du -sm "$T/oci/blobs" | cut -f1)
rm -rf "$T/oci" "$T/rootfs"

# --- timings ----------------------------------------------------------------------
declare -A PULL=(
    [polis]="$POLIS pull -q $IMAGE"
    [skopeo]="skopeo copy -q --src-tls-verify=false docker://$IMAGE oci:$T/skopeo-dest:latest"
    [podman]="$PODMAN pull -q --tls-verify=false $IMAGE"
)
declare -A EMPTY=(
    # By ID: rmi of the tag alone would keep the image under its repo@digest name.
    [polis]="$POLIS images -q | xargs -r $POLIS rmi -f >/dev/null"
    [skopeo]="rm -rf $T/skopeo-dest"
    [podman]="$PODMAN rmi -af >/dev/null 2>&1; true"
)
args=()
for n in "${PEERS[@]}"; do
    args+=(--command-name "$n" --prepare "bash -c '${EMPTY[$n]}'" "${PULL[$n]}")
done
echo "== pull of ${SIZE_MB} MB in 6 layers, $RUNS runs each"
hyperfine -N --warmup 1 --runs "$RUNS" --style basic \
    --export-json "$OUT/pull.json" "${args[@]}" >"$OUT/pull.txt" 2>&1 ||
    { cat "$OUT/pull.txt"; exit 1; }

# --- peak RSS of one more pull each -----------------------------------------------
for n in "${PEERS[@]}"; do
    bash -c "${EMPTY[$n]}"
    if [[ $n == polis ]]; then
        echo 5 >"/proc/$POLISD/clear_refs" # resets VmHWM to the current RSS
        ${PULL[$n]} >/dev/null
        echo "polis $(awk '/^VmHWM:/ {print $2}' "/proc/$POLISD/status")" >>"$OUT/rss"
    else
        /usr/bin/time -f "$n %M" -a -o "$OUT/rss" ${PULL[$n]} >/dev/null
    fi
done

if [[ -n "${PERF_DATA:-}" ]]; then
    bash -c "${EMPTY[polis]}"
    perf record -q -F 1999 -g -o "$PERF_DATA" -p "$POLISD" -- ${PULL[polis]} >/dev/null
fi

# Each pull really downloaded: what each destination holds after the last one.
echo "stored after a pull (MB): polis $(du -sm "$T/polis/root" | cut -f1)," \
    "skopeo $(du -sm "$T/skopeo-dest" | cut -f1)," \
    "podman $(du -sm "$T/podman/root" 2>/dev/null | cut -f1)"

python3 - "$OUT" "${PEERS[@]}" <<'EOF'
import json, sys
out, peers = sys.argv[1], sys.argv[2:]
res = {r["command"]: r for r in json.load(open(f"{out}/pull.json"))["results"]}
rss = {l.split()[0]: int(l.split()[1]) for l in open(f"{out}/rss")}
others = [p for p in peers if p != "polis"]
fastest = min(res[p]["median"] for p in others)
print()
print("median wall time (s), cpu s (user+sys; for polis the client only), peak RSS (MiB) of the puller")
for p in peers:
    r = res[p]
    print(f"{p:<8}{r['median']:>8.2f}{r['user'] + r['system']:>8.2f}{rss[p] / 1024:>8.1f}"
          f"   (min {r['min']:.2f}, max {r['max']:.2f})")
print()
for o in others:
    print(f"polis/{o}: {res['polis']['median'] / res[o]['median']:.2f}")
print(f"target: polis/fastest <= 1.0 -> {res['polis']['median'] / fastest:.2f}; "
      f"polisd peak RSS < 64 MiB -> {rss['polis'] / 1024:.1f} MiB")
EOF
