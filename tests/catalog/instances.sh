#!/usr/bin/env bash
# Three `mvault server` instances over one vault and one PostgreSQL catalog (MVAULT_CATALOG, set by the test
# that starts PostgreSQL, crates/cli/tests/catalog.rs), with one certificate as behind a load balancer:
# - a file backed up through instance A is sent as zero new chunks through instance B, B restores it exactly,
#   and every instance counts the tenant's usage alike;
# - a quota set through A holds on C within a second, and two uploads racing through B and C never pass it
#   together (each reserves its bytes in the catalog);
# - an instance SIGKILLed in the middle of a remote backup loses nothing: the client (given all instances)
#   carries on through another, and the snapshot restores byte-identical;
# - every S3 gateway serves the tenant's same buckets: an object put through one is read through another, and
#   a multipart upload begun on an instance that is then SIGKILLed is finished through another, and so is one
#   whose instance is SIGKILLed in the middle of a part's body (nothing half-stored becomes visible).
set -euo pipefail
: "${MVAULT_CATALOG:?set MVAULT_CATALOG to a postgres:// URL}"
# shellcheck source=../server/lib.sh
source "$(dirname "$0")/../server/lib.sh"

"$M" --vault "$V" -q tenant create a
# Every instance has the same schedule: a retention job each second, on a tenant of its own.
"$M" --vault "$V" -q tenant create idle
printf '[[schedule.job]]\nkind = "forget"\nevery = "1s"\ntenant = "idle"\nkeep_last = 100\n' >"$T/schedule.toml"
W=$("$M" --vault "$V" --json token create --tenant a --role writer | jq -r .token)

