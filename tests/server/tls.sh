#!/usr/bin/env bash
# Both listeners of `mvault server` (the HTTP API and the S3 gateway) scanned from outside by sslyze (PyPI, a
# TLS scanner): no SSL 2/3, TLS 1.0 or 1.1; TLS 1.2 only with forward-secret AEAD suites (ECDHE with GCM or
# ChaCha20-Poly1305); TLS 1.3 offered; no client-initiated renegotiation, compression, Heartbleed, CCS
# injection or ROBOT. (The self-signed certificate fails path validation, as it must; clients trust it with
# --tls-ca.)
#
# Usage: MVAULT_BIN=target/debug/mvault tests/server/tls.sh   (needs jq and python3 with sslyze)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
python3 -c 'import sslyze' 2>/dev/null || fail "python3 needs sslyze (pip install sslyze); ./test installs it"

SERVER_ARGS="--s3-listen 127.0.0.1:0" start_server
S3_URL=$(jq -r .s3 "$T/srv.json")
for listener in "API ${URL#https://}" "S3 ${S3_URL#https://}"; do
    read -r name hostport <<<"$listener"
    python3 -m sslyze "$hostport" --json_out="$T/scan-$name.json" --quiet >/dev/null 2>&1 || true
    [[ -s $T/scan-$name.json ]] || fail "sslyze wrote no report for the $name listener"
    summary=$(python3 - "$T/scan-$name.json" 2>&1 <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))["server_scan_results"][0]
if report["scan_status"] != "COMPLETED" or report["connectivity_status"] != "COMPLETED":
    sys.exit(f"scan did not complete: {report['scan_status']} {report['connectivity_status']}")
scan = report["scan_result"]
def result(check):
    entry = scan[check]
    if entry["status"] != "COMPLETED":
        sys.exit(f"{check}: {entry['status']} {entry.get('error_reason')}")
    return entry["result"]
def accepted(check):
    return [c["cipher_suite"]["name"] for c in result(check)["accepted_cipher_suites"]]
problems = []
for old in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"]:
    if accepted(old):
        problems.append(f"{old}: {accepted(old)}")
tls12 = accepted("tls_1_2_cipher_suites")
weak = [s for s in tls12 if "ECDHE" not in s or not ("GCM" in s or "CHACHA20_POLY1305" in s)]
if weak:
    problems.append(f"weak TLS 1.2 suites: {weak}")
tls13 = accepted("tls_1_3_cipher_suites")
if not tls13:
    problems.append("TLS 1.3 not offered")
reneg = result("session_renegotiation")
if reneg["is_vulnerable_to_client_renegotiation_dos"] or reneg["client_renegotiations_success_count"]:
    problems.append(f"client renegotiation accepted: {reneg}")
if result("tls_compression")["supports_compression"]:
    problems.append("TLS compression")
if result("heartbleed")["is_vulnerable_to_heartbleed"]:
    problems.append("Heartbleed")
if result("openssl_ccs_injection")["is_vulnerable_to_ccs_injection"]:
    problems.append("CCS injection")
if result("robot")["robot_result"].startswith("VULNERABLE"):
    problems.append(f"ROBOT: {result('robot')['robot_result']}")
if problems:
    sys.exit("; ".join(problems))
print(f"TLS 1.2: {len(tls12)} suites, all ECDHE+AEAD; TLS 1.3: {len(tls13)} suites")
EOF
) || fail "the $name listener: $summary"
    pass "$name listener ($hostport): nothing below TLS 1.2, no weak suite, no renegotiation; $summary"
done
echo "TLS scan found nothing"
