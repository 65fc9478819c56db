"""A real SMTP server for the messaging tests (aiosmtpd): STARTTLS required, every
accepted message written to a folder, and ways to fail on purpose.

    python3 smtp_server.py PORT CERT KEY OUT [--refuse N] [--drop N] [--slow SECONDS]

--refuse N: the first N DATA commands get 451 (try again later), nothing kept.
--drop N:   the first N connections are closed at DATA, before any reply, nothing kept.
--slow S:   each DATA waits S seconds before it is accepted (kept, then 250); a client
            that goes away meanwhile cancels it (nothing kept, as no 250 was sent).
Prints READY when it listens. Each DATA received leaves OUT/data-<n>.started; each kept message is OUT/<n>.eml, with OUT/<n>.json holding
the envelope and whether the session was under TLS.
"""

import argparse
import asyncio
import json
import os
import ssl
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out, refuse, drop, slow):
        self.out, self.refuse, self.drop, self.slow = out, refuse, drop, slow
        self.kept = self.started = 0

    async def handle_DATA(self, server, session, envelope):
        self.started += 1
        open(os.path.join(self.out, f"data-{self.started:04d}.started"), "w").close()
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 Try again later"
        if self.drop > 0:
            self.drop -= 1
            server.transport.close()
            return "421 4.3.0 Closing"
        if self.slow:
            await asyncio.sleep(self.slow)
        self.kept += 1
        name = os.path.join(self.out, f"{self.kept:04d}")
        with open(name + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        # Written aside and renamed: a reader never sees half a file.
        with open(name + ".json.part", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "tls": session.ssl is not None, "at": time.time()}, f)
        os.replace(name + ".json.part", name + ".json")
        return f"250 2.0.0 Ok: queued as {self.kept:04d}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("out")
    parser.add_argument("--refuse", type=int, default=0)
    parser.add_argument("--drop", type=int, default=0)
    parser.add_argument("--slow", type=float, default=0)
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    handler = Handler(args.out, args.refuse, args.drop, args.slow)
    controller = Controller(handler, hostname="127.0.0.1", port=args.port,
                            tls_context=context, require_starttls=True,
                            server_hostname="localhost")
    controller.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
