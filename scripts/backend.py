#!/usr/bin/env python3
"""A tiny real backend for the lab and tests: on PORT it answers every TCP
connection with one line "NAME via PEER_IP" (so a client sees which backend
and which front node served it), and serves HTTP GET /health on HEALTH_PORT."""
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port, health_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" else 404
        body = (name + "\n").encode()
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

def serve_health():
    ThreadingHTTPServer(("0.0.0.0", health_port), H).serve_forever()

threading.Thread(target=serve_health, daemon=True).start()
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port)); srv.listen(512)
while True:
    c, peer = srv.accept()
    try:
        c.sendall(f"{name} via {peer[0]}\n".encode())
    except OSError:
        pass
    finally:
        c.close()
