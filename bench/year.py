#!/usr/bin/env python3
"""A training project's tree on day DAY of a year, for bench/run's retention run (deterministic per day).

    year.py DIR DAY

Day 0 makes it; each later call brings the tree from day DAY-1 to day DAY:
  base/       64 MiB of fixed files (a frozen base model), never changed
  ckpt.bin    8 MiB, rewritten every day (the latest checkpoint)
  data/       a 2 MiB shard added every day, kept for 30 days (a rolling window: 60 MiB)
  eval/       16 small files, one rewritten every day
  train.log   appended every day
About 10 MiB of new data a day, ~135 MiB live at any time.
"""
import os
import random
import sys

root, day = sys.argv[1], int(sys.argv[2])


def write(path, size, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(random.Random(seed).randbytes(size))


if day == 0:
    for i in range(8):
        write(f"{root}/base/part-{i}.bin", 8 << 20, 10_000 + i)
    for i in range(16):
        write(f"{root}/eval/e{i:02d}.json", 4096 + 97 * i, 20_000 + i)
write(f"{root}/ckpt.bin", 8 << 20, 1_000_000 + day)
write(f"{root}/data/shard-{day:03d}.bin", 2 << 20, 2_000_000 + day)
old = f"{root}/data/shard-{day - 30:03d}.bin"
if os.path.exists(old):
    os.remove(old)
write(f"{root}/eval/e{day % 16:02d}.json", 4096 + 97 * (day % 16), 3_000_000 + day)
with open(f"{root}/train.log", "a") as f:
    f.write("".join(f"day {day} step {s} loss {1.0 / (1 + day + s / 100):.6f}\n" for s in range(200)))
