#!/usr/bin/env bash
# ModelVault on real model data: stored size and throughput of mvault, restic, `zstd -3` and zipnn.
#
#   bench/model.sh                  # table on stdout, JSON in bench/results/model.json
#   MVAULT_BIN=/path/to/mvault bench/model.sh
#   MVAULT_MODEL_DATA=/x bench/model.sh      # where bench/models.py keeps the data (default ~/.cache/mvault-models)
#   BENCH_SCRATCH=/y bench/model.sh          # scratch (default /tmp/mvault-model-bench, removed on success)
#   RESTIC_MAX=0 bench/model.sh              # skip the extra `restic --compression max` runs
#
# Never builds anything: it uses the existing release binary (target/release/mvault, or $MVAULT_BIN) and stops
# if it is missing. The binary is copied to scratch first, so a concurrent `cargo build` cannot swap it mid-run.
#
# Data sets (bench/models.py, real all-MiniLM-L6-v2 weights): minilm bf16, fp32, f16 and gguf (one file each),
# and three FP32 checkpoint series (full, partial, lora), 4 steps each, backed up as 4 snapshots into one repo.
#
# Per data set and tool:
#   stored  mvault, restic: du -sb of the repository after the backup(s) (all its metadata included);
#           mvault's own summary.bytes_stored is kept in the JSON too.
#           zstd -3, zipnn: size of the compressed file (series: the 4 steps compressed one by one, summed).
#   speed   mvault, restic: wall time of the whole `backup` / `restore` command (key derivation and
#           startup included) -> MB/s of original bytes. zstd: wall time of `zstd -3 -c F >out` and
#           `zstd -d -c out >F'`. zipnn: read file + compress + write, and read + decompress + write, timed
#           inside Python (interpreter start and import not counted).
#   bound   `mvault inspect`: float_bound (the per-tensor entropy bound that inspect reports) next to what the
#           codec stores for the float tensors (single-file sets only).
#   series  stored size of all 4 steps in one repo vs 4 x the size after the first step ("independent").
# Every restore / decompression is compared byte for byte (cmp); any mismatch stops the run with an error.
# MB = 10^6 bytes. The page cache is warm (not dropped): the source files are in RAM for every tool.
# Contention: for each set the run records the CPU other processes used meanwhile (machine busy time less this
# script's own) and whether cargo/rustc ran; it warns when others took more than 15% of the CPUs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${BENCH_SCRATCH:-/tmp/mvault-model-bench}
MVAULT_SRC=${MVAULT_BIN:-$ROOT/target/release/mvault}
RESTIC_MAX=${RESTIC_MAX:-1}
OUT_JSON=$ROOT/bench/results/model.json
PASSWORD=bench-password-not-secret
export MVAULT_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD
unset MVAULT_VAULT RESTIC_REPOSITORY

log() { printf '==> %s %s\n' "$(date +%T)" "$*" >&2; }
die() {
    printf '\n!!! %s\n' "$*" >&2
    printf '!!! scratch kept for inspection: %s\n' "$SCRATCH" >&2
    exit 1
}

