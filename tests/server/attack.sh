#!/usr/bin/env bash
# Attack the server from outside, with the CLI and curl only (issue 4, item 8).
#
# Tenants a and b; b's tokens of every role try to list, read, restore, diff, forget and guess ids of
# a's snapshots, trees and chunks (also by path traversal and with ids copied from a): every attempt must
# be denied or not found, and the audit log must show it. Then: 401 for missing, malformed, unknown,
# forged, revoked and expired tokens; an appender cannot forget; an operator cannot read data; an
# over-quota upload gets 507 and leaves usage unchanged; a rate limit gives 429; remote backup of a
# changed file sends only the changed chunks; audit verify finds an edited, removed or reordered segment;
# tenant delete --shred leaves the tenant's data unreadable and its tokens refused.
#
# Usage: MVAULT_BIN=target/debug/mvault tests/server/attack.sh   (needs curl and jq)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start_server
# H TOKEN CURL-ARGS...: prints the HTTP status; the body is in $T/body
H() { local tok=$1; shift; curl -sS --path-as-is -o "$T/body" -w '%{http_code}' --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer $tok" "$@"; }

R "$OP" tenant create a >/dev/null
R "$OP" tenant create b >/dev/null
declare -A TOK
for t in a b; do
    TOK[$t.admin]=$(R "$OP" --json token create --tenant "$t" --role admin | jq -r .token)
    for r in writer reader appender; do
        TOK[$t.$r]=$(R "${TOK[$t.admin]}" --json token create --role "$r" | jq -r .token)
    done
done
pass "tenants a and b with admin, writer, reader and appender tokens"

# --- a's data ---
mkdir -p "$T/data/sub"
head -c 3000000 /dev/urandom >"$T/data/weights.bin"
echo "secret of tenant a" >"$T/data/sub/notes.txt"
R "${TOK[a.writer]}" -q backup "$T/data" >/dev/null
SA=$(R "${TOK[a.reader]}" --json snapshots | jq -r '.[0].id')
TA=$(R "${TOK[a.reader]}" --json snapshots | jq -r '.[0].tree')
[[ $(H "${TOK[a.reader]}" "$URL/v1/blobs/$TA") == 200 ]] || fail "a cannot read its own tree"
R "${TOK[a.reader]}" restore "$SA" --target "$T/a-out" >/dev/null
diff -r "$T/data" "$T/a-out$T/data" || fail "a's own restore differs"
PA=$(basename "$(find "$V/tenants/a/packs" -type f -print -quit)")
[[ -n $SA && -n $TA && -n $PA ]] || fail "could not collect a's ids"
pass "a backed up and restored its data (snapshot ${SA:0:8})"

# --- b attacks a, with every role ---
denied() { [[ $1 == 400 || $1 == 403 || $1 == 404 || $1 == 405 ]]; }
# an error may echo the id that was asked for, but never a's snapshot record, tree or file names
leaks() { grep -q -e '"tree"' -e 'weights.bin' -e 'notes.txt' -e '"paths"' "$T/body"; }
attempts=0
for r in admin writer reader appender; do
    k=${TOK[b.$r]}
    for req in \
        "GET /v1/snapshots/$SA" "GET /v1/snapshots/${SA:0:8}" "GET /v1/blobs/$TA" \
        "GET /v1/blobs/..%2F..%2Ftenants%2Fa%2Fsnapshots%2F$SA" "GET /v1/blobs/../../tenants/a/snapshots/$SA" \
        "GET /v1/snapshots/..%2F..%2Ftenants%2Fa%2Fsnapshots%2F$SA" "GET /v1/blobs/%2e%2e%2f%2e%2e%2fconfig" \
        "GET /tenants/a/packs/${PA:0:2}/$PA" "GET /v1/../tenants/a/keys" "GET /v1/blobs/$TA?tenant=a"; do
        st=$(H "$k" -X "${req%% *}" "$URL${req#* }")
        denied "$st" || fail "b.$r: $req answered $st"
        leaks && fail "b.$r: $req leaked a's ids"
        attempts=$((attempts + 1))
    done
    st=$(H "$k" -H 'X-Tenant: a' "$URL/v1/blobs/$TA"); denied "$st" || fail "b.$r: X-Tenant header answered $st"
    st=$(H "$k" -X POST -d "{\"ids\":[\"$SA\"]}" "$URL/v1/snapshots/forget"); denied "$st" || fail "b.$r: forget a's snapshot answered $st"
    st=$(H "$k" -X POST -d "{\"ids\":[\"$TA\"]}" "$URL/v1/chunks/stat")
    [[ $st == 403 ]] || [[ $(jq -c .lengths "$T/body") == "[null]" ]] || fail "b.$r: stat of a's tree revealed it"
    # dedup cannot be used as an oracle: a's ids are simply missing for b
    st=$(H "$k" -X POST -d "{\"ids\":[\"$TA\"]}" "$URL/v1/chunks/missing")
    [[ $st == 403 ]] || [[ $(jq -r '.missing[0]' "$T/body") == "$TA" ]] || fail "b.$r: missing-check revealed a's tree"
    # a snapshot naming a's tree is refused (b does not have it)
    st=$(H "$k" -X POST -d "{\"version\":1,\"time\":\"\",\"host\":\"x\",\"paths\":[\"/x\"],\"tree\":\"$TA\",\"parent\":null}" "$URL/v1/snapshots")
    denied "$st" || [[ $st == 409 ]] || fail "b.$r: snapshot of a's tree answered $st"
    # the CLI as b
    R "$k" restore "$SA" --target "$T/b-out" >/dev/null 2>&1 && fail "b.$r restored a's snapshot"
    R "$k" ls "$SA" >/dev/null 2>&1 && fail "b.$r listed a's snapshot"
    R "$k" forget "$SA" >/dev/null 2>&1 && fail "b.$r forgot a's snapshot"
    if [[ $r != appender ]]; then
        [[ $(R "$k" --json snapshots | jq length) == 0 ]] || fail "b.$r sees snapshots it does not own"
    fi
    attempts=$((attempts + 8))
done
[[ -d $T/b-out$T/data ]] && fail "something of a's was written by b's restore"
[[ $(R "${TOK[a.reader]}" --json snapshots | jq -r '.[0].id') == "$SA" ]] || fail "a's snapshot is gone"
pass "$attempts attempts by b's tokens on a's snapshots, trees, chunks and packs: all denied or not found"

# --- roles ---
[[ $(H "$OP" "$URL/v1/snapshots") == 403 ]] || fail "operator listed data"
[[ $(H "$OP" "$URL/v1/blobs/$TA") == 403 ]] || fail "operator read a blob"
[[ $(H "$OP" "$URL/v1/tenant/id-key") == 403 ]] || fail "operator got an id key"
[[ $(H "${TOK[a.appender]}" -X POST -d "{\"ids\":[\"$SA\"]}" "$URL/v1/snapshots/forget") == 403 ]] || fail "appender forgot"
R "${TOK[a.appender]}" forget "$SA" >/dev/null 2>&1 && fail "appender forgot via the CLI"
[[ $(H "${TOK[a.appender]}" "$URL/v1/blobs/$TA") == 403 ]] || fail "appender read data"
R "${TOK[a.appender]}" -q backup "$T/data/sub" >/dev/null || fail "appender could not back up"
[[ $(H "${TOK[a.reader]}" -X POST --data-binary @/dev/null "$URL/v1/chunks") == 403 ]] || fail "reader uploaded"
[[ $(H "${TOK[a.writer]}" -X POST -d '{"role":"reader"}' "$URL/v1/tokens") == 403 ]] || fail "writer made a token"
[[ $(H "${TOK[a.admin]}" -X POST -d '{"role":"reader","tenant":"b"}' "$URL/v1/tokens") == 403 ]] || fail "a's admin made a token for b"
[[ $(H "${TOK[a.admin]}" -X POST -d '{"role":"operator"}' "$URL/v1/tokens") == 403 ]] || fail "admin made an operator"
[[ $(H "${TOK[a.admin]}" "$URL/v1/tenants") == 403 ]] || fail "admin listed tenants"
pass "roles: operator has no data endpoint, appender cannot forget or read, reader cannot upload"

# --- 401s ---
unauth() { local st; st=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$MVAULT_TLS_CA" "$@" "$URL/v1/snapshots"); [[ $st == 401 ]] || fail "$* answered $st, not 401"; }
unauth
unauth -H 'Authorization: Basic Zm9vOmJhcg=='
unauth -H 'Authorization: Bearer'
unauth -H 'Authorization: Bearer mvt_zz'
forged=${TOK[a.reader]:0:-1}$([[ ${TOK[a.reader]: -1} == 0 ]] && echo 1 || echo 0)
unauth -H "Authorization: Bearer $forged"
unauth -H "Authorization: Bearer mvt_0123456789abcdef_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
RID=$(R "${TOK[a.admin]}" --json token create --role reader | jq -r '.id + " " + .token')
R "${TOK[a.admin]}" token revoke "${RID%% *}" >/dev/null
unauth -H "Authorization: Bearer ${RID#* }"
EXP=$(R "${TOK[a.admin]}" --json token create --role reader --ttl 1s | jq -r .token)
sleep 2
unauth -H "Authorization: Bearer $EXP"
curl -sS -D "$T/hdr" -o /dev/null --cacert "$MVAULT_TLS_CA" "$URL/v1/snapshots"
grep -qi '^www-authenticate: Bearer' "$T/hdr" || fail "401 without WWW-Authenticate"
pass "401 for missing, basic, empty, malformed, forged, unknown, revoked and expired tokens"

# What the server and the vault keep on disk is private: the state directory (the TLS key) and every vault file.
[[ $(stat -c %a "$T/state") == 700 && $(stat -c %a "$T/state/server-key.pem") == 600 ]] ||
    fail "the server's state directory is $(stat -c %a "$T/state"), its TLS key $(stat -c %a "$T/state/server-key.pem")"
open_files=$(find "$V" -perm /077 -print -quit)
[[ -z $open_files ]] || fail "vault files others can read: $open_files"
pass "the server's state directory is 0700 (its TLS key 0600); no vault file or directory is open to others"

# A slow, large upload without a valid token is refused from its headers, before its body arrives.
most=0
for auth in "" "Authorization: Bearer mvt_0123456789abcdef_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"; do
    read -r st sent _ <<<"$(slow_body POST "$URL/v1/chunks" ${auth:+-H "$auth"})"
    [[ $st == 401 ]] || fail "a slow upload with ${auth:-no token} answered $st"
    ((sent < (8 << 20))) || fail "the server took $sent bytes of an unauthenticated body before its 401"
    ((sent > most)) && most=$sent
done
# A reader may not send an upload-sized body at all: 413 from the headers.
read -r st sent _ <<<"$(slow_body POST "$URL/v1/snapshots" -H "Authorization: Bearer ${TOK[a.reader]}")"
[[ $st == 413 ]] || fail "a reader's 32 MiB body answered $st, not 413"
((sent < (8 << 20))) || fail "the server took $sent bytes of a reader's oversized body before refusing it"
((sent > most)) && most=$sent
pass "a slow 32 MiB upload without a valid token: 401; a reader's: 413; each before $most bytes of it were sent"

# --- quota: 507 and nothing kept ---
R "$OP" tenant create c --max-bytes 1MiB >/dev/null
CW=$(R "$OP" --json token create --tenant c --role writer | jq -r .token)
U0=$(H "$CW" "$URL/v1/tenant" >/dev/null; jq .usage.bytes "$T/body")
P0=$(find "$V/tenants/c" -type f 2>/dev/null | wc -l)
head -c 4000000 /dev/urandom >"$T/big.bin"
R "$CW" backup "$T/big.bin" >"$T/q.out" 2>&1 && fail "over-quota backup succeeded"
grep -q "max_bytes" "$T/q.out" && grep -q "507" "$T/q.out" || fail "over-quota message does not name the limit: $(cat "$T/q.out")"
U1=$(H "$CW" "$URL/v1/tenant" >/dev/null; jq .usage.bytes "$T/body")
P1=$(find "$V/tenants/c" -type f 2>/dev/null | wc -l)
[[ $U0 == "$U1" && $P0 == "$P1" ]] || fail "usage or objects changed after a refused upload ($U0 -> $U1, $P0 -> $P1 objects)"
R "$OP" tenant limits c --max-snapshots 1 >/dev/null
R "$CW" -q backup "$T/data/sub" >/dev/null || fail "backup under the snapshot quota failed"
R "$CW" backup "$T/data/sub" >"$T/q2.out" 2>&1 && fail "second snapshot over max_snapshots succeeded"
grep -q "max_snapshots" "$T/q2.out" || fail "snapshot quota message: $(cat "$T/q2.out")"
pass "quota: 507 naming max_bytes with usage unchanged and no new objects; max_snapshots enforced"

# --- rate limit: 429 with Retry-After ---
R "$OP" tenant limits b --rps 2 >/dev/null
got429=0
for _ in $(seq 12); do
    st=$(curl -sS -D "$T/hdr" -o "$T/body" -w '%{http_code}' --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer ${TOK[b.reader]}" "$URL/v1/snapshots")
    if [[ $st == 429 ]]; then
        got429=1
        jq -e '.limit == "requests_per_second"' "$T/body" >/dev/null || fail "429 body does not name the limit"
        grep -qi '^retry-after:' "$T/hdr" || fail "429 without Retry-After"
        break
    fi
done
[[ $got429 == 1 ]] || fail "12 quick requests at 2 rps were never limited"
R "$OP" tenant limits b --bps 1000 >/dev/null
ids=$(for i in $(seq 11); do printf '"%064d",' "$i"; done)
body="{\"ids\":[${ids%,}]}"   # about 770 bytes: one fits in a second's 1000 bytes, two do not
[[ $(H "${TOK[b.writer]}" -X POST -d "$body" "$URL/v1/chunks/missing") == 200 ]] || fail "the first request under a byte rate was refused"
st=$(curl -sS -D "$T/hdr" -o "$T/body" -w '%{http_code}' --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer ${TOK[b.writer]}" -X POST -d "$body" "$URL/v1/chunks/missing")
[[ $st == 429 ]] && jq -e '.limit == "bytes_per_second"' "$T/body" >/dev/null || fail "a second 770-byte request at 1000 B/s answered $st"
R "$OP" tenant limits b >/dev/null
pass "rate limits: 429 naming requests_per_second (with Retry-After) and bytes_per_second"

# --- forged and malformed uploads: 400, nothing stored ---
U0=$(H "${TOK[b.writer]}" "$URL/v1/tenant" >/dev/null; jq .usage.bytes "$T/body")
{ printf '\x00\x00'; head -c 32 /dev/zero; printf '\x05\x00\x00\x00hello'; } >"$T/forged.frames"
st=$(H "${TOK[b.writer]}" -X POST --data-binary @"$T/forged.frames" "$URL/v1/chunks")
[[ $st == 400 ]] && grep -q "do not hash to its id" "$T/body" || fail "a blob under a wrong id answered $st: $(cat "$T/body")"
head -c 20 "$T/forged.frames" >"$T/cut.frames"
st=$(H "${TOK[b.writer]}" -X POST --data-binary @"$T/cut.frames" "$URL/v1/chunks")
[[ $st == 400 ]] && grep -q "truncated" "$T/body" || fail "a truncated upload answered $st: $(cat "$T/body")"
st=$(H "${TOK[b.writer]}" -X POST -d '{"ids": 5}' "$URL/v1/chunks/missing")
[[ $st == 400 ]] || fail "a malformed JSON body answered $st"
U1=$(H "${TOK[b.writer]}" "$URL/v1/tenant" >/dev/null; jq .usage.bytes "$T/body")
[[ $U0 == "$U1" ]] || fail "refused uploads changed usage ($U0 -> $U1)"
pass "forged, truncated and malformed uploads: 400 naming the problem, usage unchanged"

# --- dedup before the network: a changed file sends only its changed chunks ---
python3 - "$T/model" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1], exist_ok=True)
r = random.Random(5)
with open(sys.argv[1] + "/ckpt.bin", "wb") as f:
    f.write(r.randbytes(24 << 20))
PY
in_bytes() { curl -sS --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer $OP" "$URL/metrics" | awk '/^mvault_http_request_bytes_total\{action="chunks.upload"\}/ {print $2}'; }
B0=$(in_bytes)
R "${TOK[a.writer]}" -q backup "$T/model" >/dev/null
B1=$(in_bytes)
printf 'changed!' | dd of="$T/model/ckpt.bin" bs=1 seek=$((12 << 20)) conv=notrunc status=none
R "${TOK[a.writer]}" -q backup "$T/model" >/dev/null
B2=$(in_bytes)
first=$((B1 - B0)); second=$((B2 - B1))
echo "   first backup: $first bytes received by the server; after changing 8 bytes: $second"
((first >= 24 << 20)) || fail "first backup sent only $first bytes"
((second < 6 << 20)) || fail "a changed checkpoint sent $second bytes: more than the changed chunks"
pass "dedup before the network: the changed checkpoint sent $second of $((24 << 20)) bytes"

# --- shutdown mid-upload (SIGTERM: graceful; SIGKILL: a crash), then a rerun sends only what is missing ---
python3 - "$T/big" <<'PY'
import os, random, sys
os.makedirs(sys.argv[1], exist_ok=True)
with open(sys.argv[1] + "/ckpt.bin", "wb") as f:
    f.write(random.Random(9).randbytes(80 << 20))
PY
for sig in TERM KILL; do
    base=$(in_bytes); base=${base:-0}
    R "${TOK[a.writer]}" -q backup "$T/big" >"$T/cut.out" 2>&1 &
    BP=$!
    for _ in $(seq 600); do
        now=$(in_bytes); now=${now:-0}
        (( now - base >= 20 << 20 )) && break
        sleep 0.05
    done
    kill -"$sig" "$SRV"
    st=0; wait "$SRV" || st=$?
    [[ $sig == KILL || $st == 0 ]] || fail "server exited $st after SIGTERM"
    SRV=
    wait "$BP" && fail "a backup whose server went away reported success"
    start_server
    R "${TOK[a.writer]}" -q --json backup "$T/big" >"$T/rerun.json" || fail "rerun after SIG$sig failed"
    resent=$(jq .bytes_sent "$T/rerun.json")
    (( resent <= 64 << 20 )) || fail "after SIG$sig the rerun sent $resent bytes: stored batches were sent again"
    snap=$(jq -r .snapshot "$T/rerun.json")
    rm -rf "$T/big-out"
    R "${TOK[a.reader]}" -q restore "$snap" --target "$T/big-out" >/dev/null
    cmp "$T/big/ckpt.bin" "$T/big-out$T/big/ckpt.bin" || fail "restore after SIG$sig differs"
    echo "   SIG$sig mid-upload: the rerun sent $((resent >> 20)) MiB of 80"
    python3 -c "import random; f=open('$T/big/ckpt.bin','r+b'); f.write(random.randbytes(80 << 20))"
done
pass "server stopped mid-upload (graceful and SIGKILL): nothing half-written, a rerun sends only what is missing"

# --- audit: b's attempts are there; verify passes, then finds tampering ---
R "$OP" --json audit show --tenant b >"$T/audit.json"
n403=$(jq '[.[] | select(.record.result == 403 or .record.result == 404)] | length' "$T/audit.json")
((n403 >= 20)) || fail "audit shows only $n403 denied requests of tenant b"
jq -e --arg t "blob $TA" '[.[] | select(.record.target == $t and .record.result == 404)] | length > 0' "$T/audit.json" >/dev/null ||
    fail "audit does not show b's attempt on a's tree"
R "$OP" --json audit show >"$T/audit-all.json"
jq -e '[.[] | select(.record.result == 401 and .record.detail == "token revoked")] | length > 0' "$T/audit-all.json" >/dev/null ||
    fail "audit does not show the revoked token's 401"
R "$OP" audit verify >/dev/null || fail "audit verify failed on an untouched log"
kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=
"$M" --vault "$V" audit verify >/dev/null || fail "local audit verify failed after shutdown"
chain=$(for c in "$V"/system/audit/*-server-*; do echo "$(ls "$c" | wc -l) $(basename "$c")"; done | sort -n | tail -1 | cut -d' ' -f2)
segs=($(ls "$V/system/audit/$chain"))
((${#segs[@]} >= 3)) || fail "only ${#segs[@]} audit segments to tamper with"
S=$V/system/audit/$chain
cp "$S/${segs[1]}" "$T/seg.bak"
rm "$S/${segs[1]}"
"$M" --vault "$V" audit verify >/dev/null 2>&1 && fail "verify missed a removed segment"
cp "$T/seg.bak" "$S/${segs[1]}"
mv "$S/${segs[1]}" "$T/s1"; mv "$S/${segs[2]}" "$S/${segs[1]}"; mv "$T/s1" "$S/${segs[2]}"
"$M" --vault "$V" audit verify >/dev/null 2>&1 && fail "verify missed swapped segments"
mv "$S/${segs[1]}" "$T/s1"; mv "$S/${segs[2]}" "$S/${segs[1]}"; mv "$T/s1" "$S/${segs[2]}"
cp "$S/${segs[2]}" "$T/seg2.bak"
printf '\xff' | dd of="$S/${segs[2]}" bs=1 seek=60 conv=notrunc status=none
"$M" --vault "$V" audit verify >/dev/null 2>&1 && fail "verify missed an edited segment"
cp "$T/seg2.bak" "$S/${segs[2]}"
last=${segs[-1]}; mv "$S/$last" "$T/last"
"$M" --vault "$V" audit verify >/dev/null 2>&1 && fail "verify missed a removed last segment"
mv "$T/last" "$S/$last"
"$M" --vault "$V" audit verify >/dev/null || fail "verify fails on the restored log"
# A whole chain deleted (its segments and its head), as someone with the store's credentials could.
cli_chains=("$V"/system/audit/*-cli-*)
gone=$(basename "${cli_chains[0]}")
mv "$V/system/audit/$gone" "$T/gone"; mv "$V/system/audit-heads/$gone" "$T/gone-head"
if out=$("$M" --vault "$V" audit verify 2>&1); then fail "verify missed the deleted chain $gone"; fi
grep -q "audit chain number $((10#${gone%%-*})) is missing" <<<"$out" || fail "verify does not name the deleted chain: $out"
mv "$T/gone" "$V/system/audit/$gone"; mv "$T/gone-head" "$V/system/audit-heads/$gone"
"$M" --vault "$V" audit verify >/dev/null || fail "verify fails once the chain is back"
pass "audit: b's denied attempts and the revoked token are logged; verify finds removed, swapped, edited and truncated segments and a chain deleted whole"

# --- scheduled jobs: a scrub every second shows in the metrics and the audit log ---
printf '[[schedule.job]]\nkind = "scrub"\nevery = "1s"\n' >"$T/server.toml"
SERVER_ARGS="--config $T/server.toml" start_server
for _ in $(seq 100); do
    runs=$(curl -sS --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer $OP" "$URL/metrics" |
        awk '/^mvault_job_runs_total\{job="scrub-0",result="ok"\}/ {print $2}')
    [[ ${runs:-0} -ge 2 ]] && break
    sleep 0.2
done
[[ ${runs:-0} -ge 2 ]] || fail "the scheduled scrub did not run twice in 20 s"
R "$OP" --json audit show >"$T/jobs.json"
jq -e '[.[] | select(.record.action == "job.scrub" and .record.result == 200)] | length >= 1' "$T/jobs.json" >/dev/null ||
    fail "scheduled scrub runs are not in the audit log"
pass "scheduled jobs: a scrub every second ran $runs times, counted in /metrics and recorded in the audit log"

# --- shred: tenant b's keys go first; its tokens are refused ---
R "${TOK[b.writer]}" -q backup "$T/data/sub" >/dev/null
R "$OP" tenant delete b --shred >/dev/null
[[ -z $(find "$V/tenants/b" -type f 2>/dev/null) ]] || fail "tenant b left objects behind"
[[ $(H "${TOK[b.writer]}" "$URL/v1/snapshots") == 401 ]] || fail "a shredded tenant's token still works"
[[ $(R "${TOK[a.reader]}" --json snapshots | jq length) -ge 1 ]] || fail "shredding b touched a"
pass "tenant delete --shred removed b's keys and data; b's tokens get 401; a is untouched"
echo "all attack checks passed"
