#!/usr/bin/env bash
# ModelVault redundancy benchmark: single store vs Reed-Solomon 4+2 vs 3-way replication,
# degraded restore, and whole-store repair speed, all on one generated data set.
#
#   bench/ec.sh                          # 1 GiB under /tmp/mvault-bench-ec
#   BENCH_GIB=4 BENCH_DIR=/x bench/ec.sh
#
# What it measures (MB = 10^6 bytes, MiB = 2^20 bytes):
#   1. For each layout (single store k=1; EC 4+2 over 6 stores in 3 domains a,a,b,b,c,c;
#      --replicas 3 over 3 stores in 3 domains): backup MB/s, bytes stored over all store
#      directories (du -sb) and overhead = stored / source, healthy restore MB/s.
#   2. EC 4+2 (and, for comparison, replicas 3): restore with m=2 stores gone (the two
#      directories are renamed away; for EC that is the whole domain `a`, including the
#      directory init used as --vault, so a surviving store is passed as --vault), the
#      ratio degraded / healthy (goal >= 60%), and a byte-for-byte check (diff -r).
#   3. EC 4+2 repair of a whole lost store: the directory is deleted and re-created empty,
#      the same disk's raw write speed is measured in it with dd (oflag=direct and
#      conv=fsync, 1 GiB in 16 MiB blocks), then `mvault repair` rebuilds it; speed =
#      bytes of the rebuilt directory / seconds (goal: >= half the speed of dd conv=fsync,
#      which writes the way a store is written: through the page cache, then fsync; the
#      O_DIRECT figure, which skips the page cache, is shown beside it). A second
#      store is then lost and repaired with --limit 20MiB to check the throttle.
#      Finally `mvault scrub` must find nothing missing or corrupt.
# All stores are directories on the disk that holds BENCH_DIR. The page cache is NOT
# dropped (not possible here): source and stores are warm in RAM, so read-side figures
# are warm-cache numbers. mvault fsyncs every object it writes, and restore fsyncs every
# file, so write-side figures include the disk. Logs: $BENCH_DIR/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mvault-bench-ec}
BENCH_GIB=${BENCH_GIB:-1}
BENCH_SEED=${BENCH_SEED:-7}
MVAULT=${MVAULT:-$ROOT/target/release/mvault}
THROTTLE=${THROTTLE:-20MiB}
export MVAULT_PASSWORD=bench-password-not-secret
unset MVAULT_VAULT

