#!/usr/bin/env bash
# OCI runtime conformance checks, modelled on the validations of the
# opencontainers runtime-tools suite (validation/<name>), run against an OCI
# runtime with runc's command line (default: polis-runtime built from this tree).
#
# Configs start from runtime-tools' own generator default (Debian's
# golang-github-opencontainers-runtime-tools-dev ships that library but not the
# validation programs nor runtimetest); tests/conformance/incheck.go plays the
# part of runtimetest inside the container. Every cgroup path is absolute under
# /polis: the suite's relative-cgroup validations are not run here.
#
# Needs (installs nothing): golang-go golang-github-opencontainers-runtime-tools-dev
#   busybox-static jq; root. Usage: [RUNTIME=/path/to/runtime] tests/conformance.sh [name...]
# Prints TAP and exits non-zero when any check fails.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ -z "${RUNTIME:-}" ]; then
    RUNTIME=$repo/target/debug/polis-runtime
    [ -x "$repo/target/debug/polis" ] || { echo "Bail out! build polis first (cargo build -p polis)"; exit 2; }
    ln -sf polis "$RUNTIME"
fi
for need in go jq /bin/busybox; do
    command -v "$need" >/dev/null || {
        echo "Bail out! missing $need; needs: golang-go golang-github-opencontainers-runtime-tools-dev busybox-static jq"
        exit 2
    }
done
[ -d /usr/share/gocode/src/github.com/opencontainers/runtime-tools/generate ] || {
    echo "Bail out! missing golang-github-opencontainers-runtime-tools-dev"
    exit 2
}

work=$(mktemp -d /tmp/polis-conformance.XXXXXX)
state=$work/state
mkdir -p "$state"
chmod 755 "$work" # a user-namespaced container's root must reach its bundle
cleanup() {
    for id in $("$RUNTIME" --root "$state" list -q 2>/dev/null); do
        "$RUNTIME" --root "$state" delete -f "$id" >/dev/null 2>&1
    done
    rm -rf "$work"
}
trap cleanup EXIT

# --- build the generator and the in-container checker ------------------------
export GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$work/gocache CGO_ENABLED=0
(cd "$here/conformance" && go build -o "$work/gen" gen.go && go build -o "$work/incheck" incheck.go) ||
    { echo "Bail out! building the checks failed"; exit 2; }

# --- busybox rootfs -----------------------------------------------------------
rootfs=$work/rootfs
"$here/lib/busybox-rootfs.sh" "$rootfs"
mkdir -p "$rootfs/masked-dir" "$rootfs/readonly-dir"
echo secret >"$rootfs/masked-dir/file"
echo secret >"$rootfs/masked-file"
echo data >"$rootfs/readonly-file"
cp "$work/incheck" "$rootfs/incheck"
"$work/gen" >"$work/default.json"

# --- TAP ----------------------------------------------------------------------
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { # check NAME COND-EXIT-STATUS [diagnostic]
    if [ "$2" -eq 0 ]; then ok "$1"; else not_ok "$1"; [ -n "${3:-}" ] && echo "$3" | sed 's/^/  # /'; fi
}
rt() { "$RUNTIME" --root "$state" "$@"; }
status_of() { rt state "$1" 2>/dev/null | jq -r .status; }
wait_status() { # wait_status ID STATUS: up to 5 s
    for _ in $(seq 50); do [ "$(status_of "$1")" = "$2" ] && return 0; sleep 0.1; done
    return 1
}

# bundle NAME [JQ-FILTER]: a bundle from the generator's default config, with a
# unique absolute cgroup under /polis; the config is also copied into the rootfs
# for incheck.
bundle() {
    local b=$work/$1 filter=${2:-.}
    mkdir -p "$b"
    cp -a "$rootfs" "$b/rootfs"
    jq --arg cg "/polis/conformance-$1-$$" ".root.path = \"rootfs\" | .linux.cgroupsPath = \$cg | $filter" \
        "$work/default.json" >"$b/config.json" || { echo "Bail out! bad filter for $1"; exit 2; }
    cp "$b/config.json" "$b/rootfs/config.json"
    # A user namespace needs the rootfs owned by the mapped root.
    local owner
    owner=$(jq -r '[.linux.uidMappings[]? | select(.containerID == 0) | .hostID][0] // empty' "$b/config.json")
    [ -n "$owner" ] && chown -R "$owner:$owner" "$b/rootfs"
    echo "$b"
}

