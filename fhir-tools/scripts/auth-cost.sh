#!/usr/bin/env bash
# What SMART authorization costs per request, counted in instructions by valgrind's
# callgrind (counts, not seconds: repeatable on a busy machine, unlike a load test):
#   - a read by id: --auth none against --auth smart with a Backend Services token, and
#     split into carrying the token (sent to --auth none, which ignores it) and checking it;
#   - a patient's search: the compartment search Patient/p7/Observation?code=... under
#     --auth none against Observation?code=... with patient p7's own token (which the server
#     runs as that compartment search, and whose answer it confines).
# Each case runs the server twice, with 100 and with 600 requests; the difference / 500 is
# the per-request count (start-up, shutdown and the first-request caches cancel out).
#
# Needs: cargo build --release -p fhir-server; valgrind; python3 with requests.
# Usage: fhir-tools/scripts/auth-cost.sh
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../../target/release}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
PORT=18193
B=http://127.0.0.1:$PORT/fhir

serve() { "$BIN/fhir-server" serve --database "$DIR/f.db" --listen 127.0.0.1:$PORT --auth "$1" > /dev/null 2>&1 & echo $!; }
ready() { for _ in $(seq 300); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && return; sleep 0.2; done; }

# Data: patient p7 with 20 Observations, and 50 other patients with 20 each.
P=$(serve none); ready
python3 - "$B" <<'PY'
import json, sys, urllib.request
b = sys.argv[1]
def send(method, url, body):
    r = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                               headers={"content-type": "application/fhir+json"})
    urllib.request.urlopen(r).read()
for p in ["p7"] + [f"q{n}" for n in range(50)]:
    entries = [{"resource": {"resourceType": "Patient", "id": p}, "request": {"method": "PUT", "url": f"Patient/{p}"}}]
    entries += [{"resource": {"resourceType": "Observation", "id": f"{p}-o{i}", "status": "final",
                 "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "subject": {"reference": f"Patient/{p}"}},
                 "request": {"method": "PUT", "url": f"Observation/{p}-o{i}"}} for i in range(20)]
    send("POST", b, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
PY
kill "$P"; wait "$P" 2>/dev/null || true

# Accounts and tokens (a backend, and patient p7 through the login and consent pages).
"$BIN/fhir-server" client create --database "$DIR/f.db" --id bench --type confidential-symmetric \
  --secret bench-secret-0123456789 --scopes 'system/*.rs' > /dev/null
"$BIN/fhir-server" client create --database "$DIR/f.db" --id papp --type public \
  --redirect-uri http://app.example/cb --scopes 'launch/patient patient/*.rs' > /dev/null
"$BIN/fhir-server" user create --database "$DIR/f.db" --username p7user \
  --password 'correct horse battery' --role patient --fhir-user Patient/p7 > /dev/null
P=$(serve smart); ready
SYSTEM=$(curl -s -u bench:bench-secret-0123456789 -d grant_type=client_credentials \
  -d 'scope=system/*.rs' $B/auth/token | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])')
PATIENT=$(python3 - "$B" <<'PY'
import base64, hashlib, html, re, sys, urllib.parse
import requests
b, verifier = sys.argv[1], "v" * 50
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
fields = lambda page: [(html.unescape(n), html.unescape(v)) for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', page)]
s = requests.Session()
page = s.get(b + "/auth/authorize", params=dict(response_type="code", client_id="papp",
    redirect_uri="http://app.example/cb", scope="launch/patient patient/*.rs", state="s", aud=b,
    code_challenge=challenge, code_challenge_method="S256")).text
page = s.post(b + "/auth/login", data=fields(page) + [("username", "p7user"), ("password", "correct horse battery")]).text
answer = s.post(b + "/auth/consent", data=[f for f in fields(page) if f[0] != "decision"] + [("decision", "allow")], allow_redirects=False)
code = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["location"]).query)["code"][0]
print(s.post(b + "/auth/token", data=dict(grant_type="authorization_code", code=code,
    redirect_uri="http://app.example/cb", client_id="papp", code_verifier=verifier)).json()["access_token"])
PY
)
kill "$P"; wait "$P" 2>/dev/null || true

# Instructions of a server run that answers `n` GETs of `path` with `header`.
instructions() { # mode n path header
  local out="$DIR/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/fhir-server" serve --database "$DIR/f.db" \
    --listen 127.0.0.1:$PORT --auth "$1" > /dev/null 2>&1 & local pid=$!
  ready
  python3 - "$2" "$3" "$4" <<'PY'
import http.client, sys
n, path, header = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", 18193)
headers = {"Authorization": header} if header else {}
for _ in range(n):
    c.request("GET", path, headers=headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, (r.status, path)
PY
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  grep -m1 "^summary:" "$out" | awk '{print $2}'
}
per_request() { # mode path header
  local few many
  few=$(instructions "$1" 100 "$2" "$3"); many=$(instructions "$1" 600 "$2" "$3")
  echo $(( (many - few) / 500 ))
}
report() { # label none smart
  python3 -c "import sys; n, s = int(sys.argv[2]), int(sys.argv[3]); print(f'{sys.argv[1]}: {n} instructions without a token, {s} with: {100 * (s - n) / n:+.1f}%')" "$@"
}
NONE=$(per_request none /fhir/Patient/p7 "")
CARRIED=$(per_request none /fhir/Patient/p7 "Bearer $SYSTEM")
SMART=$(per_request smart /fhir/Patient/p7 "Bearer $SYSTEM")
report "read by id (Backend Services token)" "$NONE" "$SMART"
# The same token sent to --auth none, which ignores it: what carrying a 700-byte header
# costs (parsing and copying it), apart from checking it.
report "  of which carrying the token (--auth none, token sent)" "$NONE" "$CARRIED"
report "  of which checking it (--auth smart against --auth none, token sent to both)" "$CARRIED" "$SMART"
NONE=$(per_request none "/fhir/Patient/p7/Observation?code=8480-6" "")
SMART=$(per_request smart "/fhir/Observation?code=8480-6" "Bearer $PATIENT")
report "patient search, 20 matches (patient token)" "$NONE" "$SMART"
