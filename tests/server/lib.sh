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
