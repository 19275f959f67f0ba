#!/usr/bin/env python3
"""bench/run's report: the TSV of timed steps and facts -> a table on stdout and bench.json.

    report.py RESULTS.tsv BENCH_DIR OUT.json VERSIONS

Throughput is source bytes / wall seconds (MB = 10^6 bytes). "vs peer" is mvault's throughput over the
peer's (higher is better for mvault); "vs limit" is mvault's cold backup over the slowest raw limit of its
pipeline: reading the files, writing the same bytes (dd, fsync), and on the machine's cores AES-256-GCM,
keyed BLAKE3 and zstd -3 (one core's speed x the cores).
"""
import datetime
import json
import os
import sys

tsv, bench_dir, out, versions = sys.argv[1:5]
steps, facts = {}, {}
for line in open(tsv):
    kind, *f = line.rstrip("\n").split("\t")
    if kind == "step":
        s, tool, op, wall, cpu, rss = f
        steps[(s, tool, op)] = None if wall == "FAIL" else {
            "wall_s": float(wall), "cpu_s": float(cpu), "peak_rss_mib": round(int(rss) / 1024, 1)}
    else:
        s, tool, key, value = f
        facts[(s, tool, key)] = value

cores = os.cpu_count() or 1
sets = []
scaling = []
for (s, tool, op), st in steps.items():
    if s == "scaling" and st:
        what = op.split(" ", 1)[1]
        size = int(facts.get((s, tool, f"bytes {what.replace('unchanged ', '')}"), 0) or 0)
        scaling.append({"run": op, "wall_s": st["wall_s"], "cpu_s": st["cpu_s"], "peak_rss_mib": st["peak_rss_mib"],
                        "bytes": size, "mb_s": round(size / 1e6 / max(st["wall_s"], 1e-3), 1)})
for s in dict.fromkeys(k[0] for k in facts if k[0] not in ("scaling", "retention")):
    src = int(facts[(s, "-", "bytes")])
    speed = json.loads(facts.get((s, "raw", "speed"), "{}") or "{}")
    raw = {
        "read_files_mb_s": src / 1e6 / steps[(s, "raw", "read files")]["wall_s"] if steps.get((s, "raw", "read files")) else None,
        "dd_write_mb_s": src / 1e6 / steps[(s, "raw", "dd write")]["wall_s"] if steps.get((s, "raw", "dd write")) else None,
        "aes_256_gcm_mb_s_per_core": speed.get("aes_256_gcm_seal", 0) / 1e6,
        "blake3_mb_s_per_core": speed.get("blake3_keyed", 0) / 1e6,
        "zstd3_mb_s_per_core": speed.get("zstd3_compress", 0) / 1e6,
        "zstd3_ratio": speed.get("zstd3_ratio"),
    }
    limits = [raw["read_files_mb_s"], raw["dd_write_mb_s"]] + [
        cores * raw[k] for k in ("aes_256_gcm_mb_s_per_core", "blake3_mb_s_per_core", "zstd3_mb_s_per_core")]
    slowest = min(x for x in limits if x)
    tools = []
    for tool in dict.fromkeys(k[1] for k in steps if k[0] == s and k[1] != "raw"):
        row = {"tool": tool, "stored_bytes": int(facts.get((s, tool, "stored"), 0)),
               "small_change_stored_bytes": int(facts.get((s, tool, "small change stored"), 0)),
               "restore_ok": facts.get((s, tool, "restore ok")) == "ok"}
        for ok in ("restore degraded ok", "restore flushed ok"):
            if (s, tool, ok) in facts:
                row[ok.replace(" ", "_")] = facts[(s, tool, ok)] == "ok"
        for op in ("backup cold", "backup unchanged", "backup small change", "restore", "restore flushed",
                   "restore degraded", "check read-data"):
            st = steps.get((s, tool, op), "absent")
            if st == "absent":
                continue
            key = op.replace(" ", "_").replace("-", "_")
            row[key] = None if st is None else dict(st, mb_s=round(src / 1e6 / max(st["wall_s"], 1e-3), 1))
        tools.append(row)
    sets.append({"set": s, "source_bytes": src, "files": int(facts[(s, "-", "files")]), "raw_limits": raw,
                 "slowest_raw_limit_mb_s": round(slowest, 1), "tools": tools})


