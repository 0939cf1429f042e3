#!/usr/bin/env python3
"""A tiny real backend for the lab and tests.

  backend.py NAME PORT HEALTH_PORT

* TCP PORT: answers every connection with one line "NAME via PEER_IP" and
  closes (so a client sees which backend and which front node served it).
* TCP PORT+1: a long-lived echo: every line received is sent back as
  "NAME: line" until the client closes.
* UDP PORT: echoes every datagram back as "NAME: payload".
* HTTP HEALTH_PORT: GET /health answers 200 "NAME".
"""
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

def echo_conn(c):
    try:
        f = c.makefile("rb")
        for line in f:
            c.sendall(name.encode() + b": " + line)
    except OSError:
        pass
    finally:
        c.close()

def serve_echo():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port + 1)); s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo_conn, args=(c,), daemon=True).start()

def serve_udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    while True:
        data, peer = u.recvfrom(65535)
        u.sendto(name.encode() + b": " + data, peer)

for fn in (serve_health, serve_echo, serve_udp):
    threading.Thread(target=fn, daemon=True).start()
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
