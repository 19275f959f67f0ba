#!/usr/bin/env bash
# A lock conflict gives the same typed answer on every interface (issue 17). A local `mvault prune` holds the
# vault's exclusive lock, paused at its `prune-after-repack` fault point, while the same vault is served by
# `mvault server --s3-listen`; then
#   - a local backup exits 1 (a failure that passes, not 2, a command to change), "the vault is locked";
#   - the HTTP API answers an upload 409 with Retry-After and a body of kind "locked" naming the holder;
#   - a remote backup through that API exits 1 with the same "the vault is locked (... `prune` ...)" line;
#   - an S3 PutObject is refused with SlowDown (HTTP 503), boto3's own retries off.
# Once the prune goes on, all three write again.
#
# Usage: MVAULT_BIN=target/debug/mvault tests/server/locks.sh   (needs curl, jq and python3 with boto3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
python3 -c 'import boto3' 2>/dev/null || fail "python3 needs boto3 (pip install boto3); ./test installs it"

SERVER_ARGS="--s3-listen 127.0.0.1:0" start_server
S3_URL=$(jq -r .s3 "$T/srv.json")
R "$OP" tenant create a >/dev/null
AW=$(R "$OP" --json token create --tenant a --role writer | jq -r .token)
S3KEY=$(R "$OP" --json token create --s3 --tenant a --role writer)
s3() {
    S3_URL=$S3_URL S3_CA=$MVAULT_TLS_CA S3_KEY=$S3KEY python3 - "$@" <<'EOF'
import json, os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
key = json.loads(os.environ["S3_KEY"])
c = boto3.client("s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=key["access_key_id"],
                 aws_secret_access_key=key["secret_access_key"], region_name="us-east-1",
                 verify=os.environ["S3_CA"],
                 config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
op = sys.argv[1]
if op == "mb":
    c.create_bucket(Bucket="ckpts")
    sys.exit(0)
try:
    c.put_object(Bucket="ckpts", Key=sys.argv[2], Body=os.urandom(4096))
    print("200 ok")
except ClientError as e:
    print(e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response["Error"].get("Message", ""))
EOF
}
s3 mb
mkdir -p "$T/src"
head -c 3000000 /dev/urandom >"$T/src/one.bin"
"$M" -q --vault "$V" backup "$T/src" >/dev/null
pass "server at $URL, S3 at $S3_URL, tenant a with a bucket"

# A local prune takes the exclusive lock and holds it at a named point until we let it go.
PAUSE=$T/prune.paused
MVAULT_TEST_PAUSE=prune-after-repack@1 MVAULT_TEST_PAUSE_FILE=$PAUSE "$M" -q --vault "$V" prune >"$T/prune.out" 2>&1 &
PRUNE=$!
for _ in $(seq 600); do [[ -e $PAUSE ]] && break; kill -0 $PRUNE 2>/dev/null || break; sleep 0.05; done
[[ -e $PAUSE ]] || fail "prune never reached prune-after-repack: $(cat "$T/prune.out")"

head -c 3000000 /dev/urandom >"$T/src/two.bin"
set +e
"$M" --vault "$V" backup "$T/src" >/dev/null 2>"$T/local.err"
code=$?
set -e
[[ $code == 1 ]] || fail "a local backup under a prune's lock exited $code, not 1: $(cat "$T/local.err")"
grep -q "the vault is locked (exclusive lock of \`prune\`" "$T/local.err" || fail "local: $(cat "$T/local.err")"
pass "local backup: exit 1, $(head -c 90 "$T/local.err")..."

curl -sS -D "$T/h" -o "$T/b" --cacert "$MVAULT_TLS_CA" -H "authorization: Bearer $AW" \
    -H 'content-type: application/octet-stream' --data-binary '' "$URL/v1/chunks"
status=$(head -1 "$T/h" | cut -d' ' -f2)
[[ $status == 409 ]] || fail "the API answered an upload under a lock $status: $(cat "$T/b")"
grep -qi '^retry-after: [0-9]' "$T/h" || fail "the 409 has no Retry-After: $(cat "$T/h")"
jq -e '.kind == "locked" and (.holder | contains("`prune`")) and (.expires | length > 0)' "$T/b" >/dev/null \
    || fail "the 409's body is not a typed lock conflict: $(cat "$T/b")"
pass "HTTP API: 409, Retry-After $(grep -i '^retry-after' "$T/h" | tr -d '\r' | cut -d' ' -f2) s, $(jq -c '{kind, holder}' "$T/b")"

set +e
R "$AW" backup "$T/src" >/dev/null 2>"$T/remote.err"
code=$?
set -e
[[ $code == 1 ]] || fail "a remote backup under the lock exited $code, not 1: $(cat "$T/remote.err")"
grep -q "the vault is locked (exclusive lock of \`prune\`" "$T/remote.err" || fail "remote: $(cat "$T/remote.err")"
pass "remote backup: exit 1, the same line"

got=$(s3 put locked.bin)
[[ $got == "503 SlowDown"* && $got == *"the vault is locked"* ]] || fail "S3 PutObject under the lock: $got"
pass "S3 PutObject: $(head -c 60 <<<"$got")..."

rm -f "$PAUSE"
wait $PRUNE || fail "the prune failed once let go: $(cat "$T/prune.out")"
"$M" -q --vault "$V" backup "$T/src" >/dev/null || fail "local backup after the prune"
R "$AW" -q backup "$T/src" >/dev/null || fail "remote backup after the prune"
[[ $(s3 put free.bin) == "200 ok" ]] || fail "S3 PutObject after the prune"
pass "after the prune: local, remote and S3 writes succeed"
echo "lock conflict checks passed"