def get(row, op, field):
    v = row.get(op)
    return None if not v else v.get(field)


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


report_lines = []
for st in sets:
    r = st["raw_limits"]
    report_lines.append(
        f'\n## {st["set"]}: {st["source_bytes"] / 2**20:.1f} MiB in {st["files"]} files\n'
        f'raw limits: read {fmt(r["read_files_mb_s"])} MB/s, dd write {fmt(r["dd_write_mb_s"])} MB/s; one core: '
        f'AES-256-GCM {r["aes_256_gcm_mb_s_per_core"]:.0f}, BLAKE3 {r["blake3_mb_s_per_core"]:.0f}, '
        f'zstd -3 {r["zstd3_mb_s_per_core"]:.0f} MB/s (ratio {fmt(r["zstd3_ratio"], ".3f")}); '
        f'slowest in the pipeline on {cores} cores: {st["slowest_raw_limit_mb_s"]:.0f} MB/s\n')
    hdr = ["tool", "cold MB/s", "cpu s", "unchanged s", "small chg s", "+stored MiB", "restore MB/s",
           "degraded MB/s", "check MB/s", "stored MiB", "% of src", "peak RSS MiB", "restore"]
    rows = []
    for t in st["tools"]:
        rss = max([get(t, k, "peak_rss_mib") or 0 for k in t if isinstance(t.get(k), dict)] or [0])
        rows.append([t["tool"], fmt(get(t, "backup_cold", "mb_s")), fmt(get(t, "backup_cold", "cpu_s")),
                     fmt(get(t, "backup_unchanged", "wall_s"), ".2f"), fmt(get(t, "backup_small_change", "wall_s"), ".2f"),
                     f'{t["small_change_stored_bytes"] / 2**20:.1f}', fmt(get(t, "restore", "mb_s")),
                     fmt(get(t, "restore_degraded", "mb_s")), fmt(get(t, "check_read_data", "mb_s")),
                     f'{t["stored_bytes"] / 2**20:.1f}', f'{100 * t["stored_bytes"] / st["source_bytes"]:.1f}',
                     f"{rss:.0f}", "ok" if t["restore_ok"] else "DIFF"])
    w = [max(len(x[i]) for x in rows + [hdr]) for i in range(len(hdr))]
    line = lambda c: "| " + " | ".join(x.rjust(n) if i else x.ljust(n) for i, (x, n) in enumerate(zip(c, w))) + " |"
    report_lines += [line(hdr), "|" + "|".join("-" * (n + 2) for n in w) + "|"] + [line(x) for x in rows]
    mv = next((t for t in st["tools"] if t["tool"] == "mvault"), None)
    if mv:
        ratios = []
        for peer in st["tools"]:
            if peer["tool"].startswith("mvault"):
                continue
            parts = []
            for op, label in (("backup_cold", "backup"), ("restore", "restore")):
                a, b = get(mv, op, "mb_s"), get(peer, op, "mb_s")
                if a and b:
                    parts.append(f"{label} {a / b:.2f}x")
            a, b = get(mv, "backup_cold", "wall_s"), get(mv, "backup_unchanged", "wall_s")
            if peer["stored_bytes"]:
                d = 100 * (1 - mv["stored_bytes"] / peer["stored_bytes"])
                parts.append(f"stored {d:.0f}% smaller" if d >= 0 else f"stored {-d:.0f}% larger")
            ratios.append(f'mvault vs {peer["tool"]}: ' + ", ".join(parts))
        flushed, restic = get(mv, "restore_flushed", "mb_s"), next(
            (get(t, "restore", "mb_s") for t in st["tools"] if t["tool"] == "restic"), None)
        if flushed:
            ok = "ok" if mv.get("restore_flushed_ok") else "DIFF"
            vs = f", {flushed / restic:.2f}x restic's unflushed restore" if restic else ""
            ratios.append(f"mvault restore flushed to disk (its default; the table's restores are not): "
                          f"{flushed:.1f} MB/s{vs} ({ok})")
        cold, unch = get(mv, "backup_cold", "wall_s"), get(mv, "backup_unchanged", "wall_s")
        if cold and unch:
            ratios.append(f"mvault unchanged re-backup {cold / unch:.1f}x faster than cold")
        if get(mv, "backup_cold", "mb_s"):
            ratios.append(f'mvault cold backup = {100 * get(mv, "backup_cold", "mb_s") / st["slowest_raw_limit_mb_s"]:.0f}% '
                          f"of the slowest raw limit")
        report_lines += [""] + ratios
