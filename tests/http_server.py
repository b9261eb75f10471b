"""An HTTP server for tests/test_remote.py: serves folder argv[1] on a free port of 127.0.0.1
(printed first), with byte ranges, an ETag and Last-Modified, as S3 or nginx do. With argv[2]
"failing", it answers 500 to a range that holds the file's middle byte, as a server that fails
part way does; with "restless", it states a new ETag and Last-Modified in every answer, as
some dynamic servers and load balancers do."""

import email.utils
import http.server
import os
import re
import sys


def handler(root, mode=None):
    answers = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self._answer(body=False)

        def do_GET(self):
            self._answer(body=True)

        def _answer(self, body):
            path = os.path.join(root, self.path.split("?")[0].lstrip("/"))
            asked = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            middle = os.path.getsize(path) // 2 if os.path.isfile(path) else -1
            failed = bool(mode == "failing" and asked and int(asked[1]) <= middle <= int(asked[2] or middle))
            if failed or not os.path.isfile(path):
                self.send_response(500 if failed else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with open(path, "rb") as f:
                data = f.read()
            st = os.stat(path)
            start, end = 0, len(data) - 1
            if asked:
                start, end = int(asked[1]), min(int(asked[2] or end), end)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            answers.append(1)
            restless = len(answers) if mode == "restless" else 0     # seconds added
            self.send_header("ETag", f'"{st.st_mtime_ns:x}-{st.st_size:x}-{restless}"')
            self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime + restless,
                                                                     usegmt=True))
            self.end_headers()
            if body:
                self.wfile.write(data[start:end + 1])
    return Handler


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(
        sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
    print(server.server_address[1], flush=True)
    server.serve_forever()
