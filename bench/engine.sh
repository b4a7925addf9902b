#!/usr/bin/env bash
# Benchmark: the engines side by side — polisd, dockerd (Debian's docker.io, with its
# containerd) and podman — driven by their own clients on one busybox image.
#
# Times, with hyperfine: `run --rm … true` (a whole container life through the
# engine's API), `start -a` of a created container, `exec … true` in a running one; then the
# memory the engine itself holds (PSS of the daemons, shims and monitors, not the
# containers' own processes) while idle and with $CONTAINERS sleeping containers.
# Prints medians and the ratios polis/docker and polis/podman.
#
# The docker CLI is used against both polisd and dockerd, so client cost is equal.
# dockerd runs as machine-notes describe (no iptables, no bridge); every container
# uses --network none and a cgroup under /polis/bench-*. Everything is removed after.
#
# Environment: RUNS (default 30), CONTAINERS (default 10), POLIS_BIN,
# POLIS_DYNAMIC=1 (see bench/build-polis.sh), SKIP_DOCKER=1, SKIP_PODMAN=1.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-30}
CONTAINERS=${CONTAINERS:-10}
DOCKER=${DOCKER:-/usr/local/bin/docker}
# shellcheck source=bench/build-polis.sh
source "$REPO/bench/build-polis.sh"

T=$(mktemp -d /tmp/pe.XXXXXX)
OUT=$T/results
mkdir -p "$OUT"
ENGINES=(polis)
[[ -z "${SKIP_DOCKER:-}" ]] && command -v dockerd >/dev/null && ENGINES+=(docker)
[[ -z "${SKIP_PODMAN:-}" ]] && command -v podman >/dev/null && ENGINES+=(podman)

# Podman with runc, as dockerd: Debian's crun 1.8 refuses this host's hybrid cgroups.
PODMAN="podman --root $T/podman/root --runroot $T/podman/run --cgroup-manager=cgroupfs --events-backend=file --runtime /usr/sbin/runc"
declare -A CLI=(
    [polis]="$DOCKER -H unix://$T/polis.sock"
    [docker]="$DOCKER -H unix://$T/docker.sock"
    [podman]="$PODMAN"
)
declare -A RUN_OPTS=(
    [polis]="--network none"
    [docker]="--network none"
    # Podman's default rlimits exceed this machine's hard limits (machine-notes).
    [podman]="--network=none --cgroup-parent=/polis/bench-podman --ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
)
PIDS=()

cleanup() {
    set +e
    for n in "${ENGINES[@]}"; do
        ids=$(${CLI[$n]} ps -aq 2>/dev/null)
        [[ -n $ids ]] && ${CLI[$n]} rm -f $ids >/dev/null 2>&1
    done
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    # Whatever an engine left mounted under our directory.
    grep -o " $T[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    for c in /sys/fs/cgroup/*/polis/bench-docker /sys/fs/cgroup/*/polis/bench-podman; do
        [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

wait_socket() {
    for _ in $(seq 300); do
        [[ -S $1 ]] && return 0
        sleep 0.1
    done
    echo "no socket $1; log:" >&2
    cat "$2" >&2
    exit 1
}

# --- engines and the image --------------------------------------------------------
"$POLIS_BIN" daemon --bridge none --root "$T/polis/root" --run-root "$T/polis/run" \
    -H "unix://$T/polis.sock" 2>"$T/polisd.log" &
PIDS+=($!)
wait_socket "$T/polis.sock" "$T/polisd.log"
if [[ " ${ENGINES[*]} " == *" docker "* ]]; then
    dockerd --data-root "$T/docker/data" --exec-root "$T/docker/exec" \
        -H "unix://$T/docker.sock" --pidfile "$T/docker/dockerd.pid" \
        --iptables=false --ip-forward=false --bridge=none \
        --cgroup-parent /polis/bench-docker >"$T/dockerd.log" 2>&1 &
    PIDS+=($!)
    wait_socket "$T/docker.sock" "$T/dockerd.log"
fi

"$REPO/tests/lib/busybox-rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
for n in "${ENGINES[@]}"; do
    ${CLI[$n]} import "$T/busybox.tar" bench/busybox:latest >/dev/null
done

# PSS in kB of the processes an engine runs for itself: every process whose command
# line names its directory (daemons, containerd, shims, conmon), none of the
# containers' own.
engine_pss() {
    local dir=$1 total=0 pid pss
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "$dir" || continue
        pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + ${pss:-0}))
    done
    echo "$total"
}
declare -A ENGINE_DIR=([polis]="$T/polis" [docker]="$T/docker" [podman]="$T/podman")

