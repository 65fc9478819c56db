"""A Twilio-compatible Messages API for the messaging tests: checks what it receives and
keeps it.

    python3 twilio_server.py PORT SID TOKEN OUT [--fail N]

POST /2010-04-01/Accounts/SID/Messages.json (To, From, Body, StatusCallback) or
.../Calls.json (To, From, Twiml, StatusCallback) with HTTP Basic SID:TOKEN answers 201
{"sid": "SM0001" or "CA0001", ...} and keeps the request as OUT/0001.json (its kind, its
form, its I-Twilio-Idempotency-Token); a bad account or password is 401, a missing To,
Body or Twiml 400 (code 21604), a To of +15555550199 400 (code 21211, an
invalid number). --fail N: the first N good requests get 503, nothing kept.
Prints READY when it listens.
"""

import base64
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PORT, SID, TOKEN, OUT = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
FAIL = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--fail" else 0
state = {"kept": 0, "fail": FAIL}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        kinds = {f"/2010-04-01/Accounts/{SID}/Messages.json": ("message", "Body", "SM"),
                 f"/2010-04-01/Accounts/{SID}/Calls.json": ("call", "Twiml", "CA")}
        if self.path not in kinds:
            return self.answer(404, {"code": 20404, "message": "not found"})
        kind, content, prefix = kinds[self.path]
        if self.headers.get("Authorization") != expected:
            return self.answer(401, {"code": 20003, "message": "authenticate"})
        if not form.get("To") or not form.get(content):
            return self.answer(400, {"code": 21604, "message": f"To and {content} are required"})
        if form["To"] == "+15555550199":
            return self.answer(400, {"code": 21211, "message": "invalid To number"})
        if state["fail"] > 0:
            state["fail"] -= 1
            return self.answer(503, {"code": 20500, "message": "try later"})
        state["kept"] += 1
        sid = f"{prefix}{state['kept']:04d}"
        kept = os.path.join(OUT, f"{state['kept']:04d}.json")
        # Written aside and renamed: a reader never sees half a file.
        with open(kept + ".part", "w") as f:
            json.dump({"sid": sid, "kind": kind, "form": form,
                       "idempotency": self.headers.get("I-Twilio-Idempotency-Token")}, f)
        os.replace(kept + ".part", kept)
        self.answer(201, {"sid": sid, "status": "queued", "to": form["To"], "from": form.get("From")})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print("READY", flush=True)
server.serve_forever()