# inside NAME [JQ-FILTER]: run incheck in a container; every line must be ok.
inside() {
    local name=$1 b out rc
    b=$(bundle "$@")
    (cd "$b" && timeout 30 "$RUNTIME" --root "$state" run "c-$name" </dev/null >"$work/$name.out" 2>&1)
    rc=$?
    out=$(cat "$work/$name.out")
    rt delete -f "c-$name" >/dev/null 2>&1
    if [ $rc -eq 0 ] && echo "$out" | grep -q '^1\.\.' && ! echo "$out" | grep -q '^not ok'; then
        ok "$name"
    else
        not_ok "$name"
        echo "$out" | grep -v '^ok ' | sed 's/^/  # /'
    fi
}

# output NAME EXPECTED JQ-FILTER: run the container's args, compare its stdout.
output() {
    local name=$1 want=$2 b out
    b=$(bundle "$name" "$3")
    (cd "$b" && timeout 30 "$RUNTIME" --root "$state" run "c-$name" </dev/null >"$work/$name.out" 2>&1)
    out=$(cat "$work/$name.out")
    rt delete -f "c-$name" >/dev/null 2>&1
    check "$name" "$([ "$out" = "$want" ]; echo $?)" "expected: $want
actual: $out"
}

# create_fails NAME JQ-FILTER: the runtime must refuse the config and leave no container.
create_fails() {
    local name=$1 b err
    b=$(bundle "$name" "$2")
    # To a file, not a pipe: a container created by mistake would hold a pipe open.
    rt create --bundle "$b" "c-$name" </dev/null >"$work/$name.err" 2>&1
    local rc=$?
    err=$(cat "$work/$name.err")
    local st
    st=$(status_of "c-$name")
    rt delete -f "c-$name" >/dev/null 2>&1
    check "$name" "$([ $rc -ne 0 ] && [ -z "$st" ]; echo $?)" "create rc=$rc, state afterwards '$st': $err"
}

sh_args='.process.args = ["/bin/sh", "-c", $cmd]'
# PID 1 ignores signals it has no handler for: trap the ones the kill checks send.
# /ready tells that the traps are in place.
long_running='.process.args = ["/bin/sh", "-c", "trap \"exit 0\" TERM INT HUP; touch /ready; while :; do sleep 0.1; done"]'
wait_ready() { # wait_ready BUNDLE: up to 5 s for the workload's traps
    for _ in $(seq 50); do [ -e "$1/rootfs/ready" ] && return 0; sleep 0.1; done
    return 1
}
SELECTED=" $* "
want() { [ "$SELECTED" = "  " ] || [[ $SELECTED == *" $1 "* ]]; }

echo "TAP version 13"
echo "# runtime: $RUNTIME"

# --- configuration applied inside the container (runtimetest's checks) --------
want default && inside default
want hostname && inside hostname '.hostname = "hostname-specific"'
want process && inside process '.process.cwd = "/tmp" | .process.env += ["testa=valuea", "testb=123"] | .process.args += ["--arg=1", "two"]'
want process_capabilities && inside process_capabilities \
    '.process.capabilities = {bounding: ["CAP_CHOWN", "CAP_SYS_ADMIN"], effective: ["CAP_CHOWN", "CAP_SYS_ADMIN"], permitted: ["CAP_CHOWN", "CAP_SYS_ADMIN"], inheritable: ["CAP_CHOWN"], ambient: []}'
