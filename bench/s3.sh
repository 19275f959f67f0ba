#!/usr/bin/env bash
# The S3 gateway's throughput (issue 8): a 2 GiB BF16 safetensors model file uploaded and downloaded with
# boto3 through `mvault server --s3-listen`, both as one PUT and as boto3's multipart transfer, beside the same
# file backed up and restored with the native CLI, in the same run on the same disk; with each one's stored
# bytes. Every download and restore is checked byte for byte.
#
#   bench/s3.sh                 # writes bench/results/s3.txt
#   S3_BENCH_GIB=1 bench/s3.sh  # a smaller model file
#   S3_BENCH_SMALL_ONLY=1 bench/s3.sh   # only the small-object part (bench/results/s3-small.txt)
#
# Small objects (issue 19, bench/s3small.py): one client on 127.0.0.1, p50 and p99 latency of PUT, GET and
# HEAD of 4 KiB objects, and 2,000 files of 1-64 KiB up and down with rclone (`apt-get install rclone`; boto3
# with 8 threads without it). Goals: GET within 2x of HEAD at p50, the many files down at least as fast as up.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${BENCH_DIR:-/tmp/mvault-bench-suite}/s3
GIB=${S3_BENCH_GIB:-2}
M=$ROOT/target/release/mvault
export MVAULT_PASSWORD=bench-password-not-secret
log() { printf '==> %s %s\n' "$(date +%T)" "$*" >&2; }
(cd "$ROOT" && cargo build -q --release -p mvault)
mkdir -p "$DIR"
MODEL=$DIR/model-${GIB}g.safetensors
if [[ ! -s $MODEL ]]; then
    log "making a ${GIB} GiB BF16 safetensors file (seeded N(0, 0.02) weights, 64 tensors)"
    python3 - "$MODEL" "$GIB" <<'EOF'
import json, struct, sys
import numpy as np
path, gib = sys.argv[1], int(sys.argv[2])
n_t = 64
per = (gib << 30) // n_t // 2  # BF16 elements per tensor
hdr, off = {}, 0
for i in range(n_t):
    hdr[f"layers.{i}.weight"] = {"dtype": "BF16", "shape": [per], "data_offsets": [off, off + 2 * per]}
    off += 2 * per
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for i in range(n_t):
        w = (np.random.default_rng(i).standard_normal(per).astype(np.float32) * 0.02).view(np.uint32) >> 16
        f.write(w.astype(np.uint16).tobytes())
EOF
fi
SIZE=$(stat -c %s "$MODEL")
W=$(mktemp -d "$DIR/run.XXXX")
SRV=
trap '[[ -n $SRV ]] && kill $SRV 2>/dev/null; rm -rf "$W"' EXIT
du_b() { du -sb "$1" | cut -f1; }
secs() { python3 -c "import time; print(time.time())"; }

# Small objects: latency per request and many-file throughput, on a gateway of its own.
small_objects() {
    local v=$W/gw-small
    "$M" -q --vault "$v" init >/dev/null
    "$M" -q --vault "$v" tenant create bench >/dev/null
    "$M" --vault "$v" --json token create --s3 --tenant bench --role writer >"$W/key.json"
    "$M" --vault "$v" --json server --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --state-dir "$W/state-small" >"$W/srv.json" 2>/dev/null &
    SRV=$!
    for _ in $(seq 100); do [[ -s $W/srv.json ]] && break; sleep 0.1; done
    python3 "$ROOT/bench/s3small.py" "$W"
    kill -TERM $SRV; wait $SRV 2>/dev/null || true
    SRV=
}
if [[ -n ${S3_BENCH_SMALL_ONLY:-} ]]; then
    log "gateway: small objects"
    small_objects | tee "$ROOT/bench/results/s3-small.txt"
    exit 0
fi

