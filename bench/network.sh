#!/usr/bin/env bash
# Benchmark: bridge networking of polisd, dockerd (Debian's docker.io) and podman
# (Debian's, with netavark), side by side.
#
# Measures, for each engine, through a port it publishes (`-p`):
#   - TCP throughput (iperf3, one stream, $DURATION s) from the namespace's own
#     address and from 127.0.0.1, and, as a reference without NAT, straight to the
#     container's address;
#   - HTTP requests per second (wrk -t2 -c32) against busybox `httpd -f`, which closes
#     every connection after its answer: this is a connection rate;
#   - what bridge networking adds to a container start: hyperfine of
#     `run --rm --network none IMAGE true` against `run --rm IMAGE true` (default bridge).
# Prints medians and the ratios polis/docker and polis/podman.
#
# Each engine runs in a network namespace of its own that this script makes (`ip netns
# add`, lo and a veth pair whose first end holds 10.199.0.1/24): the engines' bridges
# (polis0, docker0, podman0) and firewall rules (nftables table inet polis, dockerd's
# and netavark's iptables) live there and never meet each other or the host's; every
# client (iperf3, wrk) runs in the same namespace, so no packet leaves it. The daemons
# are started with nsenter; podman has no daemon, so each podman command is run with
# nsenter. The servers in the containers are busybox's httpd and the host's iperf3
# (/usr, /lib and /lib64 bound read-only into the busybox image). Everything started
# is stopped by pid and everything made is removed at exit, the namespaces too.
#
# Environment: RUNS (hyperfine runs, default 20), DURATION (seconds per iperf3/wrk
# measurement, default 5), REPEAT (measurements per engine and target, default 3),
# POLIS_BIN, POLIS_DYNAMIC=1 (see bench/build-polis.sh), SKIP_DOCKER=1, SKIP_PODMAN=1.
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "network.sh: run as root" >&2; exit 1; }
for tool in hyperfine iperf3 wrk nsenter ip nft python3; do
    command -v "$tool" >/dev/null ||
        { echo "network.sh: $tool missing (apt-get install -y wrk iperf3 hyperfine)" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-20}
DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
DOCKER=${DOCKER:-/usr/local/bin/docker}
# shellcheck source=bench/build-polis.sh
source "$REPO/bench/build-polis.sh"

T=$(mktemp -d /tmp/pn.XXXXXX)
OUT=$T/results
mkdir -p "$OUT"
ENGINES=(polis)
[[ -z "${SKIP_DOCKER:-}" ]] && command -v dockerd >/dev/null && ENGINES+=(docker)
[[ -z "${SKIP_PODMAN:-}" ]] && command -v podman >/dev/null && ENGINES+=(podman)

ADDR=10.199.0.1 # the namespace's own address (on veth0)
declare -A NS
for n in "${ENGINES[@]}"; do NS[$n]="pn$$-$n"; done
in_ns() { # in_ns ENGINE CMD...: CMD in the engine's namespace
    local n=$1
    shift
    nsenter --net="/run/netns/${NS[$n]}" -- "$@"
}

# Podman with runc, as dockerd: Debian's crun 1.8 refuses this host's hybrid cgroups.
# Its state, its network configuration and its netavark state stay under $T.
PODMAN="nsenter --net=/run/netns/${NS[podman]:-none} -- podman --root $T/podman/root
    --runroot $T/podman/run --tmpdir $T/podman/tmp --network-config-dir $T/podman/net
    --cgroup-manager=cgroupfs --events-backend=file --runtime /usr/sbin/runc"