want process_capabilities_fail && create_fails process_capabilities_fail '.process.capabilities.bounding += ["CAP_TEST"]'
want process_oom_score_adj && inside process_oom_score_adj '.process.oomScoreAdj = 500'
want process_rlimits && inside process_rlimits \
    '.process.rlimits = [{type: "RLIMIT_NOFILE", soft: 1024, hard: 1024}, {type: "RLIMIT_CORE", soft: 4096, hard: 8192}, {type: "RLIMIT_NPROC", soft: 1000, hard: 1000}]'
want process_rlimits_fail && create_fails process_rlimits_fail '.process.rlimits = [{type: "RLIMIT_TEST", soft: 1024, hard: 1024}]'
want process_user && inside process_user '.process.user = {uid: 10, gid: 10, additionalGids: [5, 6]}'
want linux_no_new_privileges && inside linux_no_new_privileges '.process.noNewPrivileges = true'
want linux_masked_paths && inside linux_masked_paths \
    '.linux.maskedPaths = ["/masked-dir", "/masked-file", "/proc/kcore", "/absent"]'
want linux_readonly_paths && inside linux_readonly_paths '.linux.readonlyPaths = ["/readonly-dir", "/readonly-file", "/proc/sys"]'
want linux_sysctl && inside linux_sysctl '.linux.sysctl = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"}'
want linux_devices && inside linux_devices \
    '.linux.devices = [{path: "/dev/test1", type: "c", major: 10, minor: 666, fileMode: 432, uid: 0, gid: 0}, {path: "/dev/test2", type: "b", major: 8, minor: 666, fileMode: 384}, {path: "/dev/test3", type: "p", fileMode: 438}]'
want mounts && inside mounts \
    '.mounts += [{destination: "/tmp/m1", type: "tmpfs", source: "tmpfs", options: ["size=1m"]}, {destination: "/tmp/m1/m2", type: "tmpfs", source: "m2", options: ["mode=700"]}]'
want root_readonly_true && inside root_readonly_true '.root.readonly = true'
want linux_uid_mappings && inside linux_uid_mappings \
    '.linux.namespaces += [{type: "user"}] | .linux.uidMappings = [{containerID: 0, hostID: 100000, size: 65536}] | .linux.gidMappings = [{containerID: 0, hostID: 100000, size: 65536}]'

# --- namespaces ----------------------------------------------------------------
if want linux_ns_path; then
    unshare --net --uts sleep 600 &
    holder=$!
    sleep 0.3
    want_ns="$(readlink /proc/$holder/ns/net) $(readlink /proc/$holder/ns/uts)"
    output linux_ns_path "$want_ns" \
        "(.linux.namespaces |= map(if .type == \"network\" then .path = \"/proc/$holder/ns/net\" elif .type == \"uts\" then .path = \"/proc/$holder/ns/uts\" else . end)) | del(.hostname) | .process.args = [\"/bin/sh\", \"-c\", \"echo \$(readlink /proc/self/ns/net) \$(readlink /proc/self/ns/uts)\"]"
    kill "$holder"
    wait "$holder" 2>/dev/null
fi
want linux_ns_itype && output linux_ns_itype "$(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/ipc)" \
    '(.linux.namespaces |= map(select(.type != "pid" and .type != "ipc"))) | .process.args = ["/bin/sh", "-c", "echo $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/ipc)"]'
want linux_ns_nopath && output linux_ns_nopath "different" \
    ".process.args = [\"/bin/sh\", \"-c\", \"[ \$(readlink /proc/self/ns/mnt) != $(readlink /proc/self/ns/mnt) ] && [ \$(readlink /proc/self/ns/net) != $(readlink /proc/self/ns/net) ] && echo different\"]"
want linux_ns_path_type && create_fails linux_ns_path_type \
    '.linux.namespaces |= map(if .type == "network" then .path = "/proc/self/ns/uts" else . end)'

