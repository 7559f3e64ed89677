#!/usr/bin/env python3
"""A small webhook receiver for `make demo SINK=webhook`: prints each event tailbox POSTs,
checks its Standard Webhooks signature (HMAC-SHA256 over "{id}.{timestamp}.{body}" with the
whsec_ secret), drops duplicates by webhook-id, and answers 200 -- or 400 for a payload
containing "reject", to show a dead letter.

    scripts/webhook-receiver.py --secret-file FILE [--port N] [--port-file FILE]

Standard library only. Port 0 (the default) picks a free port; --port-file receives it.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    with open(args.secret_file, encoding="utf-8") as f:
        key = base64.b64decode(f.read().strip().removeprefix("whsec_"))
    seen = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            wid = self.headers.get("webhook-id", "")
            ts = self.headers.get("webhook-timestamp", "0")
            signed = f"{wid}.{ts}.".encode() + body
            expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            given = self.headers.get("webhook-signature", "").split(" ")
            fresh = abs(time.time() - int(ts or 0)) <= 300
            verified = fresh and any(hmac.compare_digest(expected, g) for g in given)
            status = 400 if (not verified or b"reject" in body) else 200
            with lock:
                duplicate = wid in seen
                if status == 200:
                    seen.add(wid)
            try:
                shown = json.dumps(json.loads(body), separators=(",", ":"))
            except ValueError:
                shown = body.decode("utf-8", "replace")
            print(
                f"receiver: POST {self.path} {status} webhook-id={wid} "
                f"signature={'ok' if verified else 'BAD'}"
                f"{' (duplicate)' if duplicate else ''} "
                f"aggregate={self.headers.get('tailbox-aggregate-id', '-')} "
                f"lsn={self.headers.get('tailbox-lsn', '-')} {shown}",
                flush=True,
            )
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.port_file:
        with open(args.port_file, "w", encoding="utf-8") as f:
            f.write(str(server.server_address[1]))
    print(f"receiver: listening on http://127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
