"""TEST DOUBLE, never used by deploy or verify: stands in for an SGLang rank on the CPU lab.

tests/integration/test_cli.py runs it through a drop-in on the real server units, under the
process title `sglang::scheduler_test_double` (bash `exec -a`), so the ordered restart and
`status` act on real units. Rank 0's double answers GET /health_generate with 200, as a ready
SGLang server does (on every address, as --host 0.0.0.0: the router reaches it at the
cluster IP); the other ranks only sleep.
"""

import argparse
import http.server
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        ok = self.path in ("/health", "/health_generate")
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"test double\n" if ok else b"")

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0, help="serve on this port (rank 0); 0: only sleep")
    args = p.parse_args()
    if args.port:
        http.server.ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
