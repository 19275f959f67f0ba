#!/usr/bin/env bash
# Fuzz every target in fuzz/fuzz_targets for a fixed time each.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  libFuzzer -max_total_time per target (default 60)
#   TARGET...           only these targets (default: all of fuzz/fuzz_targets/*.rs)
# Env: VERBOSE=1 also shows libFuzzer output (it always goes to fuzz/logs/<target>.log).
#
# Exit status: 0 if every target ran its time without a finding, 1 if any crashed or failed, 2 on setup errors.
set -uo pipefail

SECS="${1:-60}"
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || [[ "$SECS" -eq 0 ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
shift $(( $# > 0 ? 1 : 0 ))

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR" || exit 2

# cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer coverage); this machine has only stable.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it"
    cargo install cargo-fuzz --locked || { echo "error: cargo install cargo-fuzz failed" >&2; exit 2; }
fi

# Start from the main workspace's lock file so the fuzz build uses the same dependency versions.
if [[ ! -f Cargo.lock && -f ../Cargo.lock ]]; then
    cp ../Cargo.lock Cargo.lock
fi

# ---- seeds: a few small valid inputs per target, written only into an empty corpus ----------------------
hex() { # hex HEXSTRING: write the bytes
    local h="$1" out="" i
    for (( i = 0; i < ${#h}; i += 2 )); do out+="\\x${h:i:2}"; done
    printf "$out"
}
le16() { hex "$(printf '%02x%02x' $(( $1 & 255 )) $(( ($1 >> 8) & 255 )))"; }
le32() { hex "$(printf '%02x%02x%02x%02x' $(( $1 & 255 )) $(( ($1 >> 8) & 255 )) $(( ($1 >> 16) & 255 )) $(( ($1 >> 24) & 255 )))"; }
le64() { le32 "$1"; le32 0; }  # small values only
fill() { head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$1")"; }  # fill BYTE COUNT
str16() { le16 "${#1}"; printf '%s' "$1"; }

node() { # node KIND NAME then kind-specific bytes follow from the caller
    hex "$(printf '%02x' "$1")"; str16 "$2"
    le32 33188; le64 1700000000; le32 5; le64 1234; le64 2049; le64 42
}

seed_target() {
    local t="$1" d="corpus/$1"
    case "$t" in
    config)
        local j='{"vault_id":"000102030405060708090a0b0c0d0e0f","format_version":1,"created":"2026-01-01T00:00:00Z","redundancy":{"k":2,"m":1},"chunker":{"min":262144,"avg":1048576,"max":4194304},"pack_size":16777216,"stores":[{"id":"s0","url":"fs:/x","domain":"d0","weight":1}]}'
        { printf 'MVCF\x01'; le32 "${#j}"; printf '%s' "$j"; fill 0 32; } > "$d/valid" ;;
    keyfile)
        printf '%s' '{"magic":"mvault-key","version":1,"id":"00112233445566778899aabbccddeeff","created":"2026-01-01T00:00:00Z","host":"h","user":"u","kdf":{"algorithm":"argon2id","m_kib":8,"t":1,"p":1,"salt":"0000000000000000000000000000000000000000000000000000000000000000"},"nonce":"000000000000000000000000","wrapped_master_key":"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}' > "$d/valid" ;;
    tenant_key)
        { printf 'MVTK\x01'; le32 1; fill 0 12; fill 0 48; } > "$d/valid" ;;
    object_envelope)
        { printf 'MVOB\x01\x01'; le32 1; fill 0 32; fill 0 16; } > "$d/index"
        { printf 'MVOB\x01\x02'; le32 1; fill 1 32; fill 0 40; } > "$d/snapshot" ;;
    blob_table)
        { printf 'MVBT\x01'; le32 0; } > "$d/empty"
        { printf 'MVBT\x01'; le32 2
          printf '\x00\x01'; fill 9 32; le32 57; le32 40; le32 100
          printf '\x01\x00'; fill 8 32; le32 97; le32 16; le32 0; } > "$d/two" ;;
    pack)
        # built mode: u16 body_len | body | table plaintext (one 16-byte blob at offset 57)
        { le16 16; fill 0 16; printf 'MVBT\x01'; le32 1; printf '\x00\x00'; fill 9 32; le32 57; le32 16; le32 0; } > "$d/built"
        # raw mode: header with the target's fixed pack id, then a too-short table and the trailer
        { printf 'MVPK\x01'; le32 1; fill 165 16; fill 51 32; fill 0 16; le32 16; printf 'MVPT'; } > "$d/raw" ;;
    shard)
        # k=1 m=0, empty payload: the hash is BLAKE3 of the empty string
        { printf 'MVSH\x01'; fill 165 16; printf '\x00\x01\x00'; le64 0; le64 0
          hex af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262; } > "$d/empty_payload"
        { printf 'MVSH\x01'; fill 165 16; printf '\x02\x02\x01'; le64 100; le64 50; fill 0 32; fill 0 50; } > "$d/k2m1" ;;
    index)
        { printf 'MVIX\x01'; le32 0; } > "$d/empty"
        { printf 'MVIX\x01'; le32 1; fill 9 32; fill 165 16; printf '\x00\x01'; le32 0; le32 57; le32 40; le32 100; } > "$d/one" ;;
    tree)
        { printf 'MVTR\x01'; le32 3
          node 0 "a.safetensors"; le32 2; fill 1 32; fill 2 32
          node 1 "dir"; fill 3 32
          node 2 "link"; str16 "../target"; } > "$d/three" ;;
    s3_xml)
        { printf '\x00'; printf '%s' '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"a"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>"b"</ETag></Part></CompleteMultipartUpload>'; } > "$d/complete"
        { printf '\x01'; printf '%s' '<Delete><Object><Key>a/b</Key></Object><Object><Key>c</Key><VersionId>v1</VersionId></Object><Quiet>true</Quiet></Delete>'; } > "$d/delete"
        { printf '\x02'; printf '%s' '<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>'; } > "$d/create" ;;
    snapshot)
        printf '%s' '{"version":1,"time":"2026-11-25T10:00:00.123456789Z","host":"h","tags":["a=b"],"paths":["/data/ckpt"],"tree":"0303030303030303030303030303030303030303030303030303030303030303","parent":null,"locked_until":null,"summary":{"files":1,"dirs":2,"symlinks":0,"bytes":3,"files_read":1,"bytes_read":3,"new_chunks":1,"new_bytes":3,"bytes_stored":80,"unreadable":[],"seconds":0.25}}' > "$d/valid" ;;
    esac
}

