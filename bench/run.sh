#!/usr/bin/env bash
# ModelVault vs restic: backup / re-backup / restore benchmark on one generated data set.
#
#   bench/run.sh                      # 2 GiB data set under /tmp/mvault-bench
#   BENCH_GIB=0.5 BENCH_DIR=/x bench/run.sh
#
# For each tool: fresh repo, timed backup, timed second backup of the unchanged data,
# timed restore into an empty directory, stored repo size (du -sb), peak RSS of the
# backup and restore (/usr/bin/time %M), and a byte-for-byte check of the restore
# (diff -r -q). The page cache is NOT dropped: the source is in RAM for both tools, so
# the figures are warm-cache numbers. Prints a table and writes $BENCH_DIR/results.json.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/mvault-bench}
BENCH_GIB=${BENCH_GIB:-2}
BENCH_SEED=${BENCH_SEED:-42}
MVAULT=$ROOT/target/release/mvault
PASSWORD=bench-password-not-secret
DATA=$BENCH_DIR/data-${BENCH_GIB}g-s$BENCH_SEED

log() { printf '==> %s %s\n' "$(date +%T)" "$*" >&2; }

# --- 1. tools --------------------------------------------------------------------------
missing=()
command -v restic >/dev/null || missing+=(restic)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ ! -x $MVAULT ]]; then
    log "building mvault"
    (cd "$ROOT" && cargo build --release -p mvault)
fi

# --- 2. data set (cached; regenerated if gen.py changed) -------------------------------
mkdir -p "$BENCH_DIR"
stamp="$BENCH_GIB $BENCH_SEED $(sha256sum "$ROOT/bench/gen.py" | cut -c1-16)"
if [[ ! -f $DATA/.done || $(cat "$DATA/.done") != "$stamp" ]]; then
    log "generating $BENCH_GIB GiB of data in $DATA"
    rm -rf "$DATA"
    python3 "$ROOT/bench/gen.py" "$DATA/src" "$BENCH_GIB" "$BENCH_SEED"
    echo "$stamp" >"$DATA/.done"
fi
SRC=$DATA/src
SRC_BYTES=$(find "$SRC" -type f -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}')
SRC_FILES=$(find "$SRC" -type f | wc -l)
log "source: $SRC ($SRC_FILES files, $SRC_BYTES bytes)"
# CPU use by others over 2 s (the load average lags too much to tell).
cpu() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
read -r busy0 total0 < <(cpu); sleep 2; read -r busy1 total1 < <(cpu)
CPU_BUSY=$((100 * (busy1 - busy0) / (total1 - total0)))
((CPU_BUSY < 10)) || log "warning: CPUs are ${CPU_BUSY}% busy; other processes will skew the timings"

# --- 3. per-tool runs ------------------------------------------------------------------
RESULTS=$BENCH_DIR/results.tsv
: >"$RESULTS"

# timed NAME CMD...: run CMD, log its output to $WORK/NAME.log, set SECS and RSS_KB.
timed() {
    local name=$1
    shift
    sync # do not bill the previous step's write-back to this one
    if ! /usr/bin/time -f '%e %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1; then
        log "FAILED: $*"
        tail -n 20 "$WORK/$name.log" >&2
        exit 1
    fi
    read -r SECS RSS_KB < <(tail -n 1 "$WORK/$name.time")
}

run_tool() {
    local tool=$1
    WORK=$BENCH_DIR/$tool
    rm -rf "$WORK"
    mkdir -p "$WORK"
    local repo=$WORK/repo target=$WORK/restore
    case $tool in
    restic)
        export RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$WORK/cache
        init() { restic init -q --repo "$repo"; }
        backup() { timed "$1" restic -q --repo "$repo" backup "$SRC"; }
        restore() { timed restore restic -q --repo "$repo" restore latest --target "$target"; }
        ;;
    mvault)
        export MVAULT_PASSWORD=$PASSWORD
        init() { "$MVAULT" -q --vault "$repo" init; }
        backup() { timed "$1" "$MVAULT" -q --vault "$repo" backup "$SRC"; }
        restore() { timed restore "$MVAULT" -q --vault "$repo" restore latest --target "$target"; }
        ;;
    esac

    log "$tool: init"
    init >"$WORK/init.log" 2>&1
    log "$tool: backup"
    backup backup1
    local b1_s=$SECS b1_rss=$RSS_KB
    log "$tool: second backup (unchanged data)"
    backup backup2
    local b2_s=$SECS
    log "$tool: restore"
    restore
    local r_s=$SECS r_rss=$RSS_KB
    local stored
    stored=$(du -sb "$repo" | cut -f1)
    local verify=pass
    diff -r -q "$SRC" "$target$SRC" >"$WORK/diff.log" 2>&1 || verify=FAIL
    log "$tool: restore verification: $verify"
    rm -rf "$target" # keep the disk and page cache small for the next tool
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$tool" "$b1_s" "$b2_s" "$r_s" "$stored" "$b1_rss" "$r_rss" "$verify" >>"$RESULTS"
}

