#!/usr/bin/env bash
# ModelVault on HDFS: backup and restore throughput of one 2 GiB model file (a BF16-like safetensors of
# random-mantissa weights) to a vault on a MiniDFSCluster and to a vault on a local directory, in the same
# run, with the raw limits beside them.
#
#   bench/hdfs.sh                              # 2 GiB under /tmp/mvault-bench-hdfs
#   BENCH_GIB=1 BENCH_DIR=/x bench/hdfs.sh
#
# The cluster is tests/hdfs/minidfs.sh's (one NameNode and one DataNode in a JVM on 127.0.0.1, replication 1,
# the DataNode's blocks on the same disk as the fs vault), so the comparison is the client and protocol
# cost of HDFS against direct files on the same disk, not a network. Raw limits in the same run: `dd` to the
# disk (conv=fsync) and the DataNode's own write path from the hdfs-native Python client if installed
# (`pip install hdfs-native`; skipped otherwise, and said so). The page cache is not dropped; restores
# are flushed (mvault's default). Figures: MB = 10^6 bytes. Results: bench/results/hdfs.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mvault-bench-hdfs}
BENCH_GIB=${BENCH_GIB:-2}
MVAULT=${MVAULT:-$ROOT/target/release/mvault}
export MVAULT_PASSWORD=bench-password-not-secret
unset MVAULT_VAULT

log() { printf '==> %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ -x $MVAULT ]] || die "$MVAULT not found; build it with: cargo build --release -p mvault"
mkdir -p "$BENCH_DIR"
DFS=$BENCH_DIR/dfs

# --- data: one safetensors file of BENCH_GIB GiB (BF16 values with random mantissas) ---------------------
MODEL=$BENCH_DIR/model/model.safetensors
if [[ ! -s $MODEL || $(stat -c %s "$MODEL") -lt $((BENCH_GIB << 30)) ]]; then
  log "writing a $BENCH_GIB GiB BF16 safetensors file"
  python3 - "$MODEL" "$BENCH_GIB" <<'EOF'
import json, os, sys
import numpy as np
path, gib = sys.argv[1], float(sys.argv[2])
os.makedirs(os.path.dirname(path), exist_ok=True)
rng = np.random.default_rng(20261206)
n_tensors = 64
per = int(gib * (1 << 30)) // n_tensors // 2 * 2
header, off = {}, 0
for i in range(n_tensors):
    header[f"layer.{i}.weight"] = {"dtype": "BF16", "shape": [per // 2], "data_offsets": [off, off + per]}
    off += per
js = json.dumps(header).encode()
js += b" " * (-len(js) % 8)
with open(path, "wb") as f:
    f.write(len(js).to_bytes(8, "little") + js)
    for i in range(n_tensors):
        w = (rng.standard_normal(per // 2, dtype=np.float32) * 0.02).view(np.uint32)
        f.write((w >> 16).astype(np.uint16).tobytes())
EOF
fi
SIZE=$(stat -c %s "$MODEL")

mbps() { python3 -c "print(f'{$1 / 1e6 / $2:.0f}')"; }
timed() { local s; s=$(date +%s.%N); "$@" >/dev/null; python3 -c "print($(date +%s.%N) - $s)"; }

# --- the cluster ------------------------------------------------------------------------------------------------
"$ROOT/tests/hdfs/minidfs.sh" kill "$DFS" >/dev/null 2>&1 || true
rm -rf "$DFS"
URL=$("$ROOT/tests/hdfs/minidfs.sh" start "$DFS" | tail -1)
trap '"$ROOT/tests/hdfs/minidfs.sh" stop "$DFS" >/dev/null 2>&1 || true' EXIT
log "cluster at $URL"

# --- raw limits ---------------------------------------------------------------------------------------------
DD=$BENCH_DIR/dd.bin
dd_s=$(timed dd if=/dev/zero of="$DD" bs=16M count=$((BENCH_GIB * 64)) conv=fsync status=none)
rm -f "$DD"
raw_hdfs="skipped (pip install hdfs-native)"
if python3 -c 'import hdfs_native' 2>/dev/null; then
  raw_s=$(python3 - "$URL" "$MODEL" <<'EOF'
import sys, time
from hdfs_native import Client
url, path = sys.argv[1], sys.argv[2]
c = Client(url)
t = time.time()
with open(path, "rb") as src, c.create("/raw.bin") as w:
    while True:
        b = src.read(16 << 20)
        if not b:
            break
        w.write(b)
print(time.time() - t)
c.delete("/raw.bin")
EOF
)
  raw_hdfs="$(mbps "$SIZE" "$raw_s") MB/s"
fi

# --- mvault to HDFS and to a directory ------------------------------------------------------------------------
row() {
  local name=$1 vault=$2 out=$BENCH_DIR/restore-$1
  rm -rf "$out"
  "$MVAULT" --vault "$vault" init --quiet >/dev/null
  local b r
  b=$(timed "$MVAULT" --vault "$vault" backup "$MODEL" --quiet)
  r=$(timed "$MVAULT" --vault "$vault" restore latest --target "$out" --quiet)
  cmp "$MODEL" "$out$MODEL" || die "$name: the restore differs from the source"
  printf '%-28s %12s %12s\n' "$name" "$(mbps "$SIZE" "$b")" "$(mbps "$SIZE" "$r")"
  rm -rf "$out"
}
rm -rf "$BENCH_DIR/fs-vault"
{
  echo "bench/hdfs.sh $(date -u +%F) on $(nproc) cores; one $(python3 -c "print(f'{$SIZE/2**30:.2f}')") GiB BF16 safetensors file"
  echo "raw: dd conv=fsync $(mbps $((BENCH_GIB << 30)) "$dd_s") MB/s; hdfs-native Python client write: $raw_hdfs"
  printf '%-28s %12s %12s\n' "vault" "backup MB/s" "restore MB/s"
  row "fs (local directory)" "$BENCH_DIR/fs-vault"
  row "hdfs (MiniDFSCluster)" "$URL/bench-vault"
} | tee "$ROOT/bench/results/hdfs.txt"