# --- 1. tools ----------------------------------------------------------------------------------------------
[[ -x $MVAULT_SRC ]] || die "no mvault binary at $MVAULT_SRC: build it first (this script never runs cargo)"
need=()
command -v restic >/dev/null || need+=(restic)
command -v zstd >/dev/null || need+=(zstd)
[[ -x /usr/bin/time ]] || need+=(time)
if ((${#need[@]})); then
    log "installing ${need[*]} (Debian packages)"
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

ZIPNN_NOTE=""
if ! python3 -c 'import zipnn' 2>/dev/null; then
    log "installing zipnn (wheel only: the source release would pull in torch)"
    if ! python3 -m pip install -q --only-binary=:all: zipnn >&2; then
        ZIPNN_NOTE="no zipnn wheel for $(python3 -V 2>&1); zipnn skipped"
    fi
fi
ZIPNN_VERSION=n/a
if [[ -z $ZIPNN_NOTE ]]; then
    if python3 -c 'import zipnn' 2>/dev/null; then
        ZIPNN_VERSION=$(python3 -c 'import importlib.metadata as m; print(m.version("zipnn"))')
    else
        ZIPNN_NOTE="zipnn installed but does not import; zipnn skipped"
    fi
fi
[[ -z $ZIPNN_NOTE ]] || log "$ZIPNN_NOTE"

# --- 2. data and scratch -----------------------------------------------------------------------------------
log "model data (bench/models.py)"
DATA=$(python3 "$ROOT/bench/models.py" | tail -n 1)
[[ -f $DATA/DONE ]] || die "bench/models.py did not finish ($DATA/DONE missing)"

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
MV=$SCRATCH/mvault
cp "$MVAULT_SRC" "$MV"
MVAULT_BUILT=$(date -r "$MVAULT_SRC" -Iseconds) # before a concurrent build can touch it
REC=$SCRATCH/records.tsv
: >"$REC"
export RESTIC_CACHE_DIR=$SCRATCH/restic-cache

# rec SET KEY VALUE: one measurement.
rec() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$REC"; }
# jget FILE EXPR: a value from a JSON file (d is the document).
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
size() { stat -c %s "$1"; }
dusb() { du -sb "$1" | cut -f1; }

# timed OUT CMD...: run CMD with stdout to OUT (stderr to OUT.err), set SECS (wall) and CPU (user+sys).
timed() {
    local out=$1
    shift
    sync # do not bill the previous step's write-back to this one
    local t0 t1
    t0=$(date +%s%N)
    if ! /usr/bin/time -f '%U %S' -o "$SCRATCH/time.out" "$@" >"$out" 2>"$out.err"; then
        tail -n 20 "$out.err" >&2
        die "FAILED: $*"
    fi
    t1=$(date +%s%N)
    SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
    CPU=$(awk '{ printf "%.2f", $1 + $2 }' "$SCRATCH/time.out")
}

# same A B: byte-exact or die.
same() {
    [[ -f $2 ]] || die "RESTORE FAILED: $2 does not exist (expected a copy of $1)"
    cmp -s "$1" "$2" || die "RESTORE MISMATCH: $2 differs from $1"
}

# machine_cpu: CPU seconds the whole machine has been busy (user+nice+system+irq+softirq) since boot.
machine_cpu() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{ printf "%.2f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat; }
# own_cpu: CPU seconds of this shell and all its finished children, from `times` saved in $SCRATCH/times
# (run `times` in this shell, not in a pipe: a subshell would report its own, empty, account).
own_cpu() {
    awk '{ for (i = 1; i <= NF; i++) { split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2] } }
         END { printf "%.2f", t }' "$SCRATCH/times"
}
cpu_busy() { # CPU use by other processes over 2 s, in percent
    local b0 t0 b1 t1
    read -r b0 t0 < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep 2
    read -r b1 t1 < <(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    echo $((100 * (b1 - b0) / (t1 - t0)))
}
CPU_BUSY_BEFORE=$(cpu_busy)
((CPU_BUSY_BEFORE < 10)) || log "warning: CPUs are ${CPU_BUSY_BEFORE}% busy before the run; timings will be skewed"

# zipnn helper: `zipnn_helper.py c|d SRC DST DTYPE` prints {"seconds", "cpu", "dtype_arg"}.
cat >"$SCRATCH/zipnn_helper.py" <<'EOF'
import inspect, json, os, sys, time
from zipnn import ZipNN

mode, src, dst, dtype = sys.argv[1:5]
params = inspect.signature(ZipNN).parameters
kwargs, dtype_arg = {}, "none: this zipnn version has no dtype option for byte input"
if "bytearray_dtype" in params:  # newer zipnn releases (not installable here as wheels; untested path)
    kwargs["bytearray_dtype"] = dtype
    dtype_arg = f"bytearray_dtype={dtype}"
z = ZipNN(**kwargs)  # defaults otherwise: byte input, byte grouping, zstd level 3
c0, t0 = os.times(), time.perf_counter()
with open(src, "rb") as f:
    data = f.read()
out = z.compress(data) if mode == "c" else z.decompress(data)
with open(dst, "wb") as f:
    f.write(out)
t1, c1 = time.perf_counter(), os.times()
cpu = (c1.user - c0.user) + (c1.system - c0.system)
print(json.dumps({"seconds": t1 - t0, "cpu": cpu, "dtype_arg": dtype_arg}))
EOF

# --- 3. runs -----------------------------------------------------------------------------------------------
# mvault_run SET FILE...: one vault, one snapshot per FILE (in order), then every snapshot restored and compared.
mvault_run() {
    local set=$1
    shift
    local vault=$SCRATCH/$set/mvault n=0 orig=0 bsecs=0 bcpu=0 rsecs=0 rcpu=0 stored_sum=0 ids=() f
    mkdir -p "$SCRATCH/$set"
    "$MV" -q --vault "$vault" init >/dev/null
    for f in "$@"; do
        n=$((n + 1))
        timed "$SCRATCH/$set/mv-backup-$n.json" "$MV" -q --json --vault "$vault" backup "$f"
        bsecs=$(awk -v a="$bsecs" -v b="$SECS" 'BEGIN { print a + b }')
        bcpu=$(awk -v a="$bcpu" -v b="$CPU" 'BEGIN { print a + b }')
        ids+=("$(jget "$SCRATCH/$set/mv-backup-$n.json" 'd["snapshot_id"]')")
        stored_sum=$((stored_sum + $(jget "$SCRATCH/$set/mv-backup-$n.json" 'd["summary"]["bytes_stored"]')))
        orig=$((orig + $(size "$f")))
        rec "$set" "mvault.bytes_stored.$n" "$(jget "$SCRATCH/$set/mv-backup-$n.json" 'd["summary"]["bytes_stored"]')"
        rec "$set" "mvault.reported_seconds.$n" "$(jget "$SCRATCH/$set/mv-backup-$n.json" 'd["summary"]["seconds"]')"
        rec "$set" "mvault.du.$n" "$(dusb "$vault")"
    done
    rec "$set" mvault.stored "$(dusb "$vault")"
    rec "$set" mvault.bytes_stored_sum "$stored_sum"
    rec "$set" mvault.backup_s "$bsecs"
    rec "$set" mvault.backup_cpu_s "$bcpu"
    n=0
    for f in "$@"; do
        n=$((n + 1))
        local target=$SCRATCH/$set/restore
        rm -rf "$target"
        timed "$SCRATCH/$set/mv-restore-$n.json" "$MV" -q --json --vault "$vault" restore "${ids[$((n - 1))]}" --target "$target"
        rec "$set" "mvault.restore_seconds.$n" "$SECS"
        rsecs=$(awk -v a="$rsecs" -v b="$SECS" 'BEGIN { print a + b }')
        rcpu=$(awk -v a="$rcpu" -v b="$CPU" 'BEGIN { print a + b }')
        same "$f" "$target$f"
        rm -rf "$target"
    done
    rec "$set" mvault.restore_s "$rsecs"
    rec "$set" mvault.restore_cpu_s "$rcpu"
    rec "$set" mvault.verified "$n"
    rm -rf "$vault"
}

# restic_run SET MODE FILE...: MODE auto (backup + restore + compare) or max (backup only, for the size).
restic_run() {
    local set=$1 mode=$2
    shift 2
    local repo=$SCRATCH/$set/restic-$mode key=restic n=0 bsecs=0 bcpu=0 rsecs=0 rcpu=0 ids=() f
    [[ $mode == auto ]] || key=restic_$mode
    mkdir -p "$SCRATCH/$set"
    restic -q init --repo "$repo" >/dev/null
    for f in "$@"; do
        n=$((n + 1))
        timed "$SCRATCH/$set/$key-backup-$n.json" restic --repo "$repo" --compression "$mode" backup --json "$f"
        bsecs=$(awk -v a="$bsecs" -v b="$SECS" 'BEGIN { print a + b }')
        bcpu=$(awk -v a="$bcpu" -v b="$CPU" 'BEGIN { print a + b }')
        tail -n 1 "$SCRATCH/$set/$key-backup-$n.json" >"$SCRATCH/$set/$key-summary-$n.json"
        ids+=("$(jget "$SCRATCH/$set/$key-summary-$n.json" 'd["snapshot_id"]')")
        rec "$set" "$key.reported_seconds.$n" "$(jget "$SCRATCH/$set/$key-summary-$n.json" 'd["total_duration"]')"
        rec "$set" "$key.du.$n" "$(dusb "$repo")"
    done
    rec "$set" "$key.stored" "$(dusb "$repo")"
    rec "$set" "$key.backup_s" "$bsecs"
    rec "$set" "$key.backup_cpu_s" "$bcpu"
    if [[ $mode == auto ]]; then
        n=0
        for f in "$@"; do
            n=$((n + 1))
            local target=$SCRATCH/$set/restore
            rm -rf "$target"
            timed /dev/null restic -q --repo "$repo" restore "${ids[$((n - 1))]}" --target "$target"
            rec "$set" "$key.restore_seconds.$n" "$SECS"
            rsecs=$(awk -v a="$rsecs" -v b="$SECS" 'BEGIN { print a + b }')
            rcpu=$(awk -v a="$rcpu" -v b="$CPU" 'BEGIN { print a + b }')
            same "$f" "$target$f"
            rm -rf "$target"
        done
        rec "$set" "$key.restore_s" "$rsecs"
        rec "$set" "$key.restore_cpu_s" "$rcpu"
        rec "$set" "$key.verified" "$n"
    fi
    rm -rf "$repo"
}

# zstd_run SET FILE...: each file compressed on its own with `zstd -3` (one thread, the CLI default).
zstd_run() {
    local set=$1
    shift
    local n=0 stored=0 c=0 d=0 ccpu=0 dcpu=0 f z=$SCRATCH/$set/f.zst r=$SCRATCH/$set/f.out
    mkdir -p "$SCRATCH/$set"
    for f in "$@"; do
        n=$((n + 1))
        timed "$z" zstd -q -3 -c "$f"
        c=$(awk -v a="$c" -v b="$SECS" 'BEGIN { print a + b }')
        ccpu=$(awk -v a="$ccpu" -v b="$CPU" 'BEGIN { print a + b }')
        stored=$((stored + $(size "$z")))
        timed "$r" zstd -q -d -c "$z"
        d=$(awk -v a="$d" -v b="$SECS" 'BEGIN { print a + b }')
        dcpu=$(awk -v a="$dcpu" -v b="$CPU" 'BEGIN { print a + b }')
        same "$f" "$r"
        rm -f "$z" "$r"
    done
    rec "$set" zstd.stored "$stored"
    rec "$set" zstd.compress_s "$c"
    rec "$set" zstd.decompress_s "$d"
    rec "$set" zstd.compress_cpu_s "$ccpu"
    rec "$set" zstd.decompress_cpu_s "$dcpu"
    rec "$set" zstd.verified "$n"
}

# zipnn_run SET DTYPE FILE...: each file compressed on its own with zipnn's defaults.
zipnn_run() {
    local set=$1 dtype=$2
    shift 2
    [[ -z $ZIPNN_NOTE ]] || return 0
    local n=0 stored=0 c=0 d=0 ccpu=0 dcpu=0 f z=$SCRATCH/$set/f.znn r=$SCRATCH/$set/f.out js
    mkdir -p "$SCRATCH/$set"
    for f in "$@"; do
        n=$((n + 1))
        sync
        js=$(python3 "$SCRATCH/zipnn_helper.py" c "$f" "$z" "$dtype") || die "zipnn compress failed on $f"
        c=$(awk -v a="$c" -v b="$(jq_ "$js" seconds)" 'BEGIN { print a + b }')
        ccpu=$(awk -v a="$ccpu" -v b="$(jq_ "$js" cpu)" 'BEGIN { print a + b }')
        stored=$((stored + $(size "$z")))
        sync
        js=$(python3 "$SCRATCH/zipnn_helper.py" d "$z" "$r" "$dtype") || die "zipnn decompress failed on $f"
        d=$(awk -v a="$d" -v b="$(jq_ "$js" seconds)" 'BEGIN { print a + b }')
        dcpu=$(awk -v a="$dcpu" -v b="$(jq_ "$js" cpu)" 'BEGIN { print a + b }')
        same "$f" "$r"
        rm -f "$z" "$r"
    done
    rec "$set" zipnn.stored "$stored"
    rec "$set" zipnn.compress_s "$c"
    rec "$set" zipnn.decompress_s "$d"
    rec "$set" zipnn.compress_cpu_s "$ccpu"
    rec "$set" zipnn.decompress_cpu_s "$dcpu"
    rec "$set" zipnn.verified "$n"
    rec "$set" zipnn.dtype_arg "$(jq_ "$js" dtype_arg)"
}
jq_() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

run_set() { # run_set SET DTYPE FILE...
    local set=$1 dtype=$2
    shift 2
    local orig=0 f
    for f in "$@"; do orig=$((orig + $(size "$f"))); done
    rec "$set" files "$#"
    rec "$set" original "$orig"
    rec "$set" step_bytes "$(size "$1")"
    # Contention: whether a Rust build runs at the set's start or end, and the CPU that other processes used
    # meanwhile (the machine's busy time from /proc/stat less this script's own, children included).
    rec "$set" build_running "$(pgrep -x 'cargo|rustc' >/dev/null && echo yes || echo no)"
    local m0 o0 w0
    m0=$(machine_cpu)
    times >"$SCRATCH/times"
    o0=$(own_cpu)
    w0=$(date +%s%N)
    log "$set: mvault"
    mvault_run "$set" "$@"
    log "$set: restic (compression auto)"
    restic_run "$set" auto "$@"
    if [[ $RESTIC_MAX == 1 ]]; then
        log "$set: restic (compression max, size only)"
        restic_run "$set" max "$@"
    fi
    log "$set: zstd -3"
    zstd_run "$set" "$@"
    if [[ -z $ZIPNN_NOTE ]]; then
        log "$set: zipnn"
        zipnn_run "$set" "$dtype" "$@"
    fi
    if (($# == 1)); then
        log "$set: mvault inspect"
        "$MV" -q --json inspect "$1" >"$SCRATCH/$set/inspect.json" || die "mvault inspect failed on $1"
        local k
        for k in file_bytes float_bytes float_stored float_bound other_bytes other_stored encode_seconds decode_seconds; do
            rec "$set" "inspect.$k" "$(jget "$SCRATCH/$set/inspect.json" "d['$k']")"
        done
    fi
    local m1 o1 w1
    m1=$(machine_cpu)
    times >"$SCRATCH/times"
    o1=$(own_cpu)
    w1=$(date +%s%N)
    rec "$set" others_cpu_pct "$(awk -v m="$m1" -v n="$m0" -v o="$o1" -v p="$o0" -v a="$w0" -v b="$w1" -v c="$(nproc)" \
        'BEGIN { x = 100 * ((m - n) - (o - p)) / ((b - a) / 1e9 * c); printf "%.1f", x < 0 ? 0 : x }')"
    rec "$set" build_running_end "$(pgrep -x 'cargo|rustc' >/dev/null && echo yes || echo no)"
    rm -rf "${SCRATCH:?}/$set"
}

T_START=$(date +%s)
run_set bf16 bfloat16 "$DATA/minilm/bf16/model.safetensors"
run_set fp32 float32 "$DATA/minilm/fp32/model.safetensors"
run_set f16 float16 "$DATA/minilm/f16/model.safetensors"
run_set gguf float16 "$DATA/minilm/gguf/model.gguf"
for s in full partial lora; do
    run_set "series-$s" float32 "$DATA"/series/$s/step-{1,2,3,4}/model.safetensors
done
T_TOTAL=$(($(date +%s) - T_START))
CPU_BUSY_AFTER=$(cpu_busy)

# --- 4. report ---------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT_JSON")"
MVAULT_VERSION="$("$MV" --version) (binary $MVAULT_SRC of $MVAULT_BUILT, sha256 $(sha256sum "$MV" | cut -c1-16))" \
    RESTIC_VERSION=$(restic version | head -n 1) ZSTD_VERSION=$(zstd -V | head -n 1) \
    ZIPNN_VERSION=$ZIPNN_VERSION ZIPNN_NOTE=$ZIPNN_NOTE DATA=$DATA RESTIC_MAX=$RESTIC_MAX \
    CPU_BUSY_BEFORE=$CPU_BUSY_BEFORE CPU_BUSY_AFTER=$CPU_BUSY_AFTER T_TOTAL=$T_TOTAL \
    GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) \
    python3 - "$REC" "$OUT_JSON" <<'EOF'
import datetime, json, os, platform, sys
from collections import OrderedDict

sets = OrderedDict()
for line in open(sys.argv[1]):
    s, k, v = line.rstrip("\n").split("\t")
    try:
        v = float(v) if any(c in v for c in ".eE") else int(v)
    except ValueError:
        pass
    sets.setdefault(s, {})[k] = v

E = os.environ
zipnn_on = not E["ZIPNN_NOTE"]
restic_max = E["RESTIC_MAX"] == "1"
MB = 1e6
tools = ["mvault", "restic"] + (["restic_max"] if restic_max else []) + ["zstd"] + (["zipnn"] if zipnn_on else [])
label = {"mvault": "mvault", "restic": "restic", "restic_max": "restic max", "zstd": "zstd -3", "zipnn": "zipnn"}

out = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
       "machine": {"cpus": os.cpu_count(), "mem_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                   "kernel": platform.release(), "cpu_busy_pct_before": int(E["CPU_BUSY_BEFORE"]),
                   "cpu_busy_pct_after": int(E["CPU_BUSY_AFTER"])},
       "versions": {"mvault": E["MVAULT_VERSION"], "git_head": E["GIT_HEAD"], "restic": E["RESTIC_VERSION"],
                    "zstd": E["ZSTD_VERSION"], "zipnn": E["ZIPNN_VERSION"]},
       "zipnn_note": E["ZIPNN_NOTE"] or None,
       "data": E["DATA"], "page_cache": "warm (not dropped)", "mb": "10^6 bytes", "total_seconds": int(E["T_TOTAL"]),
       "definitions": {
           "stored": "mvault/restic: du -sb of the repository after all backups; zstd/zipnn: compressed file sizes summed",
           "backup_s/restore_s": "wall seconds of the whole CLI command(s), summed over the snapshots of the set",
           "compress_s/decompress_s": "zstd: wall seconds of the CLI; zipnn: read+(de)compress+write inside Python",
           "independent": "4 x the repository size after the first step alone",
           "inspect.float_bound": "entropy bound in bytes for the float tensors, as `mvault inspect` reports it"},
       "sets": {}}

rows = []
for s, r in sets.items():
    o = r["original"]
    d = {"files": r["files"], "original_bytes": o, "others_cpu_pct": r["others_cpu_pct"],
         "build_running": "yes" in (r["build_running"], r["build_running_end"]), "tools": {}}
    for t in tools:
        if f"{t}.stored" not in r:
            continue
        td = {"stored_bytes": r[f"{t}.stored"], "ratio": round(o / r[f"{t}.stored"], 4)}
        for k in ("backup_s", "restore_s", "compress_s", "decompress_s"):
            if f"{t}.{k}" in r:
                td[k] = round(r[f"{t}.{k}"], 4)
                td[k.replace("_s", "_mb_s")] = round(o / MB / r[f"{t}.{k}"], 1)
                td[k.replace("_s", "_cpu_s")] = r.get(f"{t}.{k.replace('_s', '_cpu_s')}")
        if f"{t}.verified" in r:
            td["verified_files"] = r[f"{t}.verified"]
        if t == "mvault":
            td["bytes_stored_sum"] = r["mvault.bytes_stored_sum"]
            td["bytes_stored_per_snapshot"] = [r[f"mvault.bytes_stored.{i}"] for i in range(1, r["files"] + 1)]
            td["reported_seconds_per_snapshot"] = [r[f"mvault.reported_seconds.{i}"] for i in range(1, r["files"] + 1)]
        if t.startswith("restic"):
            td["reported_seconds_per_snapshot"] = [r[f"{t}.reported_seconds.{i}"] for i in range(1, r["files"] + 1)]
        if f"{t}.restore_seconds.1" in r:
            td["restore_seconds_per_snapshot"] = [r[f"{t}.restore_seconds.{i}"] for i in range(1, r["files"] + 1)]
        if t == "zipnn":
            td["dtype_arg"] = r.get("zipnn.dtype_arg")
        if r["files"] > 1 and f"{t}.du.1" in r:
            td["stored_after_each_step"] = [r[f"{t}.du.{i}"] for i in range(1, r["files"] + 1)]
            td["independent_bytes"] = r["files"] * r[f"{t}.du.1"]
        d["tools"][t] = td
    if "inspect.float_bound" in r:
        d["inspect"] = {k.split(".", 1)[1]: v for k, v in r.items() if k.startswith("inspect.")}
    out["sets"][s] = d

json.dump(out, open(sys.argv[2], "w"), indent=2)


def table(hdr, cells):
    w = [max(len(str(c[i])) for c in cells + [hdr]) for i in range(len(hdr))]
    line = lambda c: "| " + " | ".join(str(x).ljust(wi) if i == 0 else str(x).rjust(wi) for i, (x, wi) in enumerate(zip(c, w))) + " |"
    print(line(hdr))
    print("|" + "|".join("-" * (wi + 2) for wi in w) + "|")
    for c in cells:
        print(line(c))


def mb(b):
    return f"{b / MB:.1f}"


name = lambda s, d: f"{s} (4 steps)" if d["files"] > 1 else s
print(f"\nModel data benchmark, {out['date']}, {os.cpu_count()} CPUs; MB = 10^6 bytes; warm page cache")
print(f"mvault: {E['MVAULT_VERSION']}\nrestic: {E['RESTIC_VERSION']}; zstd: {E['ZSTD_VERSION']}; "
      f"zipnn: {E['ZIPNN_VERSION']}" + (f" ({E['ZIPNN_NOTE']})" if E["ZIPNN_NOTE"] else ""))
print("\nStored size, MB (ratio original/stored). mvault/restic = du -sb of the repository.\n")
hdr = ["data set", "original"] + [label[t] for t in tools] + (["zipnn"] if not zipnn_on else [])
cells = []
for s, d in out["sets"].items():
    c = [name(s, d), mb(d["original_bytes"])]
    for t in tools:
        td = d["tools"][t]
        c.append(f"{mb(td['stored_bytes'])} ({td['ratio']:.2f}x)")
    if not zipnn_on:
        c.append("n/a")
    cells.append(c)
table(hdr, cells)

print("\nThroughput, MB/s of original bytes (wall clock; mvault/restic: whole CLI command, all snapshots of the set).\n")
hdr = ["data set", "mvault backup", "mvault restore", "restic backup", "restic restore",
       "zstd -3 comp", "zstd -3 decomp", "zipnn comp", "zipnn decomp"]
cells = []
for s, d in out["sets"].items():
    T = d["tools"]
    z = T.get("zipnn")
    cells.append([name(s, d), T["mvault"]["backup_mb_s"], T["mvault"]["restore_mb_s"], T["restic"]["backup_mb_s"],
                  T["restic"]["restore_mb_s"], T["zstd"]["compress_mb_s"], T["zstd"]["decompress_mb_s"],
                  z["compress_mb_s"] if z else "n/a", z["decompress_mb_s"] if z else "n/a"])
table(hdr, cells)

print("\nFloat tensors vs the entropy bound (`mvault inspect`; codec speed on one core).\n")
hdr = ["data set", "float MB", "codec stored MB", "bound MB", "stored/bound", "file ratio at bound", "encode MB/s", "decode MB/s"]
cells = []
for s, d in out["sets"].items():
    i = d.get("inspect")
    if not i:
        continue
    at_bound = i["file_bytes"] / (i["float_bound"] + i["other_stored"])
    cells.append([s, mb(i["float_bytes"]), mb(i["float_stored"]), mb(i["float_bound"]),
                  f"{100 * i['float_stored'] / i['float_bound']:.1f}%", f"{at_bound:.2f}x",
                  f"{i['float_bytes'] / MB / i['encode_seconds']:.0f}", f"{i['float_bytes'] / MB / i['decode_seconds']:.0f}"])
table(hdr, cells)

print("\nCheckpoint series: 4 snapshots in one repository vs 4 independent snapshots (4 x the first step's size), MB.\n")
hdr = ["series", "original", "mvault 4 in one", "mvault independent", "restic 4 in one", "restic independent"]
if restic_max:
    hdr += ["restic max 4 in one", "restic max independent"]
cells = []
for s, d in out["sets"].items():
    if d["files"] == 1:
        continue
    T = d["tools"]
    c = [s, mb(d["original_bytes"])]
    for t in ["mvault", "restic"] + (["restic_max"] if restic_max else []):
        c += [f"{mb(T[t]['stored_bytes'])} ({d['original_bytes'] / T[t]['stored_bytes']:.2f}x)",
              f"{mb(T[t]['independent_bytes'])} ({d['original_bytes'] / T[t]['independent_bytes']:.2f}x)"]
    cells.append(c)
table(hdr, cells)
busy = [f"{s} ({d['others_cpu_pct']:.0f}%{', cargo/rustc seen' if d['build_running'] else ''})"
        for s, d in out["sets"].items() if d["build_running"] or d["others_cpu_pct"] > 15]
print("\nCPU used by other processes during each set (% of all CPUs): "
      + ", ".join(f"{s} {d['others_cpu_pct']:.0f}%" for s, d in out["sets"].items()))
if busy:
    print(f"WARNING: other processes competed for the CPUs during: {', '.join(busy)}; their speeds are skewed")
print(f"\nall restores and decompressions byte-exact (cmp); run took {E['T_TOTAL']} s; "
      f"CPU busy before/after: {E['CPU_BUSY_BEFORE']}%/{E['CPU_BUSY_AFTER']}%")
print(f"wrote {sys.argv[2]}")
EOF

rm -rf "$SCRATCH"
