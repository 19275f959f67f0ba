#!/usr/bin/env bash
# Load test on 127.0.0.1: 3 tenants x 2 clients back up and restore at once (each 16 MiB of its own plus
# 8 MiB its tenant's other client also has), then every restore is compared byte for byte. Reports the
# throughput and the p50/p99 request latency (from the server's histogram), and fails on any error.
#
# Usage: MVAULT_BIN=target/debug/mvault tests/server/load.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
start_server

clients=()
for t in t1 t2 t3; do
    R "$OP" tenant create "$t" >/dev/null
    head -c $((8 << 20)) /dev/urandom >"$T/shared-$t"
    for c in 1 2; do
        tok=$(R "$OP" --json token create --tenant "$t" --role writer | jq -r .token)
        d=$T/src/$t-$c
        mkdir -p "$d"
        head -c $((16 << 20)) /dev/urandom >"$d/own.bin"
        cp "$T/shared-$t" "$d/shared.bin"
        clients+=("$t-$c:$tok")
    done
done
start=$EPOCHREALTIME
pids=()
for entry in "${clients[@]}"; do
    name=${entry%%:*}; tok=${entry#*:}
    (
        R "$tok" -q --json backup "$T/src/$name" >"$T/$name.backup.json"
        snap=$(jq -r .snapshot "$T/$name.backup.json")
        R "$tok" -q restore "$snap" --target "$T/out/$name" >/dev/null
        diff -r "$T/src/$name" "$T/out/$name$T/src/$name"
    ) >"$T/$name.log" 2>&1 &
    pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "client ${clients[$i]%%:*} failed:"; cat "$T/${clients[$i]%%:*}.log"; failed=1; }
done
secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}')
[[ $failed == 0 ]] || fail "a client failed"
metrics=$(curl -sS --cacert "$MVAULT_TLS_CA" -H "Authorization: Bearer $OP" "$URL/metrics")
errors=$(awk '/^mvault_http_errors_total / {print $2}' <<<"$metrics")
[[ $errors == 0 ]] || fail "$errors requests answered 5xx"
sent=$(jq -s 'map(.bytes_sent) | add' "$T"/*.backup.json)
total=$(( ${#clients[@]} * (24 << 20) ))
# p50/p99 over all requests, from the histogram: the smallest bucket bound holding that share of requests
read -r p50 p99 count < <(python3 -c '
import re, sys
c, tot = {}, 0
for line in sys.stdin:
    m = re.match(r"mvault_http_request_duration_seconds_bucket\{action=\"[^\"]*\",le=\"([^\"]+)\"\} (\d+)", line)
    if m:
        if m[1] == "+Inf": tot += int(m[2])
        else: c[float(m[1])] = c.get(float(m[1]), 0) + int(m[2])
def pct(q): return next((str(le) for le in sorted(c) if c[le] >= q * tot), "+Inf")
print(pct(0.5), pct(0.99), tot)' <<<"$metrics")
echo "load: ${#clients[@]} clients in 3 tenants backed up and restored $((total >> 20)) MiB in $secs s"
echo "load: $(awk -v b="$total" -v s="$secs" 'BEGIN {printf "%.1f", 2 * b / s / 1e6}') MB/s through the server (backup + restore), $((sent >> 20)) MiB uploaded after dedup"
echo "load: $count requests, latency p50 <= ${p50} s, p99 <= ${p99} s, 0 errors, every restore identical"
echo "load test passed"
