#!/usr/bin/env bash
# End-to-end test: podman driving polis as its OCI runtime.
#
# Builds polis (unless POLIS_BIN is set), imports a busybox image into an
# isolated podman store under a temp dir and exercises run/logs/exec/stop,
# terminals, resource limits, exit codes and cleanup. All cgroups live under
# /polis/podman-test. PODMAN_TEST_RUNTIME=/usr/sbin/runc runs the same checks
# against another runtime (to validate the script itself).
#
# Exits non-zero if any check fails; prints each failure.
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
CGROUP_PARENT=/polis/podman-test
IMAGE=localhost/polis-busybox
FAILURES=0

T=$(mktemp -d /tmp/polis-podman.XXXXXX)

fail() {
    echo "FAIL: $*" >&2
    FAILURES=$((FAILURES + 1))
}
pass() { echo "ok: $*"; }

if [[ -n "${PODMAN_TEST_RUNTIME:-}" ]]; then
    RUNTIME=$PODMAN_TEST_RUNTIME
else
    if [[ -z "${POLIS_BIN:-}" ]]; then
        (cd "$REPO" && cargo build -q -p polis) || { echo "FAIL: cargo build" >&2; exit 1; }
        POLIS_BIN=$REPO/target/debug/polis
    fi
    ln -s "$(realpath "$POLIS_BIN")" "$T/polis-runtime"
    RUNTIME=$T/polis-runtime
fi
echo "runtime: $RUNTIME"

cat >"$T/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$T/containers.conf

