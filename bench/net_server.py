#!/usr/bin/env python3
"""A threaded HTTP/1.1 file server with Range, ETag and If-Match for bench/net_ingest.sh.

    net_server.py DIR PORT [--reset-at-half]

--reset-at-half: the first GET of every .warc.gz file is cut after half its
bytes (the connection closes), so the client must resume by range request.
GET /_stats returns {path: {"gets": n, "bytes": body bytes sent}} as JSON.
"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT = sys.argv[1], int(sys.argv[2])
RESET = "--reset-at-half" in sys.argv
STATS, LOCK, CUT = {}, threading.Lock(), set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/_stats":
            body = json.dumps(STATS).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        path = os.path.join(ROOT, self.path.lstrip("/").split("?")[0])
        if not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        etag = '"%x-%x"' % (size, int(os.path.getmtime(path)))
        if self.headers.get("If-Match") not in (None, etag):
            self.send_response(412)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end, status = 0, size, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a), (int(b) + 1 if b else size), 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        self.end_headers()
        limit = end
        with LOCK:
            s = STATS.setdefault(self.path, {"gets": 0, "bytes": 0, "size": size})
            s["gets"] += 1
            if RESET and self.path.endswith(".warc.gz") and self.path not in CUT:
                CUT.add(self.path)
                limit = start + (end - start) // 2
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            left = limit - start
            while left > 0:
                chunk = f.read(min(1 << 20, left))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
                left -= len(chunk)
        with LOCK:
            STATS[self.path]["bytes"] += sent
        if limit < end:
            self.close_connection = True
            try:
                self.wfile.flush()
            except OSError:
                pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
