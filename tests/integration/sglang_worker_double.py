"""Test double of an SGLang rank 0's HTTP side, for tests only (never deployed or verified):
answers /health_generate with 200, as a serving SGLang does, and logs every request. The fence
test freezes it with SIGSTOP, the way a rank stuck in a collective stops answering."""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 200 if self.path == "/health_generate" else 404
        self.send_response(code)
        self.end_headers()
        print("test double: GET %s -> %d" % (self.path, code), flush=True)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
