#!/usr/bin/env bash
# Times `qemu-img check` against our `qcow2 check` on the same generated large image.
#
#   benchmarks/scripts/check-vs-qemu.sh [size] [cluster_size] [runs]
#
# The image is made with metadata preallocation, so every guest cluster is allocated (millions of
# L2 entries and refcounts to examine) while the file stays sparse. It is kept in $WORK between runs.
set -euo pipefail

SIZE=${1:-20G}
CLUSTER=${2:-4096}
RUNS=${3:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/qcow2-check-bench}
export QCOW_ARTIFACTS=${QCOW_ARTIFACTS:-/tmp/art-check-bench}
IMAGE="$WORK/prealloc-$SIZE-$CLUSTER.qcow2"

mkdir -p "$WORK"
command -v qemu-img >/dev/null || { echo "qemu-img is not installed" >&2; exit 1; }

echo "building qcow2 (Release)..." >&2
dotnet build -c Release "$ROOT/src/Qcow2.Cli" -v quiet -nologo >/dev/null
CLI="$QCOW_ARTIFACTS/bin/Qcow2.Cli/release/qcow2.dll"
[ -f "$CLI" ] || { echo "built CLI not found at $CLI" >&2; exit 1; }

if [ ! -f "$IMAGE" ]; then
    echo "creating $IMAGE ..." >&2
    qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size="$CLUSTER" "$IMAGE" "$SIZE"
    # A snapshot doubles the L1/L2 work (QEMU walks every snapshot's tables too).
    qemu-img snapshot -c bench "$IMAGE"
fi
clusters=$(( $(qemu-img info --output=json "$IMAGE" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p') / CLUSTER ))

# Best of $RUNS wall-clock seconds; the first (cache-warming) run is not counted.
best() {
    "$@" >/dev/null 2>&1 || true
    local best=""
    for _ in $(seq "$RUNS"); do
        local t0 t1 dt
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || true
        t1=$(date +%s.%N)
        dt=$(echo "$t1 - $t0" | bc)
        if [ -z "$best" ] || [ "$(echo "$dt < $best" | bc)" = 1 ]; then best=$dt; fi
    done
    echo "$best"
}

q=$(best qemu-img check "$IMAGE")
o=$(best dotnet "$CLI" check "$IMAGE")
printf 'image: %s (%s guest clusters of %s bytes, 1 snapshot)\n' "$IMAGE" "$clusters" "$CLUSTER"
printf 'qemu-img check : %8.3f s\n' "$q"
printf 'qcow2 check    : %8.3f s   (includes .NET start-up)\n' "$o"
qemu-img check "$IMAGE" | tail -2
dotnet "$CLI" check "$IMAGE" | tail -2

# Repair: the same image with its second refcount block zeroed (every cluster it covers has refcount
# 0 although in use), which makes both tools rebuild the whole refcount structure. One timed run each
# on its own sparse copy.
damaged() {
    cp --sparse=always "$IMAGE" "$1"
    python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(48); table = struct.unpack('>Q', f.read(8))[0]
    f.seek(table + 8); block = struct.unpack('>Q', f.read(8))[0] & ~0x1ff
    f.seek(20); cluster = 1 << struct.unpack('>I', f.read(4))[0]
    f.seek(block); f.write(bytes(cluster))
PY
}
damaged "$WORK/damaged-qemu.qcow2"
damaged "$WORK/damaged-ours.qcow2"
t0=$(date +%s.%N); qemu-img check -r all "$WORK/damaged-qemu.qcow2" >/dev/null 2>&1 || true; t1=$(date +%s.%N)
t2=$(date +%s.%N); dotnet "$CLI" check -r all "$WORK/damaged-ours.qcow2" >/dev/null 2>&1 || true; t3=$(date +%s.%N)
printf 'qemu-img check -r all (rebuild) : %8.3f s\n' "$(echo "$t1 - $t0" | bc)"
printf 'qcow2 check -r all (rebuild)    : %8.3f s\n' "$(echo "$t3 - $t2" | bc)"
qemu-img check "$WORK/damaged-ours.qcow2" | head -1
rm -f "$WORK/damaged-qemu.qcow2" "$WORK/damaged-ours.qcow2"
