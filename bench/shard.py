#!/usr/bin/env python3
"""How `sync --shard K/N` scales a night over N workers on one machine (issue 6, "scale beyond one machine").

Seeds its own MongoDB-compatible server (as bench/run.py; or reuses one with --uri/--db), then, repeated and
interleaved, full loads into a fresh lake:
  - `one worker`: `mongolake sync` alone;
  - `N workers`: N processes `mongolake sync --shard K/N` started together (collections dealt by name, and a
    first load of at least `shard_ranges_min_docs` documents shared in `_id` ranges);
  - `N workers, no ranges`: the same with `shard_ranges_min_docs = 0` (collections dealt, never split).
for the five generator collections (`--only` narrows it, e.g. to one large collection). Reports median wall time
(first start to last exit), CPU seconds (user + system, all workers), peak RSS (the largest worker), and checks
that every lake holds the same rows per table in one file per partition (with pyarrow, when importable).
Prints a markdown report and writes bench/results/<date>-shard-<docs>.md (-2, -3... when that exists).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: server, config, machine description)

ROOT = bench.ROOT


def start_group(cmds: list[list[str]], env: dict[str, str], what: str, pin: bool) -> tuple[float, float, float]:
    """Runs the commands together (command k on core k when `pin`); returns (wall seconds, CPU seconds of all,
    largest peak RSS in MB)."""
    procs = []
    start = time.perf_counter()
    cores = sorted(os.sched_getaffinity(0))
    for k, cmd in enumerate(cmds):
        out = tempfile.TemporaryFile("w+")
        core = {cores[k % len(cores)]}
        pre = (lambda core=core: os.sched_setaffinity(0, core)) if pin else None
        procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, preexec_fn=pre), out, cmd))
    cpu, rss = 0.0, 0.0
    for proc, out, cmd in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
        if proc.returncode not in (0,):
            out.seek(0)
            tail = "".join(out.read().splitlines(keepends=True)[-30:])
            raise SystemExit(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    wall = time.perf_counter() - start
    bench.log(f"{what}: {wall:.2f} s wall, {cpu:.1f} CPU-s, largest peak RSS {rss:.0f} MB")
    return wall, cpu, rss


def lake_shape(lake: Path, db: str) -> dict[str, tuple[int, int, int]] | None:
    """Per table: (rows, files, partition folders); None without pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    shape = {}
    for table in sorted((lake / db).iterdir()):
        files = [f for f in table.rglob("*.parquet")]
        folders = {f.parent for f in files}
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        shape[table.name] = (rows, len(files), len(folders))
    return shape


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000, help="documents to seed, over five collections")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default="", help="collection names to sync (comma-separated, without the db)")
    ap.add_argument("--min-docs", type=int, default=100_000, help="shard_ranges_min_docs for the ranges runs")
    ap.add_argument("--uri", default="", help="reuse this server (already seeded) instead of starting one")
    ap.add_argument("--db", default=bench.DB)
    ap.add_argument("--mongo-port", type=int, default=27710)
    ap.add_argument("--pin", action="store_true",
                    help="one core per worker (worker k on core k; the single worker on core 0), standing in for "
                         "workers on separate machines; the server is not pinned")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    command = "scripts/bench.sh --shard " + shlex.join(sys.argv[1:])
    binary = ROOT / "target/release/mongolake"
    started = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    machine = bench.machine()
    work = Path(tempfile.mkdtemp(prefix="mongolake-bench-shard-"))
    servers = None
    try:
        uri = args.uri
        if not uri:
            servers = bench.Servers(work / "servers", args.mongo_port)
            uri = servers.start()
            bench.log(f"seeding {args.docs} documents")
            subprocess.run([str(binary), "seed", "--uri", uri, "--db", args.db, "--docs", str(args.docs),
                            "--seed", "42"], check=True, stdout=sys.stderr)
        env = dict(os.environ, MONGOLAKE_BENCH_MONGO_URI=uri)
        only = [f"{args.db}.{c}" for c in args.only.split(",") if c]
        configs = {}
        for name, min_docs in (("ranges", args.min_docs), ("noranges", 0)):
            lake = work / f"lake-{name}"
            d = bench.write_config(work / f"cfg-{name}", lake, 1, ROOT / "collections.csv")
            csv = (d / "collections.csv").read_text().replace("hims,", f"{args.db},")
            (d / "collections.csv").write_text(csv)
            with open(d / "environments/bench.toml", "a") as f:
                f.write(f"shard_ranges_min_docs = {min_docs}\nshard_help_wait_seconds = 15\n")
            configs[name] = (d, lake)

        def cmd(cfg: Path, shard: str | None) -> list[str]:
            c = [str(binary), "sync", "--env", "bench", "--config-dir", str(cfg), "--no-email"]
            if only:
                c += ["--only", ",".join(only)]
            if shard:
                c += ["--shard", shard]
            return c

        n = args.workers
        steps = {"one worker": [], f"{n} workers": [], f"{n} workers, no ranges": []}
        shapes = {}
        for rep in range(args.reps):
            for label in steps:
                name = "noranges" if "no ranges" in label else "ranges"
                cfg, lake = configs[name]
                bench.fresh(lake)
                cmds = [cmd(cfg, None)] if label == "one worker" else [cmd(cfg, f"{k}/{n}") for k in range(n)]
                steps[label].append(start_group(cmds, env, f"{label} (rep {rep + 1})", args.pin))
                shapes[label] = lake_shape(lake, args.db)
        reference = shapes["one worker"]
        same = all(s == reference for s in shapes.values()) if reference is not None else None
        one = statistics.median(w for w, _, _ in steps["one worker"])
        lines = [
            f"# mongolake `--shard` scaling: {args.docs:,} documents, {n} workers on one machine",
            "",
            f"- command: `{command}`",
            f"- commit {bench.git_rev()}, {started}",
            f"- machine: {machine}",
            f"- collections: {', '.join(only) if only else 'all five'}; ranges when a first load has at least "
            f"{args.min_docs:,} documents" + ("; each worker pinned to one core (`--pin`)" if args.pin else ""),
            "",
            "| run | wall (median) | vs one worker | CPU-s (all workers) | largest peak RSS |",
            "|---|---|---|---|---|",
        ]
        for label, runs in steps.items():
            wall = statistics.median(w for w, _, _ in runs)
            cpu = statistics.median(c for _, c, _ in runs)
            rss = max(r for _, _, r in runs)
            lines.append(f"| {label} | {wall:.2f} s | {one / wall:.2f}x | {cpu:.1f} | {rss:.0f} MB |")
        lines += ["", "Each repetition's wall times: " + "; ".join(
            f"{label}: " + ", ".join(f"{w:.2f}" for w, _, _ in runs) for label, runs in steps.items())]
        if same is None:
            lines.append("\nLakes not compared (pyarrow not importable).")
        else:
            lines.append(f"\nSame rows, files and partition folders per table in every lake: {'yes' if same else 'NO'}"
                         f" ({reference})")
        text = "\n".join(lines) + "\n"
        print(text)
        out = ROOT / "bench/results" / f"{dt.date.today().isoformat()}-shard-{args.docs}.md"
        i = 2
        while out.exists():
            out = out.with_name(f"{dt.date.today().isoformat()}-shard-{args.docs}-{i}.md")
            i += 1
        out.write_text(text)
        bench.log(f"written to {out}")
        return 0 if same is not False else 1
    finally:
        if servers:
            servers.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
