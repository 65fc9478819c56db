#!/usr/bin/env bash
# Reminders at scale: N appointments (default 100,000; half the patients reachable by SMS,
# half by email) are loaded with `fhir-server import` (each queues its reminder plan, as
# any booking does), then the server plans them (a CommunicationRequest and a send job
# each) and, once the clock is moved past their time, sends them through the local SMTP
# server (aiosmtpd, STARTTLS) and the local Twilio-compatible API of the tests, recording a
# Communication each. Reports plans/s, sends/s and the server's memory (peak and after).
#
# Needs: cargo build --release -p fhir-server; python3 with aiosmtpd; openssl.
# Usage: fhir-tools/scripts/reminders-bench.sh [N] [postgres://...]   (default: SQLite)
set -euo pipefail
N=${1:-100000}
DB_URL=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../target/release}
TESTS=$HERE/../../fhir-server/tests/messaging
DIR=$(mktemp -d); echo "working in $DIR" >&2
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
PORT=18194; SMTP_PORT=18195; SMS_PORT=18196
B=http://127.0.0.1:$PORT/fhir
DB=${DB_URL:-$DIR/bench.db}

cd "$DIR"
openssl req -x509 -days 2 -subj "/CN=Bench CA" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem 2>/dev/null
openssl req -subj /CN=localhost -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem 2>/dev/null
mkdir -p mail sms
python3 "$TESTS/smtp_server.py" $SMTP_PORT cert.pem key.pem mail > smtp.out & PIDS+=($!)
python3 "$TESTS/twilio_server.py" $SMS_PORT AC0123456789 secret0123 sms > sms.out & PIDS+=($!)

# The practice: 10,000 practitioners, each with visits every 30 minutes from 48 hours on
# (100,000 visits within 5 hours, so that every reminder, 24 hours before, comes before
# the first visit).
python3 - "$N" > data.ndjson <<'PY'
import json, sys, time
n = int(sys.argv[1])
first = (int(time.time()) // 3600 + 48) * 3600
def at(t): return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
for i in range(n):
    telecom = ([{"system": "phone", "use": "mobile", "value": f"+1555{i:07d}"}] if i % 2 == 0
               else [{"system": "email", "value": f"p{i}@example.org"}])
    print(json.dumps({"resourceType": "Patient", "id": f"p{i}", "name": [{"family": "Bench", "given": [f"P{i}"]}], "telecom": telecom}))
for i in range(n):
    start = first + (i // 10000) * 1800
    print(json.dumps({"resourceType": "Appointment", "id": f"a{i}", "status": "booked",
        "start": at(start), "end": at(start + 1800),
        "participant": [{"actor": {"reference": f"Patient/p{i}"}, "status": "accepted"},
                        {"actor": {"reference": f"Practitioner/dr{i % 10000}"}, "status": "accepted"}]}))
PY
python3 - "$SMTP_PORT" "$SMS_PORT" > settings.json <<'PY'
import json, sys
print(json.dumps({"time_zone": "America/New_York", "practice": "Bench Clinic",
    "email": {"host": "127.0.0.1", "port": int(sys.argv[1]), "from": "Bench <r@bench.example>",
              "ca_certificate": open("ca.pem").read()},
    "sms": {"api_url": f"http://127.0.0.1:{sys.argv[2]}", "account_sid": "AC0123456789",
            "auth_token": "secret0123", "from": "+15550000000"},
    "reminders": {"before_hours": [24], "channels": ["sms", "email"],
        "templates": {"en": {"subject": "Your visit", "text": "Hello {patient}, see you on {date} at {time}."}}}}))
PY
"$BIN/fhir-server" messaging set --database "$DB" --file settings.json --base-url http://fhir.test > /dev/null
start=$(date +%s.%N)
"$BIN/fhir-server" import --database "$DB" data.ndjson > import.out 2>&1
echo "imported $N patients and $N appointments in $(echo "$(date +%s.%N) - $start" | bc) s"

count() { curl -s "$B/$1&_summary=count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total", 0))'; }
wait_for() { # query, target, label
  local t0; t0=$(date +%s.%N)
  local done=0
  while [ "$done" -lt "$2" ]; do
    sleep 1; done=$(count "$1")
    if [ "$(echo "$(date +%s.%N) - $t0 > 1800" | bc)" = 1 ]; then echo "$3: only $done after 30 minutes"; exit 1; fi
  done
  local secs; secs=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "$3: $2 in $secs s, $(echo "$2 / $secs" | bc)/s"
}
"$BIN/fhir-server" serve --database "$DB" --listen 127.0.0.1:$PORT --auth none --test-clock \
  --admin-token bench --base-url http://fhir.test > server.log 2>&1 & SERVER=$!; PIDS+=($SERVER)
for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && break; sleep 0.2; done
wait_for "CommunicationRequest?status=active" "$N" "planned"
curl -s -X POST http://127.0.0.1:$PORT/admin/clock -H 'authorization: Bearer bench' \
  -d "{\"advance_seconds\": $(( (24 + 5) * 3600 + 60 ))}" > /dev/null
wait_for "Communication?status=completed" "$N" "sent"
grep -E 'VmHWM|VmRSS' /proc/$SERVER/status | tr -s ' ' | tr '\n' ' '; echo
echo "SMTP kept $(ls mail | grep -c eml) messages; the SMS API $(ls sms | wc -l)"