# --- lifecycle (outside the container) ---------------------------------------
if want create; then
    b=$(bundle create "$long_running")
    rt create --bundle "$b" c-create </dev/null >/dev/null 2>&1
    check "create: status is created" "$([ "$(status_of c-create)" = created ]; echo $?)"
    st=$(rt state c-create 2>/dev/null)
    check "state: ociVersion, id, status, pid and bundle" \
        "$(echo "$st" | jq -e --arg b "$b" '.ociVersion != null and .id == "c-create" and .pid > 0 and .bundle == $b' >/dev/null; echo $?)" "$st"
    rt create --bundle "$b" c-create </dev/null >/dev/null 2>&1
    check "create: a used id is refused" "$([ $? -ne 0 ]; echo $?)"
    rt start c-create >/dev/null 2>&1
    check "start: status is running" "$([ "$(status_of c-create)" = running ]; echo $?)"
    wait_ready "$b"
    rt start c-create >/dev/null 2>&1
    check "start: a running container cannot start again" "$([ $? -ne 0 ]; echo $?)"
    rt delete c-create >/dev/null 2>&1
    check "delete: a running container is refused without --force" "$([ $? -ne 0 ] && [ "$(status_of c-create)" = running ]; echo $?)"
    rt kill c-create TERM >/dev/null 2>&1
    check "kill: TERM stops the container" "$(wait_status c-create stopped; echo $?)"
    rt kill c-create KILL >/dev/null 2>&1
    check "kill_no_effect: signalling a stopped container is an error" "$([ $? -ne 0 ] && [ "$(status_of c-create)" = stopped ]; echo $?)"
    rt delete c-create >/dev/null 2>&1
    check "delete: a stopped container is deleted" "$([ $? -eq 0 ] && ! rt state c-create >/dev/null 2>&1; echo $?)"
    check "delete_resources: its cgroup is gone" "$([ ! -e "/sys/fs/cgroup/pids/polis/conformance-create-$$" ] && [ ! -e "/sys/fs/cgroup/memory/polis/conformance-create-$$" ]; echo $?)"
    rt create --bundle "$work/nonexistent" c-none >/dev/null 2>&1
    check "create: a missing bundle is an error" "$([ $? -ne 0 ] && ! rt state c-none >/dev/null 2>&1; echo $?)"
    rt state c-none >/dev/null 2>&1
    check "state: an unknown id is an error" "$([ $? -ne 0 ]; echo $?)"
    rt delete c-none >/dev/null 2>&1
    check "delete: an unknown id is an error" "$([ $? -ne 0 ]; echo $?)"
    rt kill c-none KILL >/dev/null 2>&1
    check "kill: an unknown id is an error" "$([ $? -ne 0 ]; echo $?)"
fi

if want delete_only_create_resources; then
    b=$(bundle delete_created "$long_running")
    rt create --bundle "$b" c-created </dev/null >/dev/null 2>&1
    pid=$(rt state c-created | jq .pid)
    rt delete c-created >/dev/null 2>&1
    rc=$?
    sleep 0.2
    # Gone, or a zombie its reaper has not collected yet.
    gone=$( ! kill -0 "$pid" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; echo $?)
    check "delete: a created container is deleted with its process" "$([ $rc -eq 0 ] && [ "$gone" -eq 0 ]; echo $?)" "rc=$rc pid=$pid"
fi

if want killsig; then
    for sig in KILL SIGKILL 9 TERM SIGTERM 15 SIGINT SIGHUP; do
        b=$(bundle "killsig-$sig" "$long_running")
        rt create --bundle "$b" "c-sig-$sig" </dev/null >/dev/null 2>&1
        rt start "c-sig-$sig" >/dev/null 2>&1
        wait_ready "$b"
        rt kill "c-sig-$sig" "$sig" >/dev/null 2>&1
        check "killsig: kill with $sig" "$(wait_status "c-sig-$sig" stopped; echo $?)"
        rt delete -f "c-sig-$sig" >/dev/null 2>&1
    done
fi

