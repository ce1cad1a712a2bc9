"""TEST DOUBLE, never used by deploy or verify: stands in for an SGLang rank on the CPU lab.

tests/integration/test_cli.py runs it through a drop-in on the real server units, under the
process title `sglang::scheduler_test_double` (bash `exec -a`), so the ordered restart and
`status` act on real units. Rank 0's double answers GET /health_generate with 200, as a ready
SGLang server does (on every address, as --host 0.0.0.0: the router reaches it at the
cluster IP); the other ranks only sleep. For the rolling restart test it also answers
/v1/loads with no request in flight, and, started with --unhealthy-if PATH while PATH exists,
answers /health and /health_generate with 503: a group that does not come back.
"""

import argparse
import http.server
import json
import os
import time

UNHEALTHY = False
IDLE = json.dumps({"loads": [{"dp_rank": 0, "num_running_reqs": 0, "num_waiting_reqs": 0}]}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.split("?")[0] == "/v1/loads":
            code, body = 200, IDLE
        elif self.path in ("/health", "/health_generate"):
            code, body = (503, b"test double: unhealthy\n") if UNHEALTHY else (200, b"test double\n")
        else:
            code, body = 404, b""
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0, help="serve on this port (rank 0); 0: only sleep")
    p.add_argument("--unhealthy-if", default="", help="answer 503 on /health* when this file exists at start")
    args = p.parse_args()
    global UNHEALTHY
    UNHEALTHY = bool(args.unhealthy_if) and os.path.exists(args.unhealthy_if)
    if args.port:
        http.server.ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
