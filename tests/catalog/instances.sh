#!/usr/bin/env bash
# Two `mvault server` instances over one vault and one PostgreSQL catalog (MVAULT_CATALOG, set by the test
# that starts PostgreSQL, crates/cli/tests/catalog.rs): a file backed up through instance A is sent as zero
# new chunks through instance B, B restores it exactly, and both count the tenant's usage alike.
set -euo pipefail
: "${MVAULT_CATALOG:?set MVAULT_CATALOG to a postgres:// URL}"
# shellcheck source=../server/lib.sh
source "$(dirname "$0")/../server/lib.sh"

"$M" --vault "$V" -q tenant create a
W=$("$M" --vault "$V" --json token create --tenant a --role writer | jq -r .token)

PIDS=()
start_instance() { # NAME: a server with its own state directory; sets URL_NAME and CA_NAME
  local n=$1
  "$M" --vault "$V" --json server --listen 127.0.0.1:0 --state-dir "$T/state-$n" >"$T/srv-$n.json" 2>"$T/srv-$n.err" &
  PIDS+=($!)
  for _ in $(seq 200); do [[ -s $T/srv-$n.json ]] && break; sleep 0.1; done
  [[ -s $T/srv-$n.json ]] || fail "instance $n did not start: $(cat "$T/srv-$n.err")"
  printf -v "URL_$n" '%s' "$(jq -r .listen "$T/srv-$n.json")"
  printf -v "CA_$n" '%s' "$T/state-$n/server-cert.pem"
}
as_on() { # TOKEN NAME ARGS...: the CLI against one instance
  local tok=$1 n=$2 url ca; shift 2
  url=URL_$n ca=CA_$n
  MVAULT_TOKEN=$tok MVAULT_TLS_CA=${!ca} timeout 240 "$M" --vault "${!url}" "$@"
}
on() { as_on "$W" "$@"; } # as the tenant's writer
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT

start_instance A
start_instance B
pass "two instances up: $URL_A and $URL_B"

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
[[ $ua == "$ub" ]] || fail "usage differs between instances: A $ua, B $ub"
pass "both instances count the tenant's usage alike: $ua"
echo "two instances share one catalog"
