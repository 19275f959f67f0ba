#!/usr/bin/env python3
"""Cost against vault size: the chunk index in each process's memory (`--catalog memory`, as before the
catalog) beside the embedded catalog (SQLite) and, with SCALE_PG_URL, PostgreSQL, in the same run.

For each size (chunks stored: random data backed up with `init --chunk-size 1KiB`, so about one chunk per
KiB) and each catalog, on the same vault, it times and measures the peak RSS of:
  open      `mvault snapshots` (open the vault, sync the catalog, list)
  backup    a backup of one new 1 MiB file
  lookups   a backup of a 100,000 KiB file already stored, from another host (about 100,000 dedup lookups,
            no data written)
  check     `mvault check` (every snapshot's references and every delta base against the index)
The first command on a new catalog ingests every index file once; it is reported apart ("ingest").

  bench/scale.py                          # sizes 100k and 1M chunks under /tmp/mvault-bench-scale
  SCALE_SIZES=100000,1000000,10000000 SCALE_PG_URL=postgres://u@127.0.0.1/db bench/scale.py

Results: bench/results/scale.txt. Times are wall seconds of whole commands (best of 3); RSS is the
process's peak resident set (getrusage), MiB.
"""
import os, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MVAULT = os.environ.get("MVAULT", os.path.join(ROOT, "target/release/mvault"))
DIR = os.environ.get("BENCH_DIR", "/tmp/mvault-bench-scale")
SIZES = [int(s) for s in os.environ.get("SCALE_SIZES", "100000,1000000").split(",")]
PG = os.environ.get("SCALE_PG_URL")
ENV = dict(os.environ, MVAULT_PASSWORD="bench-password-not-secret", MVAULT_CACHE_DIR=os.path.join(DIR, "cache"))
ENV.pop("MVAULT_VAULT", None)
ENV.pop("MVAULT_CATALOG", None)


def run(args, catalog):
    """Run mvault; returns (seconds, peak RSS MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen([MVAULT, "-q", "--catalog", catalog] + args, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"mvault {' '.join(args)} failed: {err}")
    return seconds, usage.ru_maxrss / 1024


def best(args, catalog, n=3):
    runs = [run(args, catalog) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def random_file(path, kib):
    with open(path, "wb") as f:
        left = kib << 10
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n


def main():
    if not os.access(MVAULT, os.X_OK):
        sys.exit(f"{MVAULT} not found; build it with: cargo build --release -p mvault")
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    catalogs = ["memory", "embedded"] + (["postgres"] if PG else [])
    rows = []
    for size in SIZES:
        vault, data = os.path.join(DIR, f"v{size}"), os.path.join(DIR, f"d{size}")
        os.makedirs(data)
        # The probe file is part of the fill, so the lookups backup finds every chunk stored.
        random_file(os.path.join(data, "probe.bin"), 100_000)
        rest = max(size - 100_000, 0)
        for i in range(0, rest, 262_144):
            random_file(os.path.join(data, f"fill-{i}.bin"), min(262_144, rest - i))
        fill_s, _ = run(["--vault", vault, "init", "--chunk-size", "1KiB"], "memory")
        fill_s, fill_rss = run(["--vault", vault, "backup", data], "memory")
        new = os.path.join(DIR, f"new{size}")
        os.makedirs(new)
        for name in catalogs:
            cat = PG if name == "postgres" else name
            ingest, ingest_rss = run(["--vault", vault, "snapshots"], cat)
            open_s, open_rss = best(["--vault", vault, "snapshots"], cat)
            times = []
            for i in range(3):
                random_file(os.path.join(new, f"{name}-{i}.bin"), 1024)
                times.append(run(["--vault", vault, "backup", os.path.join(new, f"{name}-{i}.bin")], cat))
            backup_s, backup_rss = min(t[0] for t in times), max(t[1] for t in times)
            look_s, look_rss = best(["--vault", vault, "backup", "--host", f"probe-{name}",
                                     os.path.join(data, "probe.bin")], cat, n=2)
            check_s, check_rss = run(["--vault", vault, "check"], cat)
            rows.append((size, name, ingest, open_s, open_rss, backup_s, backup_rss, look_s, look_rss,
                         check_s, check_rss))
            print(f"{size:>9} {name:<9} ingest {ingest:6.2f}s  open {open_s:6.3f}s {open_rss:6.0f} MiB  "
                  f"1MiB backup {backup_s:6.3f}s {backup_rss:6.0f} MiB  lookups {look_s:6.2f}s {look_rss:6.0f} MiB  "
                  f"check {check_s:6.2f}s {check_rss:6.0f} MiB", file=sys.stderr)
        shutil.rmtree(data)
    lines = [
        f"mvault scale: {', '.join(str(s) for s in SIZES)} chunks of about 1 KiB; catalogs {', '.join(catalogs)}",
        f"{'chunks':>9}  {'catalog':<9} {'ingest s':>8} {'open s':>7} {'open MiB':>8} {'1MiB bk s':>9} "
        f"{'bk MiB':>6} {'100k lookups s':>14} {'lk MiB':>6} {'check s':>7} {'ck MiB':>6}",
    ]
    for r in rows:
        lines.append(f"{r[0]:>9}  {r[1]:<9} {r[2]:>8.2f} {r[3]:>7.3f} {r[4]:>8.0f} {r[5]:>9.3f} {r[6]:>6.0f} "
                     f"{r[7]:>14.2f} {r[8]:>6.0f} {r[9]:>7.2f} {r[10]:>6.0f}")
    out = "\n".join(lines) + "\n"
    print(out, end="")
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/scale.txt"), "w") as f:
        f.write(out)


if __name__ == "__main__":
    main()
