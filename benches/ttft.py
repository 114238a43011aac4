#!/usr/bin/env python3
"""Time to first token at a fixed request rate (a benchmark, not a test).

For each target URL: streamed chat completions sent at RATE requests/s in total over
CONNECTIONS keep-alive connections for SECONDS; for each request, the time from writing
it to reading the first `data:` byte of its event stream. Prints p50/p90/p99 per target
and, for every target after the first, what it adds to the first one's (the mock
itself). Loopback only; bounded by SECONDS. Standard library only.

Usage: ttft.py RATE SECONDS CONNECTIONS KEY NAME=URL [NAME=URL ...]
"""

import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlparse

BODY = json.dumps(
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]}
).encode()


def request(host, path, key):
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def read_response(reader):
    """Reads one response; returns the monotonic time its first `data:` byte arrived."""
    head = await reader.readuntil(b"\r\n\r\n")
    first = None
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0]
    if status.split(" ")[1:2] != ["200"]:
        raise RuntimeError(f"answered {status}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        first = time.perf_counter()
        if b"data:" not in body:
            raise RuntimeError("no event in the answer")
        return first
    # Chunked: read chunks until the terminating one, noting the first with data.
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if first is None and b"data:" in chunk:
            first = time.perf_counter()
        if size == 0:
            if first is None:
                raise RuntimeError("no event in the answer")
            return first


async def connection(url, key, interval, deadline, start, samples):
    u = urlparse(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    req = request(u.netloc, u.path or "/v1/chat/completions", key)
    due = start
    while due < deadline:
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        sent = time.perf_counter()
        writer.write(req)
        await writer.drain()
        first = await read_response(reader)
        samples.append(first - sent)
        due += interval
    writer.close()


async def measure(url, key, rate, seconds, conns):
    samples = []
    interval = conns / rate
    start = time.perf_counter() + 0.05
    # Connections start spread over one interval, so requests are evenly paced overall.
    tasks = [
        connection(url, key, interval, start + seconds, start + i * interval / conns, samples)
        for i in range(conns)
    ]
    await asyncio.gather(*tasks)
    return samples


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    if len(sys.argv) < 6:
        print(__doc__)
        sys.exit(2)
    rate, seconds, conns = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    key = sys.argv[4]
    targets = [a.split("=", 1) for a in sys.argv[5:]]
    results = []
    for name, url in targets:
        asyncio.run(measure(url, key, rate, 1.0, conns))  # warm-up
        s = asyncio.run(measure(url, key, rate, seconds, conns))
        ms = [x * 1000 for x in s]
        results.append((name, ms))
        print(
            f"| {name:<28} | {len(ms):6d} | {statistics.median(ms):7.3f} | "
            f"{pct(ms, 90):7.3f} | {pct(ms, 99):7.3f} |",
            flush=True,
        )
    base = statistics.median(results[0][1])
    for name, ms in results[1:]:
        print(f"added by {name}: p50 {statistics.median(ms) - base:+.3f} ms over {results[0][0]}")


if __name__ == "__main__":
    main()
