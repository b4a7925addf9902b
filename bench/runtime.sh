#!/usr/bin/env bash
# Benchmark: polis vs runc vs crun on the container lifecycle, side by side.
#
# Times `run` (create + start + wait + delete of a busybox /bin/true container) and
# then create, start and delete apart, with hyperfine, and prints medians and the
# ratios polis/runc and polis/crun.
#
# Runs inside a private mount namespace with /sys/fs/cgroup/unified unmounted:
# crun 1.8 refuses hybrid cgroup layouts, so all three runtimes get the same v1
# layout. Each runtime's containers use their own cgroup under /polis/bench-*.
#
# Environment: RUNS (default 100), POLIS_BIN (skip the release build),
# POLIS_DYNAMIC=1 (measure the default dynamically linked build instead of the
# static-pie release build, see bench/README.md),
# OUT (directory for the hyperfine JSON files, default a temp dir, removed).
set -euo pipefail

if [[ -z "${POLIS_BENCH_IN_NS:-}" ]]; then
    export POLIS_BENCH_IN_NS=1
    exec unshare -m --propagation private "$0" "$@"
fi
umount /sys/fs/cgroup/unified 2>/dev/null || true

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-100}
# shellcheck source=bench/build-polis.sh
source "$REPO/bench/build-polis.sh"

T=$(mktemp -d /tmp/polis-bench.XXXXXX)
OUT=${OUT:-$T/results}
mkdir -p "$OUT" "$T/state"
# Container state on tmpfs, as in runc's default /run/runc (ext4 inode allocation for
# state files and fifos would otherwise be a visible part of every run).
mount -t tmpfs -o size=64m polis-bench-state "$T/state"

NAMES=(polis runc crun)
declare -A CLI=(
    [polis]="$POLIS_BIN runtime --root $T/state/polis"
    [runc]="/usr/sbin/runc --root $T/state/runc"
    [crun]="/usr/bin/crun --root $T/state/crun"
)

cleanup() {
    for n in "${NAMES[@]}"; do
        ${CLI[$n]} delete -f "bench-$n" >/dev/null 2>&1 || true
        for c in /sys/fs/cgroup/*/polis/bench-"$n"; do
            [[ -d $c ]] && rmdir "$c" 2>/dev/null || true
        done
    done
    umount "$T/state" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT

# --- busybox rootfs, one bundle per runtime (own cgroup) ----------------------
R=$T/rootfs
"$REPO/tests/lib/busybox-rootfs.sh" "$R"
for n in "${NAMES[@]}"; do
    b=$T/bundle-$n
    mkdir -p "$b" "$T/state/$n"
    (cd "$b" && /usr/sbin/runc spec)
    jq --arg root "$R" --arg cg "/polis/bench-$n" '
        .ociVersion = "1.0.2"
        | .process.args = ["/bin/true"]
        | .process.terminal = false
        | .root.path = $root
        | .linux.cgroupsPath = $cg' "$b/config.json" >"$b/config.json.new"
    mv "$b/config.json.new" "$b/config.json"
done

# Prepare hook (not timed): puts container bench-$1 in state $2 (absent, created,
# stopped).
cat >"$T/prepare.sh" <<EOF
#!/bin/bash
n=\$1; want=\$2
case \$n in
polis) cli="${CLI[polis]}" ;; runc) cli="${CLI[runc]}" ;; crun) cli="${CLI[crun]}" ;;
esac
\$cli delete -f bench-\$n >/dev/null 2>&1
[[ \$want == absent ]] && exit 0
\$cli create --bundle $T/bundle-\$n bench-\$n || exit 1
[[ \$want == created ]] && exit 0
\$cli start bench-\$n || exit 1
for _ in \$(seq 1000); do
    \$cli state bench-\$n 2>/dev/null | grep -q '"stopped"' && exit 0
    sleep 0.005
done
echo "bench-\$n did not stop" >&2; exit 1
EOF
chmod +x "$T/prepare.sh"

# bench PHASE PREPARE-STATE CMD-TEMPLATE: one hyperfine run over the three runtimes;
# CMD-TEMPLATE uses {cli}, {n} and {bundle}.
bench() {
    local phase=$1 state=$2 template=$3 args=()
    for n in "${NAMES[@]}"; do
        local cmd=${template//\{cli\}/${CLI[$n]}}
        cmd=${cmd//\{n\}/$n}
        cmd=${cmd//\{bundle\}/$T/bundle-$n}
        args+=(--command-name "$n" --prepare "$T/prepare.sh $n $state" "$cmd")
    done
    echo "== $phase"
    hyperfine -N --warmup 5 --runs "$RUNS" --style basic \
        --export-json "$OUT/$phase.json" "${args[@]}" >"$OUT/$phase.txt" 2>&1 ||
        { cat "$OUT/$phase.txt"; exit 1; }
}

bench run absent '{cli} run --bundle {bundle} bench-{n}'
bench create absent '{cli} create --bundle {bundle} bench-{n}'
bench start created '{cli} start bench-{n}'
bench delete stopped '{cli} delete bench-{n}'

python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
names = ("polis", "runc", "crun")
print()
print("median wall time (ms), ratios; targets: polis/runc <= 0.33, polis/crun <= 1.0")
print(f"{'phase':<8}{'polis':>8}{'runc':>8}{'crun':>8}{'polis/runc':>12}{'polis/crun':>12}   cpu ms (user+sys) polis/runc/crun")
for phase in ["run", "create", "start", "delete"]:
    res = {r["command"]: r for r in json.load(open(f"{out}/{phase}.json"))["results"]}
    med = {n: res[n]["median"] * 1000 for n in names}
    cpu = {n: (res[n]["user"] + res[n]["system"]) * 1000 for n in names}
    vs_runc = med["polis"] / med["runc"]
    vs_crun = med["polis"] / med["crun"]
    verdict = ("ok" if vs_runc <= 1 / 3 else "MISS") + "/" + ("ok" if vs_crun <= 1 else "MISS")
    print(f"{phase:<8}{med['polis']:>8.2f}{med['runc']:>8.2f}{med['crun']:>8.2f}"
          f"{vs_runc:>12.2f}{vs_crun:>12.2f}   {cpu['polis']:.1f}/{cpu['runc']:.1f}/{cpu['crun']:.1f}  {verdict}")
EOF