PIDS=()
declare -A URLS S3 PID_OF
start_instance() { # NAME [SERVER ARGS...]: a server with its own state directory; sets URLS[NAME], PID_OF[NAME]
  local n=$1; shift
  "$M" --vault "$V" --json server --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --state-dir "$T/state-$n" \
    --config "$T/schedule.toml" "$@" \
    >"$T/srv-$n.json" 2>"$T/srv-$n.err" &
  PIDS+=($!)
  PID_OF[$n]=$!
  for _ in $(seq 200); do [[ -s $T/srv-$n.json ]] && break; sleep 0.1; done
  [[ -s $T/srv-$n.json ]] || fail "instance $n did not start: $(cat "$T/srv-$n.err")"
  URLS[$n]=$(jq -r .listen "$T/srv-$n.json")
  S3[$n]=$(jq -r .s3 "$T/srv-$n.json")
}
# The first instance makes a certificate; the others serve the same one.
export MVAULT_TLS_CA=$T/state-A/server-cert.pem
as_on() { # TOKEN NAMES ARGS...: the CLI against one instance, or several joined by commas (A,B)
  local tok=$1 names=$2 list=() n; shift 2
  for n in ${names//,/ }; do list+=("${URLS[$n]}"); done
  MVAULT_TOKEN=$tok timeout 240 "$M" --vault "$(IFS=,; echo "${list[*]}")" "$@"
}
on() { as_on "$W" "$@"; } # as the tenant's writer
api() { # TOKEN NAME PATH: a GET of the HTTP API on one instance
  curl -sS --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer $1" "${URLS[$2]}$3"
}
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT

start_instance A
for n in B C; do
  start_instance $n --tls-cert "$T/state-A/server-cert.pem" --tls-key "$T/state-A/server-key.pem"
done
pass "three instances up: ${URLS[A]}, ${URLS[B]} and ${URLS[C]}"

mkdir -p "$T/data"
head -c $((20 << 20)) /dev/urandom >"$T/data/weights.bin"
first=$(on A --json backup "$T/data" | jq .summary.new_chunks)
((first > 0)) || fail "the first backup through A stored $first new chunks"
# As another host, so B has no parent snapshot and chunks and looks up every byte again. Only the trees of
# parent directories whose mtime moved meanwhile (/tmp gains entries as other tests run) may be new.
on B --json backup --host instance-b "$T/data" >"$T/b.json"
second=$(jq '[.summary.files_read, .summary.new_bytes] | @tsv' -r "$T/b.json")
read -r read_b new_b <<<"$second"
((read_b == 1)) || fail "B did not read the file again ($read_b files read)"
((new_b < 4096)) || fail "the same data through B stored $new_b new bytes: B did not see A's catalog entries"
pass "20 MiB backed up through A ($first new chunks), then through B: $new_b new bytes (no data chunk)"

on B -q restore latest --target "$T/out"
cmp "$T/data/weights.bin" "$T/out$T/data/weights.bin" || fail "B restored different bytes"
pass "B restores what A stored, byte for byte"

usage_on() { as_on "$OP" "$1" --json tenant list | jq -c '.[] | select(.name == "a") | .usage'; }
ua=$(usage_on A)
ub=$(usage_on B)
uc=$(usage_on C)
[[ $ua == "$ub" && $ua == "$uc" ]] || fail "usage differs between instances: A $ua, B $ub, C $uc"
pass "every instance counts the tenant's usage alike: $ua"

# A quota set through A holds on C within a second. C has the tenant's record in memory already (it just
# listed it); the signal is C's own answer about the tenant, polled.
stored=$(jq .bytes <<<"$ua")
on C -q snapshots >/dev/null
max=$((stored + (12 << 20)))
set_at=$(date +%s%N)
as_on "$OP" A -q tenant limits a --max-bytes "$max"
sees_limit() { # NAME MAX: wait until instance NAME answers with the tenant's max_bytes MAX
  for _ in $(seq 100); do
    [[ $(api "$W" "$1" /v1/tenant | jq .limits.max_bytes) == "$2" ]] && return 0
    sleep 0.05
  done
  fail "$1 never saw the quota $2 set through A"
}
sees_limit C "$max"
seen_ms=$((($(date +%s%N) - set_at) / 1000000))
((seen_ms <= 1500)) || fail "C saw the quota set through A after $seen_ms ms (promised: within a second)"
mkdir -p "$T/big" "$T/q1" "$T/q2"
head -c $((16 << 20)) /dev/urandom >"$T/big/over.bin"
if on C -q backup "$T/big" 2>"$T/over.err"; then fail "C stored 16 MiB past a quota with 12 MiB of room"; fi
grep -q "quota max_bytes exceeded" "$T/over.err" || fail "C's refusal does not name the quota: $(cat "$T/over.err")"
pass "a quota set through A held on C after $seen_ms ms: 16 MiB refused there ($(cat "$T/over.err"))"

# Two uploads of 8 MiB each, at once through B and C, into 12 MiB of room: one is stored, never both.
max=$(($(usage_on A | jq .bytes) + (12 << 20)))
as_on "$OP" A -q tenant limits a --max-bytes "$max"
sees_limit B "$max"
sees_limit C "$max"
head -c $((8 << 20)) /dev/urandom >"$T/q1/one.bin"
head -c $((8 << 20)) /dev/urandom >"$T/q2/two.bin"
on B -q backup --host racer-1 "$T/q1" 2>"$T/q1.err" &
r1=$!
on C -q backup --host racer-2 "$T/q2" 2>"$T/q2.err" &
r2=$!
ok=0
wait $r1 && ok=$((ok + 1))
wait $r2 && ok=$((ok + 1))
now=$(usage_on A | jq .bytes)
((now <= max)) || fail "two uploads through two instances passed the quota together: $now stored > $max"
((ok == 1)) || fail "$ok of the two racing uploads were stored (room for one): $(cat "$T/q1.err" "$T/q2.err")"
pass "two racing 8 MiB uploads through B and C into 12 MiB of room: one stored, one refused ($now <= $max bytes)"
as_on "$OP" A -q tenant limits a

# An instance killed in the middle of a backup: the client, given B and C, carries on through the other.
mkdir -p "$T/long"
head -c $((160 << 20)) /dev/urandom >"$T/long/checkpoint.bin"
on B,C --json backup --host failover "$T/long" >"$T/long.json" 2>"$T/long.err" &
client=$!
uploads() { api "$OP" "$1" /metrics | awk '/^mvault_http_requests_total\{action="chunks.upload",status="200"\}/ {print $2}'; }
victim=
for _ in $(seq 600); do
  for n in B C; do
    [[ -n $(uploads $n) ]] && victim=$n && break 2
  done
  kill -0 $client 2>/dev/null || break
  sleep 0.05
done
[[ -n $victim ]] || fail "no upload reached B or C: $(cat "$T/long.err")"
kill -KILL "${PID_OF[$victim]}"
wait "${PID_OF[$victim]}" 2>/dev/null || true
wait $client || fail "the backup did not survive instance $victim's SIGKILL: $(cat "$T/long.err")"
survivor=B
[[ $victim == B ]] && survivor=C
[[ -n $(uploads $survivor) ]] || fail "the backup finished without uploading through $survivor"
snap=$(jq -r .snapshot "$T/long.json")
on A -q restore "$snap" --target "$T/long-out"
cmp "$T/long/checkpoint.bin" "$T/long-out$T/long/checkpoint.bin" || fail "the snapshot made across the kill differs"
"$M" --vault "$V" -q check --read-data >/dev/null || fail "check finds damage after the kill"
pass "instance $victim SIGKILLed mid-backup (after its first upload): the client went on through $survivor; 160 MiB restore identical, check clean"

# S3 through every gateway: one tenant's buckets, whichever instance answers.
S3KEY=$(as_on "$OP" A --json token create --s3 --tenant a --role writer)
s3() { # GATEWAY OP ARGS...: one S3 call through one instance's gateway (boto3, retries off)
  local n=$1; shift
  S3_URL=${S3[$n]} S3_KEY=$S3KEY python3 "$T/s3ops.py" "$@"
}
cat >"$T/s3ops.py" <<'EOF'
import json, os, sys
import boto3
from botocore.config import Config
key = json.loads(os.environ["S3_KEY"])
c = boto3.client("s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=key["access_key_id"],
                 aws_secret_access_key=key["secret_access_key"], region_name="us-east-1",
                 verify=os.environ["MVAULT_TLS_CA"],
                 config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
op, args = sys.argv[1], sys.argv[2:]
if op == "mb":
    c.create_bucket(Bucket=args[0])
elif op == "put":
    c.put_object(Bucket=args[0], Key=args[1], Body=open(args[2], "rb").read())
elif op == "get":
    open(args[2], "wb").write(c.get_object(Bucket=args[0], Key=args[1])["Body"].read())
elif op == "ls":
    print(" ".join(o["Key"] for o in c.list_objects_v2(Bucket=args[0]).get("Contents", [])))
elif op == "mpu-start":
    print(c.create_multipart_upload(Bucket=args[0], Key=args[1])["UploadId"])
elif op == "mpu-part":
    r = c.upload_part(Bucket=args[0], Key=args[1], UploadId=args[2], PartNumber=int(args[3]),
                      Body=open(args[4], "rb").read())
    print(r["ETag"])
elif op == "mpu-parts":
    print(" ".join(str(p["PartNumber"]) for p in c.list_parts(Bucket=args[0], Key=args[1], UploadId=args[2]).get("Parts", [])))
elif op == "mpu-done":
    parts = [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(args[3:])]
    c.complete_multipart_upload(Bucket=args[0], Key=args[1], UploadId=args[2], MultipartUpload={"Parts": parts})
EOF
head -c $((3 << 20)) /dev/urandom >"$T/obj.bin"
s3 A mb ckpts
s3 "$survivor" put ckpts step-1/model.safetensors "$T/obj.bin"
s3 A get ckpts step-1/model.safetensors "$T/obj-a.bin"
cmp "$T/obj.bin" "$T/obj-a.bin" || fail "A read different bytes than were put through $survivor"
[[ $(s3 A ls ckpts) == "step-1/model.safetensors" ]] || fail "A lists $(s3 A ls ckpts)"
pass "S3: a bucket made through A and an object put through $survivor: A reads it back identical and lists it"

# A multipart upload begun on one instance, which is then killed between its parts; the client finishes it
# through another (parts of 6 MiB, the last of 3).
head -c $((6 << 20)) /dev/urandom >"$T/part1"
head -c $((6 << 20)) /dev/urandom >"$T/part2"
head -c $((3 << 20)) /dev/urandom >"$T/part3"
upload=$(s3 "$survivor" mpu-start ckpts step-2/model.safetensors)
e1=$(s3 "$survivor" mpu-part ckpts step-2/model.safetensors "$upload" 1 "$T/part1")
kill -KILL "${PID_OF[$survivor]}"
wait "${PID_OF[$survivor]}" 2>/dev/null || true
e2=$(s3 A mpu-part ckpts step-2/model.safetensors "$upload" 2 "$T/part2")
e3=$(s3 A mpu-part ckpts step-2/model.safetensors "$upload" 3 "$T/part3")
s3 A mpu-done ckpts step-2/model.safetensors "$upload" "$e1" "$e2" "$e3"
s3 A get ckpts step-2/model.safetensors "$T/mpu-out"
cat "$T/part1" "$T/part2" "$T/part3" | cmp - "$T/mpu-out" || fail "the multipart object finished through A differs"
pass "S3: a multipart upload begun on $survivor (SIGKILLed after part 1) finished through A, 15 MiB identical"

# An instance SIGKILLed in the middle of a part's body: a fourth instance, D, holds at its first pack write
# (the fault point pack-written, on a progress signal, not a sleep) while a 40 MiB part streams into it, and
# is killed there. Nothing of the half-stored part is visible; the client sends it again through A and
# completes the upload, and the object is byte-identical.
export MVAULT_TEST_PAUSE=pack-written@1 MVAULT_TEST_PAUSE_FILE=$T/paused-D
start_instance D --tls-cert "$T/state-A/server-cert.pem" --tls-key "$T/state-A/server-key.pem"
unset MVAULT_TEST_PAUSE MVAULT_TEST_PAUSE_FILE
s3 D ls ckpts >/dev/null 2>"$T/d-ls.err" || fail "D does not answer: $(tail -n 3 "$T/d-ls.err") / $(tail -n 5 "$T/srv-D.err")"
head -c $((40 << 20)) /dev/urandom >"$T/big1"
head -c $((2 << 20)) /dev/urandom >"$T/big2"
upload=$(s3 A mpu-start ckpts step-3/model.safetensors)
s3 D mpu-part ckpts step-3/model.safetensors "$upload" 1 "$T/big1" >"$T/d.etag" 2>"$T/d.err" &
client=$!
for _ in $(seq 6000); do
  [[ -e $T/paused-D ]] && break
  kill -0 $client 2>/dev/null || fail "the part through D ended before D wrote a pack: $(cat "$T/d.err")"
  sleep 0.01
done
[[ -e $T/paused-D ]] || fail "D never reached its first pack write"
kill -KILL "${PID_OF[D]}"
wait "${PID_OF[D]}" 2>/dev/null || true
if wait $client; then fail "the part through D was answered although D was killed mid-body"; fi
[[ -z $(s3 A mpu-parts ckpts step-3/model.safetensors "$upload") ]] || fail "a half-stored part is visible"
e1=$(s3 A mpu-part ckpts step-3/model.safetensors "$upload" 1 "$T/big1")
e2=$(s3 A mpu-part ckpts step-3/model.safetensors "$upload" 2 "$T/big2")
s3 A mpu-done ckpts step-3/model.safetensors "$upload" "$e1" "$e2"
s3 A get ckpts step-3/model.safetensors "$T/big-out"
cat "$T/big1" "$T/big2" | cmp - "$T/big-out" || fail "the object finished after D's kill differs"
"$M" --vault "$V" -q check --read-data >/dev/null || fail "check finds damage after D's kill mid-part"
pass "S3: D SIGKILLed in the middle of a 40 MiB part (at its first pack write): no part visible, the part sent again through A, the upload completed, 42 MiB read back identical, check clean"
# The shared schedule ran once per second between the instances, never twice in one second: each run's
# record (from any instance's chain) carries its start, and a run takes the job's lease for a second.
as_on "$OP" A --json audit show >"$T/audit.json"
starts=$(jq -r '[.[] | select(.record.action == "job.forget")] | map(.record.time) | .[]' "$T/audit.json")
runs=$(wc -l <<<"$starts")
distinct=$(sort -u <<<"$starts" | wc -l)
chains=$(jq -r '[.[] | select(.record.action == "job.forget") | .chain] | unique | length' "$T/audit.json")
((runs >= 3)) || fail "the scheduled job ran only $runs times"
((distinct == runs)) || fail "the scheduled job ran twice in one second ($runs runs in $distinct seconds): no lease"
pass "a schedule given to every instance: $runs runs of the job, by $chains instances, never two in one second"
echo "three instances share one catalog"