if want pidfile; then
    b=$(bundle pidfile "$long_running")
    rt create --bundle "$b" --pid-file "$work/c-pidfile.pid" c-pidfile </dev/null >/dev/null 2>&1
    pid=$(rt state c-pidfile 2>/dev/null | jq .pid)
    check "pidfile: holds the state's pid" "$([ -n "$pid" ] && [ "$pid" -gt 0 ] && [ "$(cat "$work/c-pidfile.pid" 2>/dev/null)" = "$pid" ]; echo $?)"
    rt delete -f c-pidfile >/dev/null 2>&1
fi

if want config_updates_without_affect; then
    b=$(bundle config_updates '.process.args = ["/bin/echo", "original"]')
    rt create --bundle "$b" c-cfg </dev/null >"$work/cfg.out" 2>&1
    jq '.process.args = ["/bin/echo", "changed"]' "$b/config.json" >"$b/c2" && mv "$b/c2" "$b/config.json"
    rt start c-cfg >/dev/null 2>&1
    wait_status c-cfg stopped
    check "config_updates_without_affect: start uses the config as created" "$(grep -qx original "$work/cfg.out"; echo $?)" "$(cat "$work/cfg.out")"
    rt delete -f c-cfg >/dev/null 2>&1
fi

# Hooks: each appends its name and the state it was given to $log.
hook() { # hook NAME [EXIT]: a hook entry appending NAME and its stdin state to $log
    printf '{"path": "/bin/sh", "args": ["sh", "-c", "read -r s; echo \\"%s $s\\" >> %s; exit %s"]}' "$1" "$log" "${2:-0}"
}
if want hooks; then
    log=$work/hooks.log
    b=$(bundle hooks "$long_running")
    jq ".hooks = {prestart: [$(hook prestart)], createRuntime: [$(hook createRuntime)], poststart: [$(hook poststart)], poststop: [$(hook poststop)]}" \
        "$b/config.json" >"$b/c2" && mv "$b/c2" "$b/config.json"
    rt create --bundle "$b" c-hooks </dev/null >/dev/null 2>&1
    rt start c-hooks >/dev/null 2>&1
    rt kill c-hooks KILL >/dev/null 2>&1
    wait_status c-hooks stopped
    rt delete c-hooks >/dev/null 2>&1
    order=$(cut -d' ' -f1 "$log" 2>/dev/null | tr '\n' ' ')
    check "hooks: run in order prestart createRuntime poststart poststop" \
        "$([ "$order" = "prestart createRuntime poststart poststop " ]; echo $?)" "order: $order"
    statuses=$(while read -r name json; do echo "$name=$(echo "$json" | jq -r '.status + ":" + .id')"; done <"$log" | tr '\n' ' ')
    check "hooks_stdin: each hook gets the state on stdin" \
        "$(grep -Eqx 'prestart=creating:c-hooks createRuntime=creating:c-hooks poststart=(created|running):c-hooks poststop=stopped:c-hooks ' <<<"$statuses"; echo $?)" "got: $statuses"
fi
if want prestart_fail; then
    log=$work/prestart_fail.log
    b=$(bundle prestart_fail "$long_running")
    jq ".hooks = {prestart: [$(hook prestart 1)], poststop: [$(hook poststop)]}" "$b/config.json" >"$b/c2" && mv "$b/c2" "$b/config.json"
    rt create --bundle "$b" c-prefail </dev/null >/dev/null 2>&1
    rc=$?
    st=$(status_of c-prefail)
    check "prestart_fail: create fails and no container is left" "$([ $rc -ne 0 ] && [ -z "$st" ]; echo $?)" "rc=$rc status='$st'"
    rt delete -f c-prefail >/dev/null 2>&1
fi
if want poststart_fail; then
    log=$work/poststart_fail.log
    b=$(bundle poststart_fail "$long_running")
    jq ".hooks = {poststart: [$(hook poststart 1), $(hook poststart-second)]}" "$b/config.json" >"$b/c2" && mv "$b/c2" "$b/config.json"
    rt create --bundle "$b" c-postfail </dev/null >/dev/null 2>&1
    rt start c-postfail >/dev/null 2>&1
    rc=$?
    st=$(status_of c-postfail)
    check "poststart_fail: start succeeds and the remaining hooks run" \
        "$([ $rc -eq 0 ] && [ "$st" = running ] && grep -q '^poststart-second' "$log"; echo $?)" "rc=$rc status=$st log: $(cut -d' ' -f1 "$log" 2>/dev/null | tr '\n' ' ')"
    rt delete -f c-postfail >/dev/null 2>&1
