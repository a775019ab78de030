#!/usr/bin/env bash
# Side-by-side timings of qemu-img and our qcow2 command on the same machine, in one run.
# Each measurement is the median wall time, and the median CPU time (user + sys, all threads), of
# RUNS runs (default 3), with the page cache warm (the inputs were just written): it compares CPU
# and I/O path efficiency, not the disk. On a shared, loaded machine the wall times swing with the
# load; the CPU times are steadier and show the work each tool does.
#
#   bash benchmarks/scripts/compare-qemu.sh [SIZE_MIB] [RUNS]
#
# Prints a Markdown table: operation, then wall and CPU seconds of each tool and the ratios (qcow2 / qemu-img).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
source benchmarks/scripts/side-by-side.sh

# Input: a raw disk of SIZE_MIB MiB, half random data (incompressible), a quarter text-like
# (compressible), a quarter zeros, in 1 MiB stripes so that every kind is spread over the disk.
python3 - "$work/src.raw" "$SIZE_MIB" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
text = (b"qcow2 toolkit benchmark line with some repetition 0123456789\n" * 20000)[:1 << 20]
with open(path, "wb") as f:
    for i in range(mib):
        kind = i % 4
        if kind in (0, 1): f.write(os.urandom(1 << 20))
        elif kind == 2: f.write(text)
        else: f.seek(1 << 20, 1)
    f.truncate(mib << 20)
PY
qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/src.qcow2"


echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; qemu-img $(qemu-img --version | head -1 | awk '{print $3}'); dotnet $(dotnet --version); disk $SIZE_MIB MiB; median of $RUNS runs"
echo
table_header
row "convert raw -> qcow2" \
  qemu-img convert -f raw -O qcow2 "$work/src.raw" "$work/q1.qcow2" -- \
  "${QCOW2[@]}" convert -f raw -O qcow2 "$work/src.raw" "$work/o1.qcow2"
row "convert qcow2 -> qcow2 -c (zlib)" \
  qemu-img convert -c -O qcow2 "$work/src.qcow2" "$work/q2.qcow2" -- \
  "${QCOW2[@]}" convert -c -O qcow2 "$work/src.qcow2" "$work/o2.qcow2"
row "convert compressed qcow2 -> raw" \
  qemu-img convert -O raw "$work/q2.qcow2" "$work/q3.raw" -- \
  "${QCOW2[@]}" convert -O raw "$work/q2.qcow2" "$work/o3.raw"
row "bench read 4 KiB x 200000, depth 64" \
  qemu-img bench -c 200000 -d 64 -s 4k -S 64k "$work/src.qcow2" -- \
  "${QCOW2[@]}" bench -c 200000 -d 64 -s 4k -S 64k "$work/src.qcow2"
cp "$work/src.qcow2" "$work/wq.qcow2"; cp "$work/src.qcow2" "$work/wo.qcow2"
row "bench write 4 KiB x 200000, depth 64" \
  qemu-img bench -w -c 200000 -d 64 -s 4k -S 64k "$work/wq.qcow2" -- \
  "${QCOW2[@]}" bench -w -c 200000 -d 64 -s 4k -S 64k "$work/wo.qcow2"
row "check" \
  qemu-img check "$work/src.qcow2" -- \
  "${QCOW2[@]}" check "$work/src.qcow2"
row "map --output=json" \
  qemu-img map --output=json "$work/src.qcow2" -- \
  "${QCOW2[@]}" map --output=json "$work/src.qcow2"
row "compare qcow2 vs raw" \
  qemu-img compare "$work/src.qcow2" "$work/src.raw" -- \
  "${QCOW2[@]}" compare "$work/src.qcow2" "$work/src.raw"

# The results must agree, or the timings mean nothing.
qemu-img compare -q "$work/q1.qcow2" "$work/o1.qcow2"
qemu-img compare -q "$work/q2.qcow2" "$work/o2.qcow2"
qemu-img check -q "$work/o1.qcow2" && qemu-img check -q "$work/o2.qcow2"
cmp "$work/q3.raw" "$work/o3.raw"
echo
echo "Outputs verified: qemu-img compare equal, qemu-img check clean, raw outputs identical."