pm() {
    podman --root "$T/root" --runroot "$T/runroot" --cgroup-manager=cgroupfs \
        --events-backend=file --runtime "$RUNTIME" "$@"
}
# `podman run` with the options every container of this test gets.
pmrun() {
    local args=()
    while [[ $# -gt 0 && $1 == -* ]]; do args+=("$1"); shift; done
    pm run --network=none --cgroup-parent="$CGROUP_PARENT" "${args[@]}" "$@"
}

cleanup() {
    pm rm -af -t 0 >/dev/null 2>&1
    pm rmi -af >/dev/null 2>&1
    # Remove podman's leftovers (conmon cgroup) bottom-up.
    for c in /sys/fs/cgroup/polis/podman-test /sys/fs/cgroup/*/polis/podman-test; do
        [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    umount -R "$T/root" "$T/runroot" 2>/dev/null
    rm -rf "$T" 2>/dev/null
}
trap cleanup EXIT

# --- image -----------------------------------------------------------------
R=$T/rootfs
"$REPO/tests/lib/busybox-rootfs.sh" "$R"
tar -C "$R" -c . | pm import - "$IMAGE" >/dev/null 2>&1 || { echo "FAIL: import" >&2; exit 1; }

# --- run --rm --------------------------------------------------------------
out=$(pmrun --rm "$IMAGE" echo hi 2>&1)
[[ $out == hi ]] && pass "run --rm echo hi" || fail "run --rm echo hi: got '$out'"

# --- exit code -------------------------------------------------------------
pmrun --rm "$IMAGE" sh -c 'exit 7' >/dev/null 2>&1
rc=$?
[[ $rc == 7 ]] && pass "exit code 7" || fail "exit code: want 7, got $rc"

# --- detached container: logs, exec, cgroup placement, stop ----------------
ctr=$(pmrun -d --name polis-detached "$IMAGE" sh -c 'echo started; sleep 1000' 2>&1)
if [[ $? -ne 0 ]]; then
    fail "run -d: $ctr"
else
    pass "run -d"
    used=$(pm inspect -f '{{.OCIRuntime}}' polis-detached 2>&1)
    [[ $used == "$RUNTIME" ]] || fail "podman used runtime '$used', not $RUNTIME"
    sleep 1
    out=$(pm logs polis-detached 2>&1)
    [[ $out == *started* ]] && pass "logs" || fail "logs: got '$out'"

    out=$(pm exec polis-detached cat /etc/hostname 2>&1)
    [[ $? -eq 0 && -n $out ]] && pass "exec cat /etc/hostname ($out)" || fail "exec cat /etc/hostname: '$out'"
    out=$(pm exec polis-detached echo x 2>&1)
    [[ $out == x ]] && pass "exec echo x" || fail "exec echo x: got '$out'"
    pm exec polis-detached sh -c 'exit 5' >/dev/null 2>&1
    rc=$?
    [[ $rc == 5 ]] && pass "exec exit code 5" || fail "exec exit code: want 5, got $rc"

    out=$(script -qec "podman --root $T/root --runroot $T/runroot --cgroup-manager=cgroupfs \
        --events-backend=file --runtime $RUNTIME exec -it polis-detached sh -c 'tty; echo ok'" /dev/null </dev/null 2>&1 | tr -d '\r')
    [[ $out == *"/dev/pts/"* && $out == *ok* ]] && pass "exec -it (tty)" || fail "exec -it: got '$out'"

    pm pause polis-detached >/dev/null 2>&1 || fail "pause"
    status=$(pm inspect -f '{{.State.Status}}' polis-detached 2>&1)
    [[ $status == paused ]] && pass "paused" || fail "after pause: status '$status'"
    pm unpause polis-detached >/dev/null 2>&1 || fail "unpause"
    out=$(pm exec polis-detached echo back 2>&1)
    [[ $out == back ]] && pass "unpause" || fail "exec after unpause: got '$out'"

    pid=$(pm inspect -f '{{.State.Pid}}' polis-detached 2>/dev/null)
    if [[ -n $pid && $pid != 0 && -r /proc/$pid/cgroup ]]; then
        if grep -q process_api "/proc/$pid/cgroup"; then
            fail "container process in process_api cgroup: $(tr '\n' ' ' </proc/$pid/cgroup)"
        elif grep -q ":$CGROUP_PARENT/" "/proc/$pid/cgroup"; then
            pass "container cgroups under $CGROUP_PARENT"
        else
            fail "container cgroups not under $CGROUP_PARENT: $(tr '\n' ' ' </proc/$pid/cgroup)"
        fi
    else
        fail "inspect pid: '$pid'"
    fi
    for conmon in $(pgrep -f "conmon.*$ctr" 2>/dev/null); do
        grep -q process_api "/proc/$conmon/cgroup" 2>/dev/null &&
            echo "note: conmon $conmon stays in the caller's process_api memory cgroup"
    done

    pm stop -t 2 polis-detached >/dev/null 2>&1 || fail "stop"
    status=$(pm inspect -f '{{.State.Status}}' polis-detached 2>&1)
    [[ $status == exited ]] && pass "stopped: $status" || fail "after stop: status '$status'"
    [[ -n $pid && -d /proc/$pid ]] && fail "container process $pid survived stop"
    pm rm polis-detached >/dev/null 2>&1 || fail "rm"
    pm container exists polis-detached && fail "container still exists after rm"
fi

# --- terminal --------------------------------------------------------------
# Podman attaches to the terminal only after the start: the container waits a moment
# so that its output is not gone before anyone listens.
out=$(script -qec "podman --root $T/root --runroot $T/runroot --cgroup-manager=cgroupfs \
    --events-backend=file --runtime $RUNTIME run --network=none \
    --cgroup-parent=$CGROUP_PARENT -it --rm $IMAGE sh -c 'sleep 0.5; tty; echo ok'" /dev/null </dev/null 2>&1 | tr -d '\r')
[[ $out == *"/dev/pts/0"* && $out == *ok* ]] && pass "run -it (tty)" || fail "run -it: got '$out'"

# --- resource limits -------------------------------------------------------
# Prints cgroup file $1 (v1: "controller/file") or, on cgroup v2, $2, as the
# container sees it (podman mounts the container's own cgroup at /sys/fs/cgroup).
read_limit='if [ -f /sys/fs/cgroup/cgroup.controllers ]; then cat /sys/fs/cgroup/$2; else cat /sys/fs/cgroup/$1; fi'
check_limit() { # name want option v1file v2file
    local name=$1 want=$2 opt=$3 v1=$4 v2=$5
    out=$(pmrun --rm "$opt" "$IMAGE" sh -c "$read_limit" sh "$v1" "$v2" 2>&1)
    [[ $out == "$want" ]] && pass "$name: $out" || fail "$name: want '$want', got '$out'"
}
# Inside the container the layout follows the host's cgroup version.
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then cpu_want="50000 100000"; else cpu_want=50000; fi
check_limit "memory 64m" 67108864 --memory=64m memory/memory.limit_in_bytes memory.max
check_limit "pids-limit 42" 42 --pids-limit=42 pids/pids.max pids.max
check_limit "cpus 0.5" "$cpu_want" --cpus=0.5 cpu/cpu.cfs_quota_us cpu.max

# --- cleanup ---------------------------------------------------------------
left=$(pm ps -aq 2>&1)
[[ -z $left ]] && pass "no containers left" || fail "containers left: $left"
leftover=$(find /sys/fs/cgroup/polis/podman-test /sys/fs/cgroup/*/polis/podman-test -mindepth 1 -type d -name 'libpod-*' 2>/dev/null)
[[ -z $leftover ]] && pass "no container cgroups left" || fail "container cgroups left: $leftover"
procs=$(cat /sys/fs/cgroup/polis/podman-test/libpod-*/cgroup.procs /sys/fs/cgroup/*/polis/podman-test/libpod-*/cgroup.procs 2>/dev/null)
[[ -z $procs ]] || fail "container processes left: $procs"
# conmon and anything else started for this store carries its paths on the command line.
stray=$(pgrep -f -- "$T/(root|runroot)" 2>/dev/null)
[[ -z $stray ]] && pass "no conmon or container process left" || fail "processes left: $(ps -o pid=,args= -p "${stray//$'\n'/,}")"

if [[ $FAILURES -ne 0 ]]; then
    echo "$FAILURES check(s) failed" >&2
    exit 1
fi
echo "all podman checks passed"