# Native CLI: backup and restore of the same file.
"$M" -q --vault "$W/native" init >/dev/null
t0=$(secs); "$M" -q --vault "$W/native" backup "$MODEL" >/dev/null; t1=$(secs)
"$M" -q --vault "$W/native" restore latest --target "$W/native-out" >/dev/null; t2=$(secs)
cmp "$MODEL" "$W/native-out$MODEL"
rm -rf "$W/native-out"
NB=$(python3 -c "print(f'{$SIZE/($t1-$t0)/1e6:.0f}')"); NR=$(python3 -c "print(f'{$SIZE/($t2-$t1)/1e6:.0f}')")
NS=$(du_b "$W/native")

# The gateway: one PUT, and boto3's multipart transfer (64 MiB parts, 4 at a time), each into its own vault.
run_gateway() {
    local mode=$1 v=$W/gw-$1
    "$M" -q --vault "$v" init >/dev/null
    "$M" -q --vault "$v" tenant create bench >/dev/null
    "$M" --vault "$v" --json token create --s3 --tenant bench --role writer >"$W/key.json"
    "$M" --vault "$v" --json server --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --state-dir "$W/state" >"$W/srv.json" 2>/dev/null &
    SRV=$!
    for _ in $(seq 100); do [[ -s $W/srv.json ]] && break; sleep 0.1; done
    python3 - "$mode" "$MODEL" "$W" <<'EOF'
import hashlib, json, sys, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
mode, model, w = sys.argv[1:]
k, s = json.load(open(f"{w}/key.json")), json.load(open(f"{w}/srv.json"))
c = boto3.client("s3", endpoint_url=s["s3"], aws_access_key_id=k["access_key_id"],
                 aws_secret_access_key=k["secret_access_key"], region_name="us-east-1", verify=s["cert"],
                 config=Config(s3={"addressing_style": "path"}))
c.create_bucket(Bucket="models")
cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
t0 = time.time()
if mode == "put":
    with open(model, "rb") as f:
        c.put_object(Bucket="models", Key="m/model.safetensors", Body=f)
else:
    c.upload_file(model, "models", "m/model.safetensors", Config=cfg)
t1 = time.time()
c.download_file("models", "m/model.safetensors", f"{w}/down.bin", Config=cfg)
t2 = time.time()
size = __import__("os").path.getsize(model)
print(f"{size / (t1 - t0) / 1e6:.0f} {size / (t2 - t1) / 1e6:.0f}")
EOF
    cmp "$MODEL" "$W/down.bin"
    rm -f "$W/down.bin"
    kill -TERM $SRV; wait $SRV 2>/dev/null || true
    SRV=
    printf '%s\n' "$(du_b "$v")"
}
log "gateway: single PUT"
PUT=$(run_gateway put | tr '\n' ' ')
log "gateway: multipart (64 MiB parts, 4 at a time)"
MP=$(run_gateway multipart | tr '\n' ' ')
read -r PU PD PS <<<"$PUT"
read -r MU MD MS <<<"$MP"
mkdir -p "$ROOT/bench/results"
{
    echo "S3 gateway vs native CLI: $(( SIZE >> 20 )) MiB BF16 safetensors, $(nproc) cores, $(date -u +%F)"
    printf '%-34s %12s %12s %14s %8s\n' "path" "up MB/s" "down MB/s" "stored bytes" "ratio"
    ratio() { python3 -c "print(f'{$SIZE/$1:.2f}x')"; }
    printf '%-34s %12s %12s %14s %8s\n' "mvault backup / restore (CLI)" "$NB" "$NR" "$NS" "$(ratio "$NS")"
    printf '%-34s %12s %12s %14s %8s\n' "boto3 put_object / download" "$PU" "$PD" "$PS" "$(ratio "$PS")"
    printf '%-34s %12s %12s %14s %8s\n' "boto3 multipart (64 MiB x4)" "$MU" "$MD" "$MS" "$(ratio "$MS")"
    small_objects
} | tee "$ROOT/bench/results/s3.txt"
