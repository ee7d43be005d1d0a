#!/usr/bin/env python3
"""The benchmark of issue 6, run by `scripts/bench.sh` (which installs and builds what it needs first).

For each size (total documents over the generator's five collections):
  1. starts its own MongoDB-compatible server (scripts/servers.sh, own port, own data directory),
  2. seeds it with `mongolake seed` (size / 5 documents per collection),
  3. K repetitions, interleaved: for each number of ranges R, `raw_drain --ranges R` and a mongolake full load
     with `read_ranges = R` (fresh lake each time); then the PyMongoArrow full sync (fresh lake),
  4. `mongolake mutate --fraction F`, then K incremental rounds for mongolake and for PyMongoArrow, each from a
     copy of its own full-loaded lake,
  5. `mongolake mutate --fraction F --recent R` (the changes among the newest documents, as a hospital's day
     looks), then K incremental rounds for each, from a copy of its lake after step 4,
  6. stops the server.
Every step is a child process: wall time from start to exit, peak RSS from wait4's ru_maxrss. Prints a markdown
report (medians, ratios, docs/s, MB/s, peak RSS, machine, exact command) and writes it to
bench/results/<date>-<docs>.md (-2, -3... when that exists). Needs only the standard library; PyMongoArrow runs under `--python`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ["patients", "visits", "bills", "lab_results", "pharmacy_stock"]
DB = "hims"


@dataclass
class Run:
    """One measured child process."""

    seconds: float
    rss_mb: float
    stdout: str
    cpu: float = 0.0
    """CPU seconds of the process (user + system, from wait4)."""
    server_cpu: float | None = None
    """CPU seconds the benchmark's server spent meanwhile (from /proc/<pid>/stat), when known."""
    sys_cpu: float = 0.0
    """The system (kernel) part of `cpu`."""


@dataclass
class Step:
    """All repetitions of one benchmark step, plus what it moved."""

    label: str
    runs: list[Run] = field(default_factory=list)
    docs: int | None = None

    @property
    def median(self) -> float:
        """Median wall time in seconds."""
        return statistics.median(r.seconds for r in self.runs)

    @property
    def cpu(self) -> float:
        """Median client CPU seconds."""
        return statistics.median(r.cpu for r in self.runs)

    @property
    def server_cpu(self) -> float | None:
        """Median server CPU seconds, when measured."""
        xs = [r.server_cpu for r in self.runs if r.server_cpu is not None]
        return statistics.median(xs) if xs else None

    @property
    def min_cpu(self) -> float:
        """Least client CPU seconds over the repetitions."""
        return min(r.cpu for r in self.runs)

    @property
    def min_server_cpu(self) -> float | None:
        """Least server CPU seconds over the repetitions, when measured."""
        xs = [r.server_cpu for r in self.runs if r.server_cpu is not None]
        return min(xs) if xs else None

    @property
    def peak_rss(self) -> float:
        """Largest peak RSS over the repetitions, MB."""
        return max(r.rss_mb for r in self.runs)