# --- timings ----------------------------------------------------------------------
# bench PHASE CMD [PREPARE]: templates with {cli} and {opts}.
bench() {
    local phase=$1 template=$2 prepare=${3:-} args=()
    for n in "${ENGINES[@]}"; do
        local cmd=${template//\{cli\}/${CLI[$n]}}
        cmd=${cmd//\{opts\}/${RUN_OPTS[$n]}}
        if [[ -n $prepare ]]; then
            local prep=${prepare//\{cli\}/${CLI[$n]}}
            prep=${prep//\{opts\}/${RUN_OPTS[$n]}}
            args+=(--prepare "bash -c '$prep'")
        fi
        args+=(--command-name "$n" "$cmd")
    done
    echo "== $phase"
    hyperfine -N --warmup 3 --runs "$RUNS" --style basic \
        --export-json "$OUT/$phase.json" "${args[@]}" >"$OUT/$phase.txt" 2>&1 ||
        { cat "$OUT/$phase.txt"; exit 1; }
}

sleep 2 # let the engines settle before the idle reading
for n in "${ENGINES[@]}"; do
    echo "${n} $(engine_pss "${ENGINE_DIR[$n]}")" >>"$OUT/idle-pss"
done

bench run '{cli} run --rm {opts} bench/busybox true'
bench start '{cli} start -a bench-start' \
    '{cli} rm -f bench-start >/dev/null 2>&1; {cli} create --name bench-start {opts} bench/busybox true >/dev/null'
for n in "${ENGINES[@]}"; do
    ${CLI[$n]} run -d --name bench-exec ${RUN_OPTS[$n]} bench/busybox sleep 1000 >/dev/null
done
bench exec '{cli} exec bench-exec true'

for n in "${ENGINES[@]}"; do
    for i in $(seq "$CONTAINERS"); do
        ${CLI[$n]} run -d ${RUN_OPTS[$n]} bench/busybox sleep 1000 >/dev/null
    done
done
sleep 2
for n in "${ENGINES[@]}"; do
    echo "${n} $(engine_pss "${ENGINE_DIR[$n]}")" >>"$OUT/busy-pss"
done

python3 - "$OUT" "$CONTAINERS" "${ENGINES[@]}" <<'EOF'
import json, sys
out, containers, engines = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
others = [e for e in engines if e != "polis"]
print()
print("median wall time (ms); ratio = polis / other (lower is better)")
head = f"{'phase':<10}" + "".join(f"{e:>10}" for e in engines)
head += "".join(f"{'polis/' + o:>16}" for o in others)
print(head)
for phase in ["run", "start", "exec"]:
    res = {r["command"]: r for r in json.load(open(f"{out}/{phase}.json"))["results"]}
    med = {e: res[e]["median"] * 1000 for e in engines}
    line = f"{phase:<10}" + "".join(f"{med[e]:>10.1f}" for e in engines)
    line += "".join(f"{med['polis'] / med[o]:>16.2f}" for o in others)
    print(line)
def pss(name):
    return {l.split()[0]: int(l.split()[1]) for l in open(f"{out}/{name}")}
idle, busy = pss("idle-pss"), pss("busy-pss")
print()
print(f"engine memory (PSS MiB): idle, with {containers} containers, per container")
for e in engines:
    per = (busy[e] - idle[e]) / containers / 1024
    line = f"{e:<10}{idle[e] / 1024:>10.1f}{busy[e] / 1024:>10.1f}{per:>10.2f}"
    if e != "polis":
        ratio = lambda a, b: f"{a / b:.2f}" if b else "n/a (no daemon)"
        line += f"   polis/{e}: idle {ratio(idle['polis'], idle[e])}, busy {ratio(busy['polis'], busy[e])}"
    print(line)
EOF