fi
if want poststop_fail; then
    log=$work/poststop_fail.log
    b=$(bundle poststop_fail '.process.args = ["/bin/true"]')
    jq ".hooks = {poststop: [$(hook poststop 1), $(hook poststop-second)]}" "$b/config.json" >"$b/c2" && mv "$b/c2" "$b/config.json"
    rt create --bundle "$b" c-stopfail </dev/null >/dev/null 2>&1
    rt start c-stopfail >/dev/null 2>&1
    wait_status c-stopfail stopped
    rt delete c-stopfail >/dev/null 2>&1
    rc=$?
    check "poststop_fail: delete succeeds and the remaining hooks run" \
        "$([ $rc -eq 0 ] && ! rt state c-stopfail >/dev/null 2>&1 && grep -q '^poststop-second' "$log"; echo $?)" "rc=$rc log: $(cut -d' ' -f1 "$log" 2>/dev/null | tr '\n' ' ')"
fi

# --- cgroups, absolute paths under /polis (read from outside, after create) ---
cgroup_case() { # cgroup_case NAME FILTER "controller/file=value ..."
    local name=$1 b cg bad="" kv file val got
    b=$(bundle "$name" "$long_running | $2")
    cg=/polis/conformance-$name-$$
    if rt create --bundle "$b" "c-$name" </dev/null >"$work/$name.err" 2>&1; then
        for kv in $3; do
            file=${kv%%=*} val=${kv#*=}
            got=$(cat "/sys/fs/cgroup/${file%%/*}$cg/${file#*/}" 2>&1)
            # Each wanted line (\n-separated) must be one of the file's lines.
            while IFS= read -r line; do
                grep -qxF "$line" <<<"$got" || bad="$bad $file lacks '$line' (has: $(tr '\n' ';' <<<"$got"))"
            done < <(printf '%b\n' "$val")
        done
    else
        bad="create failed: $(cat "$work/$name.err")"
    fi
    rt delete -f "c-$name" >/dev/null 2>&1
    check "$name" "$([ -z "$bad" ]; echo $?)" "$bad"
}
want linux_cgroups_memory && cgroup_case linux_cgroups_memory \
    '.linux.resources.memory = {limit: 50593792, reservation: 50593792, swap: 101187584, swappiness: 50, disableOOMKiller: true}' \
    "memory/memory.limit_in_bytes=50593792 memory/memory.soft_limit_in_bytes=50593792 memory/memory.memsw.limit_in_bytes=101187584 memory/memory.swappiness=50"
want linux_cgroups_pids && cgroup_case linux_cgroups_pids '.linux.resources.pids = {limit: 1000}' "pids/pids.max=1000"
want linux_cgroups_cpus && cgroup_case linux_cgroups_cpus \
    '.linux.resources.cpu = {shares: 1024, quota: 50000, period: 100000, cpus: "0", mems: "0"}' \
    "cpu/cpu.shares=1024 cpu/cpu.cfs_quota_us=50000 cpu/cpu.cfs_period_us=100000 cpuset/cpuset.cpus=0 cpuset/cpuset.mems=0"
want linux_cgroups_devices && cgroup_case linux_cgroups_devices \
    '.linux.resources.devices = [{allow: false, access: "rwm"}, {allow: true, type: "c", major: 10, minor: 229, access: "rw"}, {allow: true, type: "b", major: 8, minor: 0, access: "r"}]' \
    'devices/devices.list=c\x2010:229\x20rw\nb\x208:0\x20r' 

echo "1..$n"
echo "# $((n - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
