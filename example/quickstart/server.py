"""A small HTTPS file server with a CA made at start: the demo's "internet".

Usage: server.py SITE_DIR STATE_DIR; prints the port once listening.
Serves gzip when the client asks for it, like real CDNs do.
"""
import gzip
import http.server
import os
import ssl
import subprocess
import sys

site, state = sys.argv[1], sys.argv[2]
os.makedirs(state, exist_ok=True)
ca, key = os.path.join(state, "ca.pem"), os.path.join(state, "ca.key")
leaf, leaf_key = os.path.join(state, "leaf.pem"), os.path.join(state, "leaf.key")
run = lambda *a: subprocess.run(a, check=True, capture_output=True)
run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", key, "-out", ca, "-days", "1", "-subj", "/CN=demo CA")
run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", leaf_key, "-out", leaf + ".csr", "-subj", "/CN=127.0.0.1")
ext = os.path.join(state, "ext")
with open(ext, "w") as f:
    f.write("subjectAltName=IP:127.0.0.1\n")
run("openssl", "x509", "-req", "-in", leaf + ".csr", "-CA", ca, "-CAkey", key, "-CAcreateserial",
    "-out", leaf, "-days", "1", "-extfile", ext)


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=site, **kw)

    def log_message(self, *a):
        pass

    def send_head(self):
        path = self.translate_path(self.path.split("?")[0])
        if path.endswith(".json") and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(open(path, "rb").read())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        return super().send_head()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(leaf, leaf_key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