if scaling:
    report_lines.append("\n## scaling (mvault backup; memory must not grow with data size)")
    for r in scaling:
        report_lines.append(f'{r["run"]:<26} {r["wall_s"]:7.2f} s  {r["mb_s"]:7.1f} MB/s  cpu {r["cpu_s"]:6.1f} s  '
                            f'peak RSS {r["peak_rss_mib"]:6.1f} MiB')
# A year of daily backups under one retention policy: what each tool stores against a fresh backup of what is live.
retention = []
for tool in dict.fromkeys(k[1] for k in facts if k[0] == "retention" and k[1] != "-"):
    f = lambda key: facts.get(("retention", tool, key))
    row = {"tool": tool, "days": int(facts[("retention", "-", "days")]),
           "live_bytes": int(facts[("retention", "-", "live bytes")]), "snapshots": int(f("snapshots")),
           "stored_bytes": int(f("stored")), "fresh_backup_bytes": int(f("fresh")), "wall_s": float(f("wall s"))}
    if f("stored after repack 0%"):
        row["stored_after_repack_0_bytes"] = int(f("stored after repack 0%"))
    retention.append(row)
if retention:
    r0 = retention[0]
    report_lines.append(f'\n## a year of daily backups: {r0["days"]} days, keep-daily 7, keep-weekly 4, keep-monthly 12, '
                        f'pruned weekly; {r0["live_bytes"] / 2**20:.1f} MiB live at the end')
    report_lines.append("| tool   | snapshots kept | stored MiB | floor MiB (no garbage) | garbage left | last day fresh MiB | wall s |")
    report_lines.append("|--------|----------------|------------|------------------------|--------------|--------------------|--------|")
    for r in retention:
        floor = r.get("stored_after_repack_0_bytes")
        garbage = f'{100 * (r["stored_bytes"] - floor) / r["stored_bytes"]:.1f}%' if floor else "-"
        report_lines.append(
            f'| {r["tool"]:<6} | {r["snapshots"]:>14} | {r["stored_bytes"] / 2**20:>10.1f} | '
            f'{(floor / 2**20 if floor else float("nan")):>22.1f} | {garbage:>12} | '
            f'{r["fresh_backup_bytes"] / 2**20:>18.1f} | {r["wall_s"]:>6.0f} |')
    by = {r["tool"]: r for r in retention}
    if "mvault" in by and "restic" in by:
        report_lines.append(f'mvault stores {100 * (1 - by["mvault"]["stored_bytes"] / by["restic"]["stored_bytes"]):.0f}% '
                            f'less than restic after the same year and policy')
print("\n".join(report_lines))

json.dump({
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "machine": {"cpus": cores, "mem_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")},
    "versions": versions, "page_cache": "warm (not dropped)", "sets": sets, "scaling": scaling,
    "retention": retention,
}, open(out, "w"), indent=1)
print(f"\nwrote {out}")