def log(msg: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used so far; None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def measure(cmd: list[str], env: dict[str, str] | None = None, what: str = "", preexec_fn=None) -> Run:
    """Runs cmd to completion; returns wall time, peak RSS (wait4 ru_maxrss), CPU time (its own from wait4, the
    benchmark server's from /proc) and stdout. Fails loudly on a non-zero exit, showing the end of stderr. When
    the wait is interrupted (SIGTERM's SystemExit, Ctrl-C), the child is stopped before the exception goes on."""
    server = Servers.active.pid if Servers.active else None
    server_before = process_cpu(server) if server else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=preexec_fn)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        stderr = err.read()
        if proc.returncode != 0:
            tail = "".join(stderr.splitlines(keepends=True)[-30:])
            raise SystemExit(f"{what or cmd[0]} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    if "panicked at" in stderr:
        line = next(ln for ln in stderr.splitlines() if "panicked at" in ln)
        log(f"WARNING: {what} exited 0 but a thread panicked: {line.strip()}")
    server_after = process_cpu(server) if server else None
    run = Run(seconds, usage.ru_maxrss / 1024, stdout, cpu=usage.ru_utime + usage.ru_stime,
              server_cpu=server_after - server_before if server_before is not None and server_after is not None
              else None, sys_cpu=usage.ru_stime)
    server_note = f", server CPU {run.server_cpu:.2f} s" if run.server_cpu is not None else ""
    log(f"{what}: {seconds:.2f} s, CPU {run.cpu:.2f} s{server_note}, peak RSS {run.rss_mb:.0f} MB")
    return run


def machine() -> str:
    """nproc, CPU model, RAM, kernel and load average, for the report."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cores} cores (nproc), {model}, {mem}, Linux {platform.release()}; load average at start {load}"


def git_rev() -> str:
    """The commit benchmarked (with `+dirty` when the work tree has changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Servers:
    """The benchmark's own MongoDB-compatible server, through scripts/servers.sh (stopped by `stop`, or by its
    watchdog if this process dies first)."""

    active: "Servers | None" = None
    """The running server, whose CPU time [`measure`] records."""

    def __init__(self, directory: Path, port: int):
        self.dir = directory
        self.port = port
        self.uri = ""
        self.pid: int | None = None

    def start(self) -> str:
        """Starts the server; returns its URI."""
        env = dict(os.environ, MONGOLAKE_SERVERS="mongo", MONGOLAKE_MONGO_PORT=str(self.port),
                   MONGOLAKE_SERVERS_WATCH_PID=str(os.getpid()))
        subprocess.run([str(ROOT / "scripts/servers.sh"), "start", str(self.dir)], env=env, check=True,
                       stdout=sys.stderr)
        text = (self.dir / "env.sh").read_text()
        m = re.search(r"MONGOLAKE_TEST_MONGO_URI='([^']+)'", text)
        if not m:
            raise SystemExit(f"no MONGOLAKE_TEST_MONGO_URI in {self.dir}/env.sh")
        self.uri = m.group(1)
        try:  # scripts/servers.sh writes "<pid> <start time>"
            self.pid = int((self.dir / "mongo.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            log(f"no readable {self.dir}/mongo.pid: server CPU time is not reported")
        Servers.active = self
        return self.uri

    def stop(self) -> None:
        """Stops what start started."""
        Servers.active = None
        subprocess.run([str(ROOT / "scripts/servers.sh"), "stop", str(self.dir)], stdout=sys.stderr,
                       stderr=sys.stderr, check=False)


def write_config(directory: Path, lake: Path, ranges: int, collections_csv: Path) -> Path:
    """A config dir for mongolake: a copy of collections.csv and environments/bench.toml (no email)."""
    (directory / "environments").mkdir(parents=True, exist_ok=True)
    shutil.copy(collections_csv, directory / "collections.csv")
    toml = [
        "# written by bench/run.py",
        "[mongodb]",
        'uri = { env = "MONGOLAKE_BENCH_MONGO_URI" }',
        "[lake]",
        f"url = {json.dumps(str(lake))}",
        "[sync]",
        'timezone = "Asia/Kolkata"',
    ]
    if ranges != 1:
        toml.append(f"read_ranges = {ranges}")
    (directory / "environments" / "bench.toml").write_text("\n".join(toml) + "\n")
    return directory


_LAST_DELETE = [0.0]


def fresh(path: Path) -> Path:
    """Removes path (a lake from an earlier repetition) and returns it."""
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
        _LAST_DELETE[0] = time.monotonic()
    return path


def settle_deletes(seconds: float = 31.0) -> None:
    """Waits until `seconds` have passed since [`fresh`] last deleted a lake. ext4 does not hand out an inode
    freed in the last 30 s and scans past each when it allocates one, so a step creating thousands of files right
    after thousands were deleted pays system time for the deletion (seen: a local full load's system CPU 8.8 s in
    one repetition and 19.3 s in the next, the same binary); that is the benchmark's cleanup, not the step's."""
    wait = _LAST_DELETE[0] + seconds - time.monotonic()
    if wait > 0:
        log(f"waiting {wait:.0f} s: inodes of the lake deleted before this step are still recent (ext4)")
        time.sleep(wait)


def docs_read(mongolake_report: str) -> int | None:
    """`N documents read` from mongolake's run report."""
    m = re.search(r"(\d+) documents read", mongolake_report)
    return int(m.group(1)) if m else None


def partitions_written(mongolake_report: str) -> int | None:
    """`N partitions written` from mongolake's run report."""
    m = re.search(r"(\d+) partitions written", mongolake_report)
    return int(m.group(1)) if m else None


def bench_size(total: int, args, work: Path, bin_dir: Path) -> dict:
    """Runs every step for one size; returns the steps and facts for the report."""
    per = max(1, total // 5)
    servers = Servers(work / f"servers-{total}", args.mongo_port)
    uri = servers.start()
    try:
        env = dict(os.environ, MONGOLAKE_BENCH_MONGO_URI=uri)
        mongolake = str(bin_dir / "mongolake")
        seed = measure([mongolake, "seed", "--uri", uri, "--db", DB, "--docs", str(per), "--seed", "42"],
                       what=f"seed {per} x 5")
        cfg = {r: write_config(work / f"cfg-ml-{r}", work / "lake-ml", r, args.collections) for r in args.ranges}
        pma = [args.python, str(ROOT / "bench/pymongoarrow_sync.py"), "--uri", uri, "--collections",
               str(args.collections), "--timezone", "Asia/Kolkata", "--parallelism", args.pma_parallelism]
        raw = {r: Step(f"raw drain, {r} range{'s' if r > 1 else ''} per collection") for r in args.ranges}
        full = {r: Step(f"mongolake full load, read_ranges = {r}") for r in args.ranges}
        walk = Step("raw drain + one checked walk of every element (`raw_drain --walk`)")
        pma_full = Step("PyMongoArrow full sync" + ("" if args.pma_parallelism == "off"
                                                      else f", parallelism = {args.pma_parallelism}"))
        for rep in range(1, args.reps + 1):
            for r in args.ranges:
                run = measure([str(bin_dir / "raw_drain"), "--uri", uri, "--db", DB, "--ranges", str(r),
                               *COLLECTIONS], what=f"rep {rep}: raw drain x{r}")
                raw[r].runs.append(run)
                raw[r].docs = json.loads(run.stdout)["docs"]
                if r == args.ranges[0]:
                    run = measure([str(bin_dir / "raw_drain"), "--walk", "--uri", uri, "--db", DB, "--ranges",
                                   str(r), *COLLECTIONS], what=f"rep {rep}: raw drain + walk x{r}")
                    walk.runs.append(run)
                    walk.docs = json.loads(run.stdout)["docs"]
                fresh(work / "lake-ml")
                run = measure([mongolake, "sync", "--env", "bench", "--config-dir", str(cfg[r]), "--no-email"],
                              env=env, what=f"rep {rep}: mongolake full x{r}")
                full[r].runs.append(run)
                full[r].docs = docs_read(run.stdout)
                if r == args.ranges[0]:
                    fresh(work / "lake-ml-full")
                    shutil.move(work / "lake-ml", work / "lake-ml-full")
            run = measure([*pma, "--lake", str(fresh(work / "lake-pma-full"))], what=f"rep {rep}: PyMongoArrow full")
            pma_full.runs.append(run)
            pma_full.docs = json.loads(run.stdout)["docs"]
        raw_json = json.loads(raw[args.ranges[0]].runs[-1].stdout)
        elements = json.loads(walk.runs[-1].stdout)["elements"]
        # Parquet encoding alone for the lake mongolake wrote (src/bin/encode_floor.rs): one thread, CPU time.
        floor = json.loads(measure([str(bin_dir / "encode_floor"), "--lake", str(work / "lake-ml-full")],
                                   what="encode floor").stdout)

        mut = measure([mongolake, "mutate", "--uri", uri, "--db", DB, "--fraction", str(args.fraction),
                       "--seed", "42"], what="mutate")
        incr_cfg = write_config(work / "cfg-ml-incr", work / "lake-ml-incr", args.ranges[0], args.collections)

        def incremental_round(label: str, ml_base: str, pma_base: str) -> tuple[Step, Step, int | None]:
            """K incremental runs of each tool, each from a fresh copy of its base lake (left in lake-*-incr)."""
            ml, pm, touched = Step(f"mongolake incremental {label}"), Step(f"PyMongoArrow incremental {label}"), None
            for rep in range(1, args.reps + 1):
                shutil.copytree(work / ml_base, fresh(work / "lake-ml-incr"))
                run = measure([mongolake, "sync", "--env", "bench", "--config-dir", str(incr_cfg), "--no-email"],
                              env=env, what=f"rep {rep}: mongolake incremental {label}")
                ml.runs.append(run)
                ml.docs, touched = docs_read(run.stdout), partitions_written(run.stdout)
                shutil.copytree(work / pma_base, fresh(work / "lake-pma-incr"))
                run = measure([*pma, "--lake", str(work / "lake-pma-incr"), "--incremental"],
                              what=f"rep {rep}: PyMongoArrow incremental {label}")
                pm.runs.append(run)
                pm.docs = json.loads(run.stdout)["docs"]
            return ml, pm, touched

        ml_incr, pma_incr, _ = incremental_round(f"({args.fraction:.0%} changed)", "lake-ml-full", "lake-pma-full")
        # A second round as a hospital's day looks: the same share changed, but among the newest documents
        # (`mutate --recent`), so only the last days' partitions are touched. Each tool starts from its lake
        # after the first incremental round.
        recent = args.recent
        mut_recent = measure([mongolake, "mutate", "--uri", uri, "--db", DB, "--fraction", str(args.fraction),
                              "--recent", str(recent), "--seed", "42"], what="mutate --recent")
        shutil.copytree(work / "lake-ml-incr", fresh(work / "lake-ml-incr1"))
        shutil.copytree(work / "lake-pma-incr", fresh(work / "lake-pma-incr1"))
        ml_recent, pma_recent, touched = incremental_round(
            f"({args.fraction:.0%} changed among the newest {recent:.0%})", "lake-ml-incr1", "lake-pma-incr1")
        files = sum(1 for _ in (work / "lake-ml-full" / DB).rglob("*.parquet"))
        pma_files = sum(1 for _ in (work / "lake-pma-full" / DB).rglob("*.parquet"))
        return {"total": total, "per": per, "seed": seed, "raw": raw, "full": full, "pma_full": pma_full,
                "walk": walk, "elements": elements, "floor": floor,
                "ml_incr": ml_incr, "pma_incr": pma_incr, "bytes": raw_json["bytes"], "mutate": mut.stdout.strip(),
                "files": files, "pma_files": pma_files, "ml_recent": ml_recent, "pma_recent": pma_recent,
                "mutate_recent": mut_recent.stdout.strip(), "touched_recent": touched}
    finally:
        servers.stop()
        for p in work.glob("lake-*"):
            shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(servers.dir, ignore_errors=True)


def fmt_s(x: float) -> str:
    """Seconds, 2 decimals under 100 s."""
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def size_report(res: dict, ranges: list[int]) -> list[str]:
    """Markdown for one size."""
    base = ranges[0]
    raw, full, pma_full = res["raw"][base], res["full"][base], res["pma_full"]
    ml_incr, pma_incr = res["ml_incr"], res["pma_incr"]
    mb = res["bytes"] / 1e6
    docs = raw.docs or 0

    def row(step: Step, ratio: str, rate: bool = True) -> str:
        runs = ", ".join(fmt_s(r.seconds) for r in step.runs)
        read = f"{step.docs:,}" if step.docs is not None else "?"
        dps = f"{docs / step.median:,.0f}" if rate else "–"
        mbs = f"{mb / step.median:,.1f}" if rate else "–"
        server = f"{step.server_cpu:.2f}" if step.server_cpu is not None else "?"
        return (f"| {step.label} | **{fmt_s(step.median)}** | {runs} | {read} | {dps} | {mbs} | {step.cpu:.2f} | "
                f"{server} | {step.peak_rss:,.0f} | {ratio} |")

    ml_vs_raw = full.median / raw.median
    pma_vs_ml = pma_full.median / full.median
    lines = [
        f"### {res['total']:,} documents ({res['per']:,} per collection x 5, {mb:,.1f} MB of BSON)",
        "",
        f"Seeded in {res['seed'].seconds:.1f} s. Lake: {res['files']} partition files (mongolake), "
        f"{res['pma_files']} (PyMongoArrow). Mutation: {res['mutate']}.",
        "",
        "| step | median s | runs s | docs read | docs/s | MB/s | CPU s | server CPU s | peak RSS MB | ratio |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
        row(raw, "baseline"),
        row(res["walk"], f"{res['walk'].median / raw.median:.2f}x raw drain; {res['elements']:,} elements"),
        row(full, f"**{ml_vs_raw:.2f}x raw drain** (target <= 1.5x)"),
        row(pma_full, f"**{pma_vs_ml:.1f}x mongolake** (target >= 10x)"),
        row(ml_incr, f"{ml_incr.median / full.median:.2f}x mongolake full load", rate=False),
        row(pma_incr, f"{pma_incr.median / ml_incr.median:.1f}x mongolake incremental", rate=False),
        row(res["ml_recent"], f"{res['ml_recent'].median / full.median:.2f}x mongolake full load; "
            f"{res['touched_recent']} partitions rewritten", rate=False),
        row(res["pma_recent"], f"{res['pma_recent'].median / res['ml_recent'].median:.1f}x mongolake", rate=False),
        "",
        f"Second mutation (`--recent {res['ml_recent'].label.split('newest ')[1].rstrip(')')}`): "
        f"{res['mutate_recent']}.",
        "",
        f"Targets: full load within 1.5x of the raw drain: **{'met' if ml_vs_raw <= 1.5 else 'NOT met'}**; "
        f"PyMongoArrow at least 10x slower: **{'met' if pma_vs_ml >= 10 else 'NOT met'}**.",
        "",
        *floor_report(res, raw, full, pma_full),
    ]
    if len(ranges) > 1:
        lines += [
            "Parallel `_id` ranges per collection (raw drain `--ranges R`; mongolake `[sync] read_ranges = R`):",
            "",
            "| ranges | raw drain median s | docs/s | mongolake full median s | docs/s | peak RSS MB | vs raw drain |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in ranges:
            a, b = res["raw"][r], res["full"][r]
            lines.append(f"| {r} | {fmt_s(a.median)} | {docs / a.median:,.0f} | {fmt_s(b.median)} | "
                         f"{docs / b.median:,.0f} | {b.peak_rss:,.0f} | {b.median / a.median:.2f}x |")
        lines.append("")
    return lines


def floor_report(res: dict, raw: Step, full: Step, pma: Step) -> list[str]:
    """What the targets leave: the CPU the server needs to serve the data, one checked read of every element and
    the Parquet encoding of the lake alone (each the least seen over the repetitions), against the CPU time the
    cores offer within each target's wall time."""
    cores = len(os.sched_getaffinity(0))
    runs = {r["compression"]: r for r in res["floor"]["runs"]}
    encode = res["floor"]["runs"][0]
    walk = max(0.0, res["walk"].min_cpu - raw.min_cpu)
    server = raw.min_server_cpu
    if server is None:
        return ["(server CPU time not measured: no floor computed)", ""]
    need = server + raw.min_cpu + walk + encode["cpu_seconds"]
    cheapest = min(res["floor"]["runs"], key=lambda r: r["cpu_seconds"])
    floor = need / cores
    codecs = ", ".join(f"{name} {r['cpu_seconds']:.2f} s ({r['bytes'] / 1e6:,.1f} MB)" for name, r in runs.items())

    def verdict(target: float) -> str:
        return ("below the floor: no client writing this lake with this Parquet writer reaches it on this machine"
                if floor > target else "above the floor: reachable in principle")

    return [
        f"Floor (CPU seconds, the least of the repetitions; {cores} cores): the server spent {server:.2f} s "
        f"serving the raw drain and the drain itself {raw.min_cpu:.2f} s; reading every element once more, "
        f"checked, {walk:.2f} s (`raw_drain --walk`: {res['walk'].min_cpu:.2f} s); encoding the lake's "
        f"{res['floor']['rows']:,} rows from Arrow into its {res['floor']['files']} files, nothing else "
        f"(`encode_floor`, one thread), {encode['cpu_seconds']:.2f} s with the {encode['compression']} "
        f"(others: {codecs}). Together {need:.2f} s of CPU: at least {floor:.2f} s of wall time on {cores} cores, "
        f"even if nothing else were done and nothing ever waited.",
        "",
        f"- 1.5x the raw drain is {1.5 * raw.median:.2f} s: {verdict(1.5 * raw.median)}.",
        f"- 10x faster than PyMongoArrow is {pma.median / 10:.2f} s: {verdict(pma.median / 10)}.",
        f"- With the cheapest encoding measured ({cheapest['compression']}, {cheapest['cpu_seconds']:.2f} s) the floor "
        f"would be {(need - encode['cpu_seconds'] + cheapest['cpu_seconds']) / cores:.2f} s.",
        f"- mongolake's full load used {full.cpu:.2f} s of CPU (the server {full.server_cpu or 0:.2f} s meanwhile); "
        f"PyMongoArrow's {pma.cpu:.2f} s (the server {pma.server_cpu or 0:.2f} s).",
        "",
    ]


def report(results: list[dict], args, command: str, versions: str, started: str) -> str:
    """The whole markdown report."""
    totals = ", ".join(f"{r['total']:,}" for r in results)
    lines = [
        f"## Benchmark {started}: {totals} documents",
        "",
        f"Command: `{command}`  ",
        f"Machine: {args.machine}  ",
        f"Versions: mongolake {git_rev()} (release build); {versions}; server secantusd-rs (scripts/servers.sh)  ",
        f"Each step {args.reps}x, interleaved, wall time of the whole process (connecting included); "
        "peak RSS = ru_maxrss of the process. docs/s and MB/s of full loads use the raw drain's document count "
        "and BSON bytes.",
        "",
    ]
    for res in results:
        lines += size_report(res, args.ranges)
    if len(results) > 1:
        b = args.ranges[0]
        lines += [
            "Scaling with size:",
            "",
            "| docs | raw drain s | mongolake full s | ml / raw | ml peak RSS MB | PyMongoArrow s | pma / ml | "
            "pma peak RSS MB | ml incr s | pma incr s | ml incr recent s | pma incr recent s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results:
            raw, full, pf = r["raw"][b], r["full"][b], r["pma_full"]
            lines.append(
                f"| {r['total']:,} | {fmt_s(raw.median)} | {fmt_s(full.median)} | {full.median / raw.median:.2f}x | "
                f"{full.peak_rss:,.0f} | {fmt_s(pf.median)} | {pf.median / full.median:.1f}x | {pf.peak_rss:,.0f} | "
                f"{fmt_s(r['ml_incr'].median)} | {fmt_s(r['pma_incr'].median)} | "
                f"{fmt_s(r['ml_recent'].median)} | {fmt_s(r['pma_recent'].median)} |")
        lines.append("")
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    """`1,2,4` -> [1, 2, 4]; accepts `1_000_000`, `100k` and `1M`."""
    out = []
    for item in text.split(","):
        item = item.strip().lower().replace("_", "")
        mult = {"k": 1_000, "m": 1_000_000}.get(item[-1:], 1)
        out.append(int(float(item.rstrip("km")) * mult))
    return out


def main() -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int_list, default=None, help="total documents (default 1000000)")
    ap.add_argument("--sizes", type=int_list, default=None, help="several totals, e.g. 100000,1000000,5000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ranges", type=int_list, default=[1, 2, 4], help="parallel _id ranges to measure")
    ap.add_argument("--fraction", type=float, default=0.01, help="share of documents mutated before incremental")
    ap.add_argument("--recent", type=float, default=0.02,
                    help="second incremental round: the changes fall among this newest share (mutate --recent)")
    ap.add_argument("--python", default=sys.executable, help="Python with pymongoarrow")
    ap.add_argument("--pma-parallelism", default="off", choices=["off", "threads", "processes"],
                    help="PyMongoArrow's batch decoding parallelism (its default: off)")
    ap.add_argument("--collections", type=Path, default=ROOT / "collections.csv")
    ap.add_argument("--mongo-port", type=int, default=27700)
    ap.add_argument("--command", default=None, help="the command line to show in the report")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    sizes = (args.sizes or []) + (args.docs or [])
    sizes = sizes or [1_000_000]
    args.ranges = list(dict.fromkeys(args.ranges))
    args.machine = machine()
    command = args.command or shlex.join(sys.argv)
    started = dt.date.today().isoformat()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    bin_dir = ROOT / "target" / "release"
    for b in ("mongolake", "raw_drain", "encode_floor"):
        if not (bin_dir / b).exists():
            raise SystemExit(f"{bin_dir / b} missing: run `cargo build --release --bins` (scripts/bench.sh does)")
    versions = subprocess.run(
        [args.python, "-W", "ignore", "-c",
         "import pymongoarrow, pyarrow, pymongo; "
         "print(f'pymongoarrow {pymongoarrow.__version__}, pyarrow {pyarrow.__version__}, pymongo {pymongo.version}')"],
        capture_output=True, text=True, check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="mongolake-bench-"))
    log(f"work directory {work}; sizes {sizes}; {args.reps} reps; ranges {args.ranges}")
    results = []
    try:
        for total in sizes:
            results.append(bench_size(total, args, work, bin_dir))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, command, versions, started)
    out_dir = ROOT / "bench" / "results"
    save_report(out_dir, f"{started}-{'_'.join(str(s) for s in sizes)}", text)
    return 0


def save_report(out_dir: Path, stem: str, text: str) -> Path:
    """Prints the report and writes it to `<out_dir>/<stem>.md`, or `<stem>-2.md`, `-3`... when an earlier run
    of the same day and sizes has that name: it is kept (the README may cite it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out, n = out_dir / f"{stem}.md", 2
    while out.exists():
        out = out_dir / f"{stem}-{n}.md"
        n += 1
    out.write_text(text + "\n")
    print(text)
    log(f"written to {out.relative_to(ROOT)}")
    return out


if __name__ == "__main__":
    sys.exit(main())