log() { printf '==> %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -x $MVAULT ]] || die "$MVAULT not found; build it with: cargo build --release -p mvault"
command -v python3 >/dev/null || die "python3 is needed to generate the data"
mkdir -p "$BENCH_DIR/logs"
LOGS=$BENCH_DIR/logs

# --- 1. data set (cached by size, seed and the generator below) ---------------------------
# Incompressible random files of 64-256 MiB (~88% of the bytes) plus 3 float32-like
# files (~12%): uniform mantissas, sign + exponent bytes drawn around |x| ~ 0.001-0.1,
# so they compress a little, like real weights. Deterministic for a (GIB, SEED).
GEN=$(cat <<'EOF'
import os, random, sys
out, gib, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
MIB = 1 << 20
rng = random.Random(seed)
total = int(gib * (1 << 30))
os.makedirs(out + "/random", exist_ok=True)
os.makedirs(out + "/weights", exist_ok=True)

def write(path, size, block):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(block(n))
            left -= n

# top byte of a little-endian float32: sign bit + exponent bits 7..1; 0x3c/0x3d ~ 2^-7..2^-3
top = bytes((u & 0x80) | (0x3b, 0x3c, 0x3c, 0x3c, 0x3d, 0x3d, 0x3e, 0x3c)[u & 7] for u in range(256))
def floats(n):
    b = bytearray(rng.randbytes(n))
    b[3::4] = b[3::4].translate(top)
    return bytes(b)

float_bytes = total * 12 // 100
for i in range(3):
    size = (float_bytes // 3) // 4 * 4
    write(f"{out}/weights/layer{i}.f32", size, floats)
left = total - 3 * ((float_bytes // 3) // 4 * 4)
i = 0
while left > 0:
    size = left if left <= 256 * MIB else rng.randint(64 * MIB, min(256 * MIB, left - 64 * MIB))
    write(f"{out}/random/blob{i:02d}.bin", size, rng.randbytes)
    left -= size
    i += 1
EOF
)
DATA=$BENCH_DIR/data
stamp="$BENCH_GIB $BENCH_SEED $(printf '%s' "$GEN" | sha256sum | cut -c1-16)"
if [[ ! -f $DATA/.done || $(cat "$DATA/.done") != "$stamp" ]]; then
    log "generating $BENCH_GIB GiB of data in $DATA"
    rm -rf "$DATA"
    python3 -c "$GEN" "$DATA/src" "$BENCH_GIB" "$BENCH_SEED"
    echo "$stamp" >"$DATA/.done"
fi
SRC=$DATA/src
SRC_BYTES=$(find "$SRC" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
SRC_FILES=$(find "$SRC" -type f | wc -l)
log "source: $SRC ($SRC_FILES files, $SRC_BYTES bytes)"
LOADAVG=$(cut -d' ' -f1 /proc/loadavg)
awk -v l="$LOADAVG" 'BEGIN {exit !(l > 0.5)}' &&
    log "warning: load average is $LOADAVG; other processes will skew the timings"

# --- 2. helpers ---------------------------------------------------------------------------
# timed NAME CMD...: sync, run CMD with stdout+stderr to $LOGS/NAME.log, set SECS (wall).
timed() {
    local name=$1
    shift
    sync # do not bill the previous step's write-back to this one
    local t0=$EPOCHREALTIME
    if ! "$@" >"$LOGS/$name.log" 2>&1; then
        log "FAILED ($name): $*"
        tail -n 20 "$LOGS/$name.log" >&2
        exit 1
    fi
    SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}')
}
# mvault with its JSON on stdout only (stderr kept apart so the JSON parses)
mvj() { "$MVAULT" -q --json "$@" 2>>"$LOGS/stderr.log"; }
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }
div() { awk -v a="$1" -v b="$2" -v s="${3:-1}" -v f="${4:-%.1f}" 'BEGIN {printf f, a / b / s}'; }
dirs_bytes() { du -sbc "$@" | tail -n 1 | cut -f1; }
same() { if diff -r -q "$SRC" "$1$SRC" >"$LOGS/$2.diff" 2>&1; then echo pass; else echo FAIL; fi; }

declare -A R # R[layout,metric]
TARGET=$BENCH_DIR/restore

# layout NAME NSTORES INIT-ARGS...: fresh stores s0..s(N-1) under $BENCH_DIR/NAME, init
# with --vault s0, backup, stored bytes, healthy restore.
layout() {
    local name=$1 n=$2
    shift 2
    local w=$BENCH_DIR/$name
    rm -rf "$w"
    mkdir -p "$w"
    log "$name: init, backup, restore"
    "$MVAULT" -q --vault "$w/s0" init "$@" >"$LOGS/$name-init.log" 2>&1 || die "init failed: see $LOGS/$name-init.log"
    timed "$name-backup" "$MVAULT" -q --vault "$w/s0" backup "$SRC"
    R[$name,backup]=$(div "$SRC_BYTES" "$SECS" 1e6)
    local stores=()
    for ((i = 0; i < n; i++)); do stores+=("$w/s$i"); done
    R[$name,stored]=$(dirs_bytes "${stores[@]}")
    R[$name,overhead]=$(div "${R[$name,stored]}" "$SRC_BYTES" 1 %.2fx)
    rm -rf "$TARGET"
    timed "$name-restore" "$MVAULT" -q --vault "$w/s0" restore latest --target "$TARGET"
    R[$name,restore_s]=$SECS
    R[$name,restore]=$(div "$SRC_BYTES" "$SECS" 1e6)
    R[$name,restore_ok]=$(same "$TARGET" "$name-restore")
    rm -rf "$TARGET"
}

# degraded NAME VAULT-STORE LOST...: rename LOST stores away, restore via VAULT-STORE,
# check the bytes, put the stores back.
degraded() {
    local name=$1 vault=$BENCH_DIR/$1/$2
    shift 2
    local s
    log "$name: degraded restore without $*"
    for s in "$@"; do mv "$BENCH_DIR/$name/$s" "$BENCH_DIR/$name/$s.gone"; done
    R[$name,degraded_packs]=$(mvj --vault "$vault" status | json 'd["degraded_packs"]')
    rm -rf "$TARGET"
    timed "$name-degraded-restore" "$MVAULT" -q --vault "$vault" restore latest --target "$TARGET"
    R[$name,degraded]=$(div "$SRC_BYTES" "$SECS" 1e6)
    R[$name,ratio]=$(div "${R[$name,restore_s]}" "$SECS" 0.01 %.0f%%)
    R[$name,degraded_ok]=$(same "$TARGET" "$name-degraded-restore")
    rm -rf "$TARGET"
    for s in "$@"; do mv "$BENCH_DIR/$name/$s.gone" "$BENCH_DIR/$name/$s"; done
}

# --- 3. layouts ---------------------------------------------------------------------------
layout single 1
EC=$BENCH_DIR/ec42
ec_stores=()
doms=(a a b b c c)
for i in 0 1 2 3 4 5; do ec_stores+=(--store "$EC/s$i#domain=${doms[$i]}"); done
layout ec42 6 --ec 4+2 "${ec_stores[@]}"
R3=$BENCH_DIR/rep3
layout rep3 3 --replicas 3 --store "$R3/s0#domain=a" --store "$R3/s1#domain=b" --store "$R3/s2#domain=c"

degraded ec42 s2 s0 s1 # whole domain a, including the init --vault directory
degraded rep3 s2 s0 s1

# --- 4. EC 4+2: repair of a whole lost store ----------------------------------------------
log "ec42: lose s3, measure the disk with dd, repair"
rm -rf "$EC/s3"
mkdir "$EC/s3"
sync
dd_mb_s() { # dd's own figure, converted to MB/s
    dd if=/dev/zero of="$EC/s3/ddtest" bs=16M count=64 "$1" 2>&1 | tail -n 1 |
        awk '{v = $(NF-1); u = $NF; m = (u ~ /^GB/) ? 1000 : (u ~ /^MB/) ? 1 : (u ~ /^kB/) ? 0.001 : (u ~ /^GiB/) ? 1073.741824 : (u ~ /^MiB/) ? 1.048576 : 0; printf "%.1f", v * m}'
    rm -f "$EC/s3/ddtest"
    sync
}
DD_DIRECT=$(dd_mb_s oflag=direct)
DD_FSYNC=$(dd_mb_s conv=fsync)
[[ -z $(ls -A "$EC/s3") ]] || die "$EC/s3 is not empty before repair"
sync
t0=$EPOCHREALTIME
mvj --vault "$EC/s0" repair >"$LOGS/ec42-repair.json" || die "repair failed: see $LOGS/ec42-repair.json, $LOGS/stderr.log"
REP_WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}')
REP_SECS=$(json 'd["seconds"]' <"$LOGS/ec42-repair.json")
REP_SHARDS=$(json 'd["shards_repaired"]' <"$LOGS/ec42-repair.json")
REP_WRITTEN=$(json 'd["bytes_written"]' <"$LOGS/ec42-repair.json")
REP_BYTES=$(dirs_bytes "$EC/s3")
REP_EXPECT=$(dirs_bytes "$EC/s2") # a sibling store that was never lost
REP_MB_S=$(div "$REP_BYTES" "$REP_SECS" 1e6)
REP_MB_S_WALL=$(div "$REP_BYTES" "$REP_WALL" 1e6)
REP_VS_DISK=$(div "$REP_MB_S" "$DD_FSYNC" 0.01 %.0f%%)
REP_VS_DISK_WALL=$(div "$REP_MB_S_WALL" "$DD_FSYNC" 0.01 %.0f%%)
REP_VS_DIRECT=$(div "$REP_MB_S" "$DD_DIRECT" 0.01 %.0f%%)

log "ec42: lose s4, repair with --limit $THROTTLE"
rm -rf "$EC/s4"
mkdir "$EC/s4"
sync
t0=$EPOCHREALTIME
mvj --vault "$EC/s0" repair --limit "$THROTTLE" >"$LOGS/ec42-repair-limit.json" || die "throttled repair failed: see $LOGS/stderr.log"
LIM_WALL=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.3f", b - a}')
LIM_SECS=$(json 'd["seconds"]' <"$LOGS/ec42-repair-limit.json")
LIM_WRITTEN=$(json 'd["bytes_written"]' <"$LOGS/ec42-repair-limit.json")
LIM_BYTES=$(dirs_bytes "$EC/s4")
LIM_MIB_S=$(div "$LIM_BYTES" "$LIM_SECS" 1048576 %.2f)
LIM_MIB_S_WALL=$(div "$LIM_BYTES" "$LIM_WALL" 1048576 %.2f)

log "ec42: status and scrub after the repairs"
AFTER_DEGRADED=$(mvj --vault "$EC/s0" status | json 'd["degraded_packs"]')
mvj --vault "$EC/s0" scrub >"$LOGS/ec42-scrub.json" || die "scrub failed: see $LOGS/stderr.log"
SCRUB=$(json '"%d shards checked, %d missing, %d corrupt, %d unrecoverable" % (d["shards_checked"], len(d["missing"]), len(d["corrupt"]), len(d["unrecoverable"]))' <"$LOGS/ec42-scrub.json")
rm -rf "$TARGET"
timed ec42-final-restore "$MVAULT" -q --vault "$EC/s0" restore latest --target "$TARGET"
FINAL_OK=$(same "$TARGET" ec42-final-restore)
rm -rf "$TARGET"

# --- 5. report ----------------------------------------------------------------------------
mib() { div "$1" 1048576 1 %.1f; }
row() { printf '| %-38s | %-14s | %-24s | %-16s |\n' "$@"; }
echo
echo "source: $(mib "$SRC_BYTES") MiB in $SRC_FILES files ($BENCH_GIB GiB requested, seed $BENCH_SEED);" \
    "MB = 10^6 B; warm page cache (not dropped); $(nproc) CPUs; load at start $LOADAVG"
echo "mvault: $("$MVAULT" --version) (binary of $(date -r "$MVAULT" -Iseconds))"
echo
row "" "single (k=1)" "EC 4+2 (6 stores/3 dom)" "replicas 3"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..40})" "$(printf -- '-%.0s' {1..16})" "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..18})"
row "backup MB/s" "${R[single,backup]}" "${R[ec42,backup]}" "${R[rep3,backup]}"
row "stored MiB (all store dirs)" "$(mib "${R[single,stored]}")" "$(mib "${R[ec42,stored]}")" "$(mib "${R[rep3,stored]}")"
row "overhead stored / source" "${R[single,overhead]}" "${R[ec42,overhead]}" "${R[rep3,overhead]}"
row "healthy restore MB/s" "${R[single,restore]} (${R[single,restore_ok]})" "${R[ec42,restore]} (${R[ec42,restore_ok]})" "${R[rep3,restore]} (${R[rep3,restore_ok]})"
row "degraded packs with 2 stores gone" "-" "${R[ec42,degraded_packs]}" "${R[rep3,degraded_packs]}"
row "restore MB/s with 2 stores gone" "-" "${R[ec42,degraded]} (${R[ec42,degraded_ok]})" "${R[rep3,degraded]} (${R[rep3,degraded_ok]})"
row "degraded / healthy (goal >= 60%)" "-" "${R[ec42,ratio]}" "${R[rep3,ratio]}"
echo
echo "EC 4+2, one whole store lost and rebuilt into an empty directory on the same disk:"
echo
printf '| %-44s | %-58s |\n' "" "value"
printf '|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..60})"
printf '| %-44s | %-58s |\n' \
    "disk write, dd bs=16M count=64 oflag=direct" "$DD_DIRECT MB/s" \
    "disk write, dd bs=16M count=64 conv=fsync" "$DD_FSYNC MB/s" \
    "rebuilt store (du -sb; a healthy sibling)" "$(mib "$REP_BYTES") MiB ($(mib "$REP_EXPECT") MiB)" \
    "repair: shards, bytes_written" "$REP_SHARDS, $(mib "$REP_WRITTEN") MiB" \
    "repair time (report / wall)" "$(div "$REP_SECS" 1 1 %.2f) s / $REP_WALL s" \
    "repair MB/s (report secs / wall)" "$REP_MB_S / $REP_MB_S_WALL" \
    "repair vs dd conv=fsync (goal >= 50%)" "$REP_VS_DISK / $REP_VS_DISK_WALL" \
    "repair vs dd oflag=direct (no page cache)" "$REP_VS_DIRECT" \
    "repair --limit $THROTTLE: MiB/s (report / wall)" "$LIM_MIB_S / $LIM_MIB_S_WALL (bytes $(mib "$LIM_BYTES") MiB)" \
    "degraded packs after both repairs" "$AFTER_DEGRADED" \
    "scrub after repairs" "$SCRUB" \
    "restore after repairs byte-identical" "$FINAL_OK"

fail=0
for k in single,restore_ok ec42,restore_ok rep3,restore_ok ec42,degraded_ok rep3,degraded_ok; do
    [[ ${R[$k]} == pass ]] || { log "restore check $k: FAIL (see $LOGS/*.diff)"; fail=1; }
done
[[ $FINAL_OK == pass ]] || { log "restore after repair: FAIL"; fail=1; }
exit $fail
