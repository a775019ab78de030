#!/usr/bin/env bash
# Side-by-side timings of qemu-img and our qcow2 command on LUKS-encrypted qcow2 images, in one run:
# decrypting (convert an encrypted image to raw) and encrypting (convert raw into a new LUKS qcow2).
# Each measurement is the median wall time, and the median CPU time (user + sys, all threads), of
# RUNS runs (default 3), page cache warm. The input is SIZE_MIB MiB of random data (default 256):
# incompressible, every cluster allocated, so both tools run their ciphers over all of it.
#
# The LUKS parameters are qemu-img's defaults (aes-256-xts-plain64) except encrypt.iter-time=10 and
# encrypt.hash-alg=sha512: the key derivation is kept short so that the timings show the data path, and
# qemu-img 7.2's sha256 LUKS creation fails now and then on a loaded machine ("Unable to get accurate
# CPU usage"). Creating a LUKS image still calibrates PBKDF2 (both tools time trial runs of it before
# choosing the iteration count); that fixed cost is part of the "raw -> LUKS" row, and the "create"
# row measures it alone (an empty image of the same size), so the difference is the data path. The
# key slot iteration counts each tool chose are printed after the table.
#
#   bash benchmarks/scripts/compare-qemu-crypto.sh [SIZE_MIB] [RUNS]
#
# Prints a Markdown table: operation, then wall and CPU seconds of each tool and the ratios (qcow2 / qemu-img).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${1:-256}
RUNS=${2:-3}
source benchmarks/scripts/side-by-side.sh

SECRET=(--object secret,id=s,data=bench-passphrase)
LUKS=encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,encrypt.hash-alg=sha512
enc() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s"; } # --image-opts of an encrypted image

head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/src.raw"
qemu-img convert "${SECRET[@]}" -f raw -O qcow2 -o "$LUKS" "$work/src.raw" "$work/enc.qcow2"


echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; qemu-img $(qemu-img --version | head -1 | awk '{print $3}'); dotnet $(dotnet --version); $SIZE_MIB MiB random data; LUKS aes-256-xts-plain64, sha512, iter-time 10 ms; median of $RUNS runs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
table_header
row "convert LUKS qcow2 -> raw (decrypt)" \
  qemu-img convert "${SECRET[@]}" --image-opts "$(enc "$work/enc.qcow2")" -O raw "$work/q1.raw" -- \
  "${QCOW2[@]}" convert "${SECRET[@]}" --image-opts "$(enc "$work/enc.qcow2")" -O raw "$work/o1.raw"
row "convert raw -> LUKS qcow2 (encrypt)" \
  qemu-img convert "${SECRET[@]}" -f raw -O qcow2 -o "$LUKS" "$work/src.raw" "$work/q2.qcow2" -- \
  "${QCOW2[@]}" convert "${SECRET[@]}" -f raw -O qcow2 -o "$LUKS" "$work/src.raw" "$work/o2.qcow2"
row "create empty LUKS qcow2 (key setup only)" \
  qemu-img create -q "${SECRET[@]}" -f qcow2 -o "$LUKS" "$work/q3.qcow2" "${SIZE_MIB}M" -- \
  "${QCOW2[@]}" create -q "${SECRET[@]}" -f qcow2 -o "$LUKS" "$work/o3.qcow2" "${SIZE_MIB}M"
iters() { qemu-img info --output=json "$1" | python3 -c 'import json, sys
e = json.load(sys.stdin)["format-specific"]["data"]["encrypt"]
print("master key %d, slot %s" % (e["master-key-iters"], [s["iters"] for s in e["slots"] if s["active"]][0]))'; }
echo
echo "PBKDF2 iterations chosen for iter-time 10 ms: qemu-img $(iters "$work/q2.qcow2"); qcow2 $(iters "$work/o2.qcow2")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The results must agree, or the timings mean nothing: both decryptions equal the source, and both
# encrypted images (each opened with the secret by qemu-img) hold the source's data and check clean.
cmp "$work/src.raw" "$work/q1.raw"
cmp "$work/src.raw" "$work/o1.raw"
qemu-img compare "${SECRET[@]}" --image-opts "$(enc "$work/o2.qcow2")" "driver=raw,file.filename=$work/src.raw" >/dev/null
qemu-img compare "${SECRET[@]}" --image-opts "$(enc "$work/q2.qcow2")" "$(enc "$work/o2.qcow2")" >/dev/null
qemu-img check -q "${SECRET[@]}" --image-opts "$(enc "$work/o2.qcow2")"
qemu-img info "$work/o2.qcow2" | grep -q "format: luks"
echo
echo "Outputs verified: decrypted raws identical to the source; our LUKS image equal to the source and to qemu-img's (qemu-img compare with the secret); qemu-img check clean."