# ---- targets ----------------------------------------------------------------------------------------------
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
    [[ -f "fuzz_targets/$t.rs" ]] || { echo "error: no target fuzz_targets/$t.rs" >&2; exit 2; }
    mkdir -p "corpus/$t"
    if [[ -z "$(ls -A "corpus/$t")" ]]; then seed_target "$t"; fi
done
mkdir -p logs

echo "building ${#targets[@]} fuzz targets (first build takes a while)"
if ! cargo fuzz build > logs/build.log 2>&1; then
    tail -n 40 logs/build.log >&2
    echo "error: cargo fuzz build failed; full log in $FUZZ_DIR/logs/build.log" >&2
    exit 2
fi

declare -a summary
failed=0
for t in "${targets[@]}"; do
    log="logs/$t.log"
    echo "== $t: fuzzing for ${SECS}s (log: fuzz/$log)"
    if [[ "${VERBOSE:-0}" == 1 ]]; then
        cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    else
        cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 > "$log" 2>&1
        rc=$?
    fi
    artifact="$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/^Test unit written to //')"
    if [[ $rc -eq 0 && -z "$artifact" ]]; then
        execs="$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1)"
        summary+=("ok       $t${execs:+ ($execs)}")
    elif [[ -n "$artifact" ]]; then
        failed=1
        reason="$(grep -m 1 -o -E "panicked at [^']*|ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+" "$log" || true)"
        summary+=("CRASHED  $t: $artifact${reason:+ [$reason]}  (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact)")
    else
        failed=1
        summary+=("FAILED   $t: exit $rc without an artifact; see fuzz/$log")
    fi
done

echo
echo "== summary (${SECS}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
