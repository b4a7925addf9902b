# Sourced by the benchmarks: sets POLIS_BIN to the release build they measure.
#   default          static-pie (glibc and libseccomp linked in, as shipped)
#   POLIS_DYNAMIC=1  the plain `cargo build --release` binary
#   POLIS_BIN=PATH   a binary built elsewhere
# Needs REPO set to the repository root; honours CARGO_TARGET_DIR (relative: to REPO).
POLIS_TARGET_DIR=$(cd "$REPO" && realpath -m "${CARGO_TARGET_DIR:-target}")
if [[ -z "${POLIS_BIN:-}" && -z "${POLIS_DYNAMIC:-}" ]]; then
    # No dynamic loader work at each of the execs a container start makes. An
    # explicit --target keeps crt-static away from proc macros and build scripts.
    (cd "$REPO" && LIBSECCOMP_LINK_TYPE=static \
        LIBSECCOMP_LIB_PATH=${LIBSECCOMP_LIB_PATH:-/usr/lib/x86_64-linux-gnu} \
        RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build -q --release -p polis --target x86_64-unknown-linux-gnu)
    POLIS_BIN=$POLIS_TARGET_DIR/x86_64-unknown-linux-gnu/release/polis
elif [[ -z "${POLIS_BIN:-}" ]]; then
    (cd "$REPO" && cargo build -q --release -p polis)
    POLIS_BIN=$POLIS_TARGET_DIR/release/polis
fi
POLIS_BIN=$(realpath "$POLIS_BIN")
