# Shared by attack.sh and load.sh (sourced): a fresh vault in a temporary directory, its first operator
# token ($OP), and start_server, which runs `mvault server` on a free 127.0.0.1 port and sets $URL, $SRV and
# MVAULT_TLS_CA. R TOKEN ARGS... runs the CLI against the server as that token.
M=${MVAULT_BIN:?set MVAULT_BIN to the mvault binary}
T=$(mktemp -d)
SRV=
cleanup() { [[ -n $SRV ]] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
export MVAULT_PASSWORD=server-test-pw
V=$T/vault
"$M" -q --vault "$V" init >/dev/null
OP=$("$M" --vault "$V" --json token create --role operator | jq -r .token)

start_server() {
    rm -f "$T/srv.json"
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of arguments
    "$M" --vault "$V" --json server --listen 127.0.0.1:0 --state-dir "$T/state" ${SERVER_ARGS:-} >"$T/srv.json" 2>"$T/srv.err" &
    SRV=$!
    for _ in $(seq 100); do [[ -s $T/srv.json ]] && break; sleep 0.1; done
    [[ -s $T/srv.json ]] || fail "server did not start: $(cat "$T/srv.err")"
    URL=$(jq -r .listen "$T/srv.json")
    export MVAULT_TLS_CA=$T/state/server-cert.pem
}

R() { local tok=$1; shift; MVAULT_TOKEN=$tok timeout 240 "$M" --vault "$URL" "$@"; }

# slow_body METHOD URL [CURL ARGS...]: send 32 MiB at 2 MB/s without `Expect: 100-continue` (as an attacker
# would); prints the answer's status, how many body bytes had gone out when the exchange ended, and curl's
# exit code. A server that authenticates from the headers answers after a fraction of the body; one that
# reads it all first, after all 32 MiB (16 s). A server that refuses and closes without reading what is still
# coming resets the connection, and the client may lose the answer: status 000, curl exit 55 or 56.
slow_body() {
    local method=$1 url=$2 out code=0; shift 2
    [[ -s $T/slow.body ]] || head -c $((32 << 20)) /dev/urandom >"$T/slow.body"
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_upload}' --cacert "$MVAULT_TLS_CA" --limit-rate 2M \
        -X "$method" -H 'Expect:' -H 'content-type: application/octet-stream' "$@" --data-binary @"$T/slow.body" \
        "$url" 2>/dev/null) || code=$?
    echo "$out $code"
}
