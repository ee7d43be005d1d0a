#!/usr/bin/env python3
"""A small HTTP/1.1 TCP proxy in front of an S3 server, for the benchmark (issue 24): adds a delay to every
request (a bucket a region away, without its bandwidth limit) and counts the requests by kind.

    python3 bench/s3proxy.py --listen 127.0.0.1:27730 --upstream 127.0.0.1:27726 --delay-ms 25 \
        --control 127.0.0.1:27731

Each client connection gets its own connection to the upstream. The client->server stream is parsed (request
line, headers, then the body by Content-Length or chunked framing), so keep-alive connections carrying many
requests count and delay each request exactly once: the request's head is held for `--delay-ms` before it is
forwarded, then its body is streamed through as it arrives. The server->client stream is parsed too (status line,
headers, body framing, with the method of the request it answers: HEAD and 204/304 have no body, 1xx are
interim), to count the answers' status codes per kind. A stream the parser cannot follow is passed through
as raw bytes from there on and counted under `unparsed`.

Kinds (path-style addressing, `/bucket/key`): `get` (GET of an object), `head`, `list` (GET of the bucket, or
with `list-type`), `put` (PUT of an object), `copy` (PUT with `x-amz-copy-source`), `delete` (DELETE of an
object), `delete_batch` (POST ?delete), multipart: `mp_create` (POST ?uploads), `mp_part` (PUT ?partNumber, also
a part copy), `mp_complete` (POST ?uploadId), `mp_abort` (DELETE ?uploadId), `mp_other` (GET ?uploadId: list
parts), and `other` (bucket creation, ?acl, ?location...).

Each request is also counted by area: `state` when its key (or a listing's `prefix`) holds `/_mongolake/`
(mongolake's state, schema, index, lease and report objects), `batch` for POST ?delete (its keys are in the
body, which is not parsed), `data` for the rest (the tables' files and listings).

The control port answers plain HTTP GETs: `/counts` (JSON: requests by kind, status codes by kind, bytes up and
down, the most requests in flight at once, connections), `/reset` (the same, then zeroes everything: one
benchmark step per window) and `/ping`. Standard library only. Prints `s3proxy listening on ...` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter, deque
from urllib.parse import parse_qsl, unquote

KINDS = ["get", "head", "list", "put", "copy", "delete", "delete_batch", "mp_create", "mp_part", "mp_complete",
         "mp_abort", "mp_other", "other"]
MULTIPART = ["mp_create", "mp_part", "mp_complete", "mp_abort", "mp_other"]
# GET/PUT/DELETE query parameters that make a request about something else than the object's bytes.
SUBRESOURCES = {"acl", "tagging", "attributes", "legal-hold", "retention", "torrent", "restore", "select",
                "location", "versioning", "policy", "lifecycle", "cors", "website", "logging", "notification",
                "replication", "encryption", "ownershipControls", "publicAccessBlock", "object-lock",
                "accelerate", "requestPayment", "analytics", "inventory", "metrics", "intelligent-tiering",
                "versions", "uploads"}
BUFFER = 1 << 16


class ParseError(Exception):
    """The stream does not look like HTTP/1.1: pass it through unparsed."""


def classify(method: str, target: str, headers: dict[str, str]) -> str:
    """The kind of one S3 request (path-style addressing)."""
    if "://" in target:  # absolute form: drop scheme and authority
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    params = {k for k, _ in parse_qsl(query, keep_blank_values=True)}
    bucket_and_key = path.lstrip("/")
    key = bucket_and_key.partition("/")[2]
    if "uploadId" in params:
        return {"PUT": "mp_part", "POST": "mp_complete", "DELETE": "mp_abort"}.get(method, "mp_other")
    if method == "POST":
        if "uploads" in params:
            return "mp_create"
        if "delete" in params:
            return "delete_batch"
        return "other"
    if method == "HEAD":
        return "head"
    if method == "GET":
        if not key:
            return "list" if "list-type" in params or not params & SUBRESOURCES else "other"
        return "other" if params & SUBRESOURCES else "get"
    if method == "PUT":
        if not key or params & SUBRESOURCES:
            return "other"
        return "copy" if "x-amz-copy-source" in headers else "put"
    if method == "DELETE":
        return "delete" if key and not params & SUBRESOURCES else "other"
    return "other"


STATE_MARKER = "/_mongolake/"
AREAS = ["data", "state", "batch"]


def area(kind: str, target: str) -> str:
    """Which objects a request is about: `state` (a key or listing prefix under `_mongolake/`), `batch` (a
    DeleteObjects, whose keys are in its body) or `data`."""
    if kind == "delete_batch":
        return "batch"
    if "://" in target:
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path, _, query = target.partition("?")
    key = unquote(path.lstrip("/").partition("/")[2])
    prefix = dict(parse_qsl(query, keep_blank_values=True)).get("prefix", "")
    return "state" if STATE_MARKER in f"/{key}" or STATE_MARKER in f"/{prefix}" else "data"


def parse_head(head: bytes) -> tuple[list[str], dict[str, str]]:
    """The start line's words and the headers (names lower-cased; repeated ones joined by commas)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as e:  # latin-1 decodes anything; kept for clarity
        raise ParseError(str(e)) from e
    lines = text.split("\r\n")
    start = lines[0].split(" ", 2)
    if len(start) < 2:
        raise ParseError(f"bad start line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ParseError(f"bad header line {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return start, headers


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> int:
    """Forwards exactly n bytes; returns n."""
    left = n
    while left > 0:
        data = await reader.read(min(left, BUFFER))
        if not data:
            raise ParseError(f"stream ended {left} bytes before the end of a body")
        writer.write(data)
        left -= len(data)
        await writer.drain()
    return n


def buffered(reader: asyncio.StreamReader) -> int:
    """Bytes the reader holds already (0 when its internals are not the ones known)."""
    buf = getattr(reader, "_buffer", None)
    return len(buf) if isinstance(buf, (bytes, bytearray)) else 0


async def copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                    headers: dict[str, str], has_body: bool, to_eof: bool) -> int:
    """Forwards a message's head and then its body as framed by the headers; returns the size on the wire.
    `to_eof`: a response with neither Content-Length nor chunked framing runs to the end of the connection.
    A body already received goes out in the head's write (one send instead of two); one not yet sent (the
    client may wait for 100 Continue) is never waited for before the head is forwarded."""
    if has_body and "content-length" in headers and "chunked" not in headers.get("transfer-encoding", "").lower():
        try:
            n = int(headers["content-length"].split(",")[0])
        except ValueError as e:
            writer.write(head)  # the rest goes through unparsed
            raise ParseError(f"bad Content-Length {headers['content-length']!r}") from e
        have = min(n, buffered(reader), BUFFER)
        first = await reader.readexactly(have) if have else b""
        writer.write(head + first)
        return len(head) + have + await copy_exact(reader, writer, n - have)
    writer.write(head)
    return len(head) + await copy_rest(reader, writer, headers, has_body, to_eof)


async def copy_rest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str],
                    has_body: bool, to_eof: bool) -> int:
    """Forwards one message body (chunked, or to the end of the stream); returns its size on the wire."""
    if not has_body:
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            total += len(line)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise ParseError(f"bad chunk size line {line[:40]!r}") from e
            if size == 0:
                while True:  # trailers, up to the empty line
                    t = await reader.readuntil(b"\r\n")
                    writer.write(t)
                    total += len(t)
                    if t == b"\r\n":
                        await writer.drain()
                        return total
            total += await copy_exact(reader, writer, size + 2)
    if "content-length" in headers:
        try:
            n = int(headers["content-length"].split(",")[0])
        except ValueError as e:
            raise ParseError(f"bad Content-Length {headers['content-length']!r}") from e
        return await copy_exact(reader, writer, n)
    if to_eof:
        total = 0
        while data := await reader.read(BUFFER):
            writer.write(data)
            total += len(data)
            await writer.drain()
        return total
    return 0  # a request without framing has no body


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Raw bytes to the end of the stream (after a parse error)."""
    total = 0
    while data := await reader.read(BUFFER):
        writer.write(data)
        total += len(data)
        await writer.drain()
    return total


class Proxy:
    """The counting, delaying proxy; `stats` is what the control port shows."""

    def __init__(self, upstream: tuple[str, int], delay: float):
        self.upstream = upstream
        self.delay = delay
        self.reset()

    def reset(self) -> dict:
        """Returns the counts so far and starts a new window."""
        old = self.snapshot() if hasattr(self, "counts") else {}
        self.counts: Counter[str] = Counter()
        self.areas: Counter[str] = Counter()
        self.status: dict[str, Counter[int]] = {}
        self.bytes_up = self.bytes_down = 0
        self.in_flight = getattr(self, "in_flight", 0)
        self.max_in_flight = self.in_flight
        self.connections = 0
        self.unparsed = 0
        return old

    def snapshot(self) -> dict:
        """The window's counts as JSON-able data."""
        requests = {k: self.counts.get(k, 0) for k in KINDS}
        return {
            "requests": requests,
            "total": sum(requests.values()),
            "multipart": sum(requests[k] for k in MULTIPART),
            "areas": {k: self.areas.get(k, 0) for k in AREAS},
            "status": {k: {str(c): n for c, n in sorted(v.items())} for k, v in self.status.items()},
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "max_in_flight": self.max_in_flight,
            "connections": self.connections,
            "unparsed": self.unparsed,
            "delay_ms": self.delay * 1000,
        }

    async def client(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        """One client connection."""
        self.connections += 1
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream, limit=1 << 20)
        except OSError:
            cwriter.close()
            return
        pending: deque[tuple[str, str]] = deque()  # (kind, method) of requests not yet answered
        up = asyncio.create_task(self.requests(creader, uwriter, pending))
        down = asyncio.create_task(self.responses(ureader, cwriter, pending))
        try:
            # Both directions to their end (the client's EOF is passed on; the server then closes), or the
            # first failure, which ends the other direction too.
            await asyncio.wait([up, down], return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self.in_flight -= len(pending)
            for w in (uwriter, cwriter):
                w.close()

    async def requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       pending: deque[tuple[str, str]]) -> None:
        """Client -> server: each request counted, held `delay`, then forwarded with its body."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        writer.write(e.partial)
                    break
                try:
                    (method, target, *_), headers = parse_head(head)
                except ParseError:
                    self.unparsed += 1
                    writer.write(head)
                    self.bytes_up += len(head) + await pipe(reader, writer)
                    break
                kind = classify(method, target, headers)
                self.counts[kind] += 1
                self.areas[area(kind, target)] += 1
                pending.append((kind, method))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                try:
                    self.bytes_up += await copy_body(reader, writer, head, headers, True, False)
                except ParseError:
                    self.unparsed += 1
                    self.bytes_up += await pipe(reader, writer)
                    break
                await writer.drain()
        finally:
            if writer.can_write_eof():
                try:
                    writer.write_eof()
                except OSError:
                    pass

    async def responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        pending: deque[tuple[str, str]]) -> None:
        """Server -> client: each answer's status counted under its request's kind."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    writer.write(e.partial)
                break
            try:
                start, headers = parse_head(head)
                code = int(start[1])
            except (ParseError, ValueError):
                self.unparsed += 1
                writer.write(head)
                self.bytes_down += len(head) + await pipe(reader, writer)
                break
            if 100 <= code < 200:  # interim (100 Continue): the final answer follows
                writer.write(head)
                await writer.drain()
                continue
            kind, method = pending.popleft() if pending else ("other", "GET")
            self.in_flight -= 1
            self.status.setdefault(kind, Counter())[code] += 1
            has_body = method != "HEAD" and code not in (204, 304)
            to_eof = "content-length" not in headers and "transfer-encoding" not in headers
            try:
                self.bytes_down += await copy_body(reader, writer, head, headers, has_body, to_eof)
            except ParseError:
                self.unparsed += 1
                self.bytes_down += await pipe(reader, writer)
                break
            await writer.drain()
        writer.close()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The control port: GET /counts, /reset, /ping."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/counts"):
                body, code = json.dumps(self.snapshot()), "200 OK"
            elif path.startswith("/reset"):
                body, code = json.dumps(self.reset()), "200 OK"
            elif path.startswith("/ping"):
                body, code = '"pong"', "200 OK"
            else:
                body, code = '"unknown path: /counts, /reset or /ping"', "404 Not Found"
            data = body.encode()
            writer.write(f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            pass
        finally:
            writer.close()


def host_port(text: str) -> tuple[str, int]:
    """`127.0.0.1:8333` -> ("127.0.0.1", 8333)."""
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(args) -> None:
    """Runs until SIGTERM / SIGINT."""
    proxy = Proxy(host_port(args.upstream), args.delay_ms / 1000)
    main = await asyncio.start_server(proxy.client, *host_port(args.listen), limit=1 << 20, backlog=1024)
    ctl = await asyncio.start_server(proxy.control, *host_port(args.control))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"s3proxy listening on {args.listen} -> {args.upstream}, delay {args.delay_ms} ms, control "
          f"{args.control}", flush=True)
    async with main, ctl:
        await stop.wait()


def main() -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT the clients connect to")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the S3 server")
    ap.add_argument("--control", required=True, help="HOST:PORT of the control port (/counts, /reset)")
    ap.add_argument("--delay-ms", type=float, default=25.0, help="added to every request (default 25)")
    args = ap.parse_args()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