PODMAN=$(echo $PODMAN)
declare -A CLI=(
    [polis]="$DOCKER -H unix://$T/polis.sock"
    [docker]="$DOCKER -H unix://$T/docker.sock"
    [podman]="$PODMAN"
)
declare -A RUN_OPTS=(
    [polis]=""
    [docker]=""
    # Podman's default rlimits exceed this machine's hard limits (machine-notes).
    [podman]="--cgroup-parent=/polis/bench-podman --ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
)
# `rm -f`: podman would wait 10 s for the servers (pid 1 ignores SIGTERM) before killing.
declare -A RM=([polis]="rm -f" [docker]="rm -f" [podman]="rm -f -t 0")
PIDS=()
# netavark keeps its address allocations in /run/containers/networks whatever podman's
# --runroot: removed at exit when this run made it.
NETAVARK_RUN=/run/containers/networks
[[ -e $NETAVARK_RUN ]] && NETAVARK_RUN_OURS="" || NETAVARK_RUN_OURS=1
[[ -e /run/containers ]] && RUN_CONTAINERS_OURS="" || RUN_CONTAINERS_OURS=1

cleanup() {
    set +e
    for n in "${ENGINES[@]}"; do
        ids=$(${CLI[$n]} ps -aq 2>/dev/null)
        [[ -n $ids ]] && ${CLI[$n]} ${RM[$n]} $ids >/dev/null 2>&1
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
    for n in "${ENGINES[@]}"; do
        [[ -e /run/netns/${NS[$n]} ]] && ip netns del "${NS[$n]}"
    done
    if [[ -n $NETAVARK_RUN_OURS ]]; then
        rm -rf "$NETAVARK_RUN"
        [[ -n $RUN_CONTAINERS_OURS ]] && rmdir /run/containers 2>/dev/null
    fi
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

# --- namespaces, engines and the image --------------------------------------------
# A veth pair with both ends inside (this kernel has no dummy driver): a non-loopback
# address of the namespace's own, as tests/common/netns.rs makes.
for n in "${ENGINES[@]}"; do
    ns=${NS[$n]}
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add veth0 type veth peer name veth1
    ip -n "$ns" addr add "$ADDR/24" dev veth0
    ip -n "$ns" link set veth0 up
    ip -n "$ns" link set veth1 up
done

# nsenter execs the daemon: $! is the daemon's pid.
nsenter --net="/run/netns/${NS[polis]}" -- "$POLIS_BIN" daemon --root "$T/polis/root" --run-root "$T/polis/run" \
    -H "unix://$T/polis.sock" 2>"$T/polisd.log" &
PIDS+=($!)
wait_socket "$T/polis.sock" "$T/polisd.log"
if [[ " ${ENGINES[*]} " == *" docker "* ]]; then
    # Docker's defaults: iptables, the docker0 bridge and its userland proxy for
    # connections from 127.0.0.1; all of it inside its own namespace.
    nsenter --net="/run/netns/${NS[docker]}" -- dockerd --data-root "$T/docker/data" --exec-root "$T/docker/exec" \
        -H "unix://$T/docker.sock" --pidfile "$T/docker/dockerd.pid" \
        --cgroup-parent /polis/bench-docker >"$T/dockerd.log" 2>&1 &
    PIDS+=($!)
    wait_socket "$T/docker.sock" "$T/dockerd.log"
fi
if [[ " ${ENGINES[*]} " == *" podman "* ]]; then
    mkdir -p "$T/podman/net"
    ${CLI[podman]} info --format '{{.Host.NetworkBackend}}' >"$OUT/podman-backend"
fi

"$REPO/tests/lib/busybox-rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
for n in "${ENGINES[@]}"; do
    ${CLI[$n]} import "$T/busybox.tar" bench/busybox:latest >"$T/import-$n.log" 2>&1 ||
        { cat "$T/import-$n.log" >&2; exit 1; }
done

# --- servers ------------------------------------------------------------------------
wait_log() { # wait_log ENGINE CONTAINER TEXT
    for _ in $(seq 100); do
        ${CLI[$1]} logs "$2" 2>&1 | grep "$3" >/dev/null && return 0
        sleep 0.1
    done
    echo "$1: $2 never logged '$3':" >&2
    ${CLI[$1]} logs "$2" >&2
    exit 1
}
declare -A CIP
for n in "${ENGINES[@]}"; do
    ${CLI[$n]} run -d --name bench-iperf -p 5201:5201 ${RUN_OPTS[$n]} \
        -v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro \
        bench/busybox /usr/bin/iperf3 -s -p 5201 --forceflush >/dev/null
    ${CLI[$n]} run -d --name bench-httpd -p 8080:80 ${RUN_OPTS[$n]} bench/busybox sh -c \
        'mkdir -p /www && echo hello > /www/index.html && echo ready && exec httpd -f -p 80 -h /www' \
        >/dev/null
    wait_log "$n" bench-iperf "listening"
    wait_log "$n" bench-httpd ready
    CIP[$n]=$(${CLI[$n]} inspect --format '{{.NetworkSettings.IPAddress}}' bench-iperf)
    echo "$n: servers at ${CIP[$n]} (iperf3) and $(${CLI[$n]} inspect --format \
        '{{.NetworkSettings.IPAddress}}' bench-httpd) (httpd)"
done

# --- throughput and request rate ------------------------------------------------------
# One line per measurement: ENGINE TARGET VALUE (bits/s, requests/s), or VALUE "fail"
# with the reason in $OUT/errors.
iperf() { # iperf ENGINE TARGET-NAME ADDRESS PORT
    local f=$OUT/iperf-$1-$2.json
    if in_ns "$1" timeout $((DURATION + 20)) iperf3 -c "$3" -p "$4" -t "$DURATION" \
        --connect-timeout 3000 -J >"$f" 2>&1; then
        echo "$1 $2 $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$f")" >>"$OUT/tput"
    else
        echo "$1 $2 fail" >>"$OUT/tput"
        echo "iperf3 $1 $2: $(grep -o '"error":.*' "$f" || tail -2 "$f")" >>"$OUT/errors"
    fi
}
wrk_rate() { # wrk_rate ENGINE TARGET-NAME URL
    local f=$OUT/wrk-$1-$2.txt rps errs
    if in_ns "$1" timeout $((DURATION + 20)) wrk -t2 -c32 -d"${DURATION}s" --timeout 2s "$3" \
        >"$f" 2>&1 && rps=$(awk '/^Requests\/sec:/ {print $2}' "$f") && [[ -n $rps ]]; then
        # Failed requests: socket errors (connect, read, write, timeout) and non-2xx
        # answers.
        errs=$(awk '/Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
            /Non-2xx/ {n += $NF} END {print n + 0}' "$f")
        echo "$1 $2 $rps ${errs:-0}" >>"$OUT/rps"
    else
        echo "$1 $2 fail 0" >>"$OUT/rps"
        echo "wrk $1 $2: $(tail -3 "$f" | tr '\n' ' ')" >>"$OUT/errors"
    fi
}
touch "$OUT/errors"
for rep in $(seq "$REPEAT"); do
    echo "== throughput and request rate, round $rep of $REPEAT"
    for n in "${ENGINES[@]}"; do
        iperf "$n" ns-address "$ADDR" 5201
        iperf "$n" loopback 127.0.0.1 5201
        iperf "$n" container "${CIP[$n]}" 5201
        wrk_rate "$n" ns-address "http://$ADDR:8080/index.html"
        wrk_rate "$n" loopback "http://127.0.0.1:8080/index.html"
    done
done
for n in "${ENGINES[@]}"; do
    ${CLI[$n]} ${RM[$n]} bench-iperf bench-httpd >/dev/null
done

# --- start cost of bridge networking ------------------------------------------------
echo "== container start, --network none against the default bridge"
args=()
for n in "${ENGINES[@]}"; do
    args+=(--command-name "$n none" "${CLI[$n]} run --rm --network none ${RUN_OPTS[$n]} bench/busybox true")
    args+=(--command-name "$n bridge" "${CLI[$n]} run --rm ${RUN_OPTS[$n]} bench/busybox true")
done
hyperfine -N --warmup 3 --runs "$RUNS" --style basic --export-json "$OUT/start.json" \
    "${args[@]}" >"$OUT/start.txt" 2>&1 || { cat "$OUT/start.txt"; exit 1; }

# --- report ---------------------------------------------------------------------------
python3 - "$OUT" "${ENGINES[@]}" <<'EOF'
import json, statistics, sys
out, engines = sys.argv[1], sys.argv[2:]
others = [e for e in engines if e != "polis"]

def collect(name, scale):
    vals = {}
    for line in open(f"{out}/{name}"):
        e, target, v = line.split()[:3]
        vals.setdefault((e, target), []).append(None if v == "fail" else float(v) / scale)
    return vals

def med(xs):
    ok = [x for x in xs if x is not None]
    if not ok:
        return None
    return statistics.median(ok)

def table(title, unit, vals, targets, higher_better=True):
    print(f"\n{title} ({unit}, median of the rounds; ratio = polis / other, "
          f"{'higher' if higher_better else 'lower'} is better)")
    head = f"{'target':<12}" + "".join(f"{e:>12}" for e in engines)
    head += "".join(f"{'polis/' + o:>16}" for o in others)
    print(head)
    for t in targets:
        m = {e: med(vals.get((e, t), [])) for e in engines}
        fails = {e: sum(x is None for x in vals.get((e, t), [])) for e in engines}
        cell = lambda e: (f"{m[e]:.1f}" if m[e] is not None else "fail") + ("*" if fails[e] and m[e] is not None else "")
        line = f"{t:<12}" + "".join(f"{cell(e):>12}" for e in engines)
        for o in others:
            r = m["polis"] / m[o] if m["polis"] and m[o] else None
            line += f"{(f'{r:.2f}' if r else 'n/a'):>16}"
        print(line)
        spread = "  ".join(
            f"{e} " + "/".join("fail" if x is None else f"{x:.1f}" for x in vals.get((e, t), []))
            for e in engines)
        print(f"{'':<12}rounds: {spread}")

table("TCP throughput through the published port", "Gbit/s", collect("tput", 1e9),
      ["ns-address", "loopback", "container"])
table("HTTP requests/s through the published port (a new connection each)", "req/s",
      collect("rps", 1), ["ns-address", "loopback"])
errs = [l.split() for l in open(f"{out}/rps")]
bad = [f"{e} {t}: {x}" for e, t, v, x in errs if v != "fail" and float(x) > 0]
if bad:
    print("wrk socket errors (connect/write/timeout) or non-2xx answers: " + "; ".join(bad))

res = {r["command"]: r for r in json.load(open(f"{out}/start.json"))["results"]}
print("\ncontainer start (run --rm true), median ms")
print(f"{'engine':<10}{'none':>10}{'bridge':>10}{'added':>10}{'added (mean)':>14}")
added = {}
for e in engines:
    none, br = res[f"{e} none"], res[f"{e} bridge"]
    added[e] = (br["median"] - none["median"]) * 1000
    print(f"{e:<10}{none['median'] * 1000:>10.1f}{br['median'] * 1000:>10.1f}"
          f"{added[e]:>10.1f}{(br['mean'] - none['mean']) * 1000:>14.1f}")
for o in others:
    print(f"polis/{o}: bridge start {res['polis bridge']['median'] / res[o + ' bridge']['median']:.2f}, "
          f"added {added['polis'] / added[o]:.2f}" if added[o] > 0 else f"polis/{o}: n/a")

print("\ntargets: throughput at least Docker's; under 10 ms added to a start")
tp = collect("tput", 1e9)
if "docker" in engines:
    for t in ["ns-address", "loopback"]:
        p, d = med(tp.get(("polis", t), [])), med(tp.get(("docker", t), []))
        if p and d:
            print(f"  throughput via {t}: polis {p:.2f} / docker {d:.2f} Gbit/s = {p / d:.2f} "
                  f"{'met' if p >= d else 'MISSED by %.1f %%' % ((1 - p / d) * 100)}")
print(f"  start: {added['polis']:.1f} ms added "
      f"{'met' if added['polis'] < 10 else 'MISSED by %.1f ms' % (added['polis'] - 10)}")
EOF
if [[ -s $OUT/errors ]]; then
    echo
    echo "failed measurements:"
    cat "$OUT/errors"
fi
if [[ -s $OUT/podman-backend ]]; then
    echo "podman network backend: $(cat "$OUT/podman-backend")"
fi
