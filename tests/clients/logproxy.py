#!/usr/bin/env python3
"""Tiny logging reverse proxy for the client e2e suite (loopback only).

    logproxy.py LISTEN_PORT UPSTREAM_PORT LOGFILE

Forwards every request to http://127.0.0.1:UPSTREAM_PORT unchanged, streams the
response back chunk by chunk (SSE keeps working) and appends one JSON line per
exchange to LOGFILE: method, path, query, request headers (secrets redacted),
request body (parsed JSON when it is JSON), response status, response headers and
the response body (whole when it is not an event stream, else its first 64 KiB).
"""
import http.client
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LISTEN, UPSTREAM, LOGFILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
SECRET_HEADERS = {"authorization", "x-api-key", "x-goog-api-key", "proxy-authorization", "cookie"}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection", "content-length"}
LOCK = threading.Lock()
SEQ = [0]


def redact_headers(items):
    out = {}
    for k, v in items:
        if k.lower() in SECRET_HEADERS:
            v = v[:12] + "...<redacted>" if len(v) > 12 else "<redacted>"
        out[k] = v
    return out


def decode(raw):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except Exception:
        return raw.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _do(self):
        started = time.time()
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if not length and self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        url = urlsplit(self.path)
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        fwd["Content-Length"] = str(len(body))
        record = {
            "t": round(started, 3),
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": redact_headers(self.headers.items()),
            "body": decode(body),
        }
        if "key=" in record["query"]:
            record["query"] = "<contains key=, redacted>"
        status, resp_headers, resp_body = 502, {}, b""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=300)
            conn.request(self.command, self.path, body=body if body or self.command not in ("GET", "HEAD") else None, headers=fwd)
            resp = conn.getresponse()
            status = resp.status
            resp_headers = {k: v for k, v in resp.getheaders()}
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            is_head = self.command == "HEAD"
            if not is_head:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            kept = []
            while not is_head:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                if sum(len(c) for c in kept) < 65536:
                    kept.append(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            if not is_head:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            resp_body = b"".join(kept)
            conn.close()
        except Exception as e:  # upstream down or client gone
            record["proxy_error"] = repr(e)
            try:
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except Exception:
                pass
        record["status"] = status
        record["resp_headers"] = resp_headers
        ctype = resp_headers.get("content-type", resp_headers.get("Content-Type", ""))
        record["resp_body"] = resp_body.decode("utf-8", "replace") if "event-stream" in ctype else decode(resp_body)
        record["ms"] = int((time.time() - started) * 1000)
        with LOCK:
            SEQ[0] += 1
            record["seq"] = SEQ[0]
            with open(LOGFILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _do


if __name__ == "__main__":
    srv = ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler)
    srv.daemon_threads = True
    srv.serve_forever()