run_tool restic
run_tool mvault

# --- 4. report -------------------------------------------------------------------------
RESTIC_VERSION=$(restic version | head -n 1) \
    MVAULT_VERSION="$("$MVAULT" --version) (binary of $(date -r "$MVAULT" -Iseconds))" \
    SRC_BYTES=$SRC_BYTES SRC_FILES=$SRC_FILES BENCH_GIB=$BENCH_GIB CPU_BUSY=$CPU_BUSY \
    python3 - "$RESULTS" "$BENCH_DIR/results.json" <<'EOF'
import json, os, sys, datetime
src = int(os.environ["SRC_BYTES"])
rows = []
for line in open(sys.argv[1]):
    tool, b1, b2, r, stored, b1_rss, r_rss, verify = line.split("\t")
    b1, b2, r, stored = float(b1), float(b2), float(r), int(stored)
    rows.append({
        "tool": tool,
        "backup_s": b1, "backup_mb_s": round(src / 1e6 / b1, 1),
        "second_backup_s": b2,
        "restore_s": r, "restore_mb_s": round(src / 1e6 / r, 1),
        "stored_bytes": stored, "stored_mib": round(stored / 2**20, 1),
        "stored_pct_of_source": round(100 * stored / src, 1),
        "backup_peak_rss_mib": round(int(b1_rss) / 1024, 1),
        "restore_peak_rss_mib": round(int(r_rss) / 1024, 1),
        "restore_verified": verify.strip() == "pass",
    })
hdr = ["tool", "backup MB/s", "2nd backup s", "restore MB/s", "stored MiB (% of src)",
       "backup RSS MiB", "restore RSS MiB", "restore ok"]
cells = [[r["tool"], f'{r["backup_mb_s"]:.1f}', f'{r["second_backup_s"]:.2f}', f'{r["restore_mb_s"]:.1f}',
          f'{r["stored_mib"]:.1f} ({r["stored_pct_of_source"]:.1f}%)', f'{r["backup_peak_rss_mib"]:.1f}',
          f'{r["restore_peak_rss_mib"]:.1f}', "pass" if r["restore_verified"] else "FAIL"] for r in rows]
width = [max(len(c[i]) for c in cells + [hdr]) for i in range(len(hdr))]
line = lambda c: "| " + " | ".join(x.ljust(w) for x, w in zip(c, width)) + " |"
print(f'\nsource: {src / 2**20:.1f} MiB in {os.environ["SRC_FILES"]} files; '
      f'MB = 10^6 bytes; warm page cache (not dropped)')
print(line(hdr))
print("|" + "|".join("-" * (w + 2) for w in width) + "|")
for c in cells:
    print(line(c))
json.dump({
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "bench_gib": float(os.environ["BENCH_GIB"]),
    "source_bytes": src, "source_files": int(os.environ["SRC_FILES"]),
    "cpus": os.cpu_count(), "mem_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
    "restic_version": os.environ["RESTIC_VERSION"], "mvault_version": os.environ["MVAULT_VERSION"],
    "page_cache": "warm (not dropped)", "cpu_busy_pct_before": int(os.environ["CPU_BUSY"]),
    "results": rows,
}, open(sys.argv[2], "w"), indent=2)
print(f"\nwrote {sys.argv[2]}")
EOF

grep -q FAIL "$RESULTS" && { log "a restore did not match the source (see $BENCH_DIR/*/diff.log)"; exit 1; }
exit 0
