#!/usr/bin/env bash
# ceph/s3-tests against the gateway, by hand (not in CI: the suite is not ours to commit, and it takes 15 min).
#
#   tests/s3-conformance/run.sh /path/to/s3-tests [pytest args...]
#
# Needs a checkout of https://github.com/ceph/s3-tests (the counts in docs/S3.md are from commit 8f0ae7b) and
# its Python requirements (boto3 munch gevent isodate requests pytz httplib2 lxml pytest pytest-timeout).
# Starts a release `mvault server --s3-listen` on 127.0.0.1 with three tenants (main, alt, tenant; the
# suite's three users), runs test_s3.py without the tests marked fails_on_aws, writes junit.xml in the work
# directory and prints the counts per feature group and the suspected wrong successes (classify.py).
set -euo pipefail
SUITE=$(cd "${1:?usage: run.sh /path/to/s3-tests}" && pwd)
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=${S3_CONFORMANCE_DIR:-/tmp/mvault-s3-conformance}
(cd "$ROOT" && cargo build -q --release -p mvault)
M=$ROOT/target/release/mvault
export MVAULT_PASSWORD=s3-conformance-not-secret
rm -rf "$W" && mkdir -p "$W" && cd "$W"
$M -q --vault v init >/dev/null
for t in main alt tenant; do $M -q --vault v tenant create $t >/dev/null; done
key() { $M --vault v --json token create --s3 --tenant "$1" --role writer; }
MAIN=$(key main) ALT=$(key alt) TEN=$(key tenant)
$M --vault v --json server --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --state-dir state >srv.json 2>srv.err &
SRV=$!
trap 'kill $SRV 2>/dev/null' EXIT
for _ in $(seq 100); do [[ -s srv.json ]] && break; sleep 0.1; done
PORT=$(jq -r .s3 srv.json | sed 's/.*://')
f() { jq -r ".$2" <<<"$1"; }
user() { # SECTION NAME KEYJSON
    printf '[%s]\ndisplay_name = %s\nuser_id = %s\nemail = %s@example.com\naccess_key = %s\nsecret_key = %s\n' \
        "$1" "$2" "$2" "$2" "$(f "$3" access_key_id)" "$(f "$3" secret_access_key)"
}
{
    printf '[DEFAULT]\nhost = 127.0.0.1\nport = %s\nis_secure = True\nssl_verify = False\n' "$PORT"
    printf '[fixtures]\nbucket prefix = st-{random}-\n'
    user "s3 main" main "$MAIN"; echo "api_name = default"
    user "s3 alt" alt "$ALT"
    user "s3 tenant" tenant "$TEN"; echo "tenant = tenant"
    # IAM is not offered; the suite wants the sections to exist
    for s in iam "iam root" "iam alt root"; do
        printf '[%s]\naccess_key = x\nsecret_key = x\ndisplay_name = x\nuser_id = x\nemail = x@example.com\n' "$s"
    done
} >s3tests.conf
cd "$SUITE"
S3TEST_CONF=$W/s3tests.conf PYTHONWARNINGS=ignore python3 -m pytest -q -p no:cacheprovider \
    s3tests/functional/test_s3.py -m 'not fails_on_aws' --junitxml="$W/junit.xml" -o junit_family=xunit1 \
    --timeout 120 "$@" | tail -n 3 || true
python3 "$HERE/classify.py" "$SUITE/s3tests/functional/test_s3.py" "$W/junit.xml"
