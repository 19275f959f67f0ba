#!/usr/bin/env bash
# schemathesis (PyPI) against docs/openapi.yaml on a real `mvault server`: every endpoint fuzzed with
# generated requests, as the operator and as a tenant's writer (each also meets the other's endpoints and
# must get 403). Checks: no 5xx, every status code documented, every answer's content type and body matching
# the description. Tenant deletion is excluded (it would shred the tenants the run needs).
#
# Usage: MVAULT_BIN=target/debug/mvault tests/server/schema.sh   (needs jq and schemathesis)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v st >/dev/null || fail "schemathesis (st) is needed: pip install schemathesis; ./test installs it"
SPEC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/docs/openapi.yaml

start_server
R "$OP" tenant create a >/dev/null
W=$(R "$OP" --json token create --tenant a --role writer | jq -r .token)
mkdir -p "$T/data"
head -c 300000 /dev/urandom >"$T/data/f.bin"
R "$W" -q backup "$T/data" >/dev/null
pass "server at $URL with tenant a, one snapshot"

for who in operator writer; do
    tok=$OP
    [[ $who == writer ]] && tok=$W
    # From the scratch directory: schemathesis keeps a cache (.schemathesis/) where it runs.
    if ! (cd "$T" && st run "$SPEC" --url "$URL" -H "Authorization: Bearer $tok" --tls-verify "$MVAULT_TLS_CA" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --exclude-method DELETE --exclude-path-regex '^/v1/tenants/' --max-examples 25 --request-timeout 30 \
        --generation-deterministic --no-color >"$T/st-$who.log" 2>&1); then
        tail -60 "$T/st-$who.log" >&2
        fail "schemathesis found problems as the $who"
    fi
    summary=$(grep -E "passed|failed" "$T/st-$who.log" | tail -1)
    pass "schemathesis as the $who: $summary"
done
echo "schema checks passed"
