#!/usr/bin/env python3
"""bench/s3.sh's small-object part: one boto3 client on 127.0.0.1 against a running gateway.

    s3small.py WORKDIR      (WORKDIR holds key.json and srv.json, as bench/s3.sh writes them)

p50 and p99 latency of PUT, GET and HEAD of 4 KiB objects (500 each after 20 warm-up PUTs), then 2,000 files of
1-64 KiB up and down with rclone if it is installed (boto3 with 8 threads if not), checked byte for byte.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

w = sys.argv[1]
k, s = json.load(open(f"{w}/key.json")), json.load(open(f"{w}/srv.json"))
c = boto3.client("s3", endpoint_url=s["s3"], aws_access_key_id=k["access_key_id"],
                 aws_secret_access_key=k["secret_access_key"], region_name="us-east-1", verify=s["cert"],
                 config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
c.create_bucket(Bucket="small")
body = os.urandom(4096)


def timed(f, n):
    out = []
    for i in range(n):
        t = time.perf_counter()
        f(i)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def p(xs, q):
    return sorted(xs)[max(0, int(len(xs) * q) - 1)]


timed(lambda i: c.put_object(Bucket="small", Key=f"warm/{i}", Body=body), 20)
put = timed(lambda i: c.put_object(Bucket="small", Key=f"o/{i:04d}", Body=body), 500)
get = timed(lambda i: c.get_object(Bucket="small", Key=f"o/{i:04d}")["Body"].read(), 500)
head = timed(lambda i: c.head_object(Bucket="small", Key=f"o/{i:04d}"), 500)
for name, xs in (("PUT", put), ("GET", get), ("HEAD", head)):
    print(f"small {name:<4} 4 KiB: p50 {statistics.median(xs):6.2f} ms, p99 {p(xs, 0.99):6.2f} ms")
print(f"small GET / HEAD at p50: {statistics.median(get) / statistics.median(head):.2f}x (goal: at most 2x)")

src, dst = f"{w}/many", f"{w}/many-down"
os.makedirs(src)
rng = random.Random(7)
total = 0
for i in range(2000):
    n = rng.randint(1 << 10, 64 << 10)
    total += n
    with open(f"{src}/f{i:04d}.bin", "wb") as f:
        f.write(rng.randbytes(n))
names = sorted(os.listdir(src))
if subprocess.run(["sh", "-c", "command -v rclone"], capture_output=True).returncode == 0:
    env = dict(os.environ, RCLONE_CONFIG_GW_TYPE="s3", RCLONE_CONFIG_GW_PROVIDER="Other",
               RCLONE_CONFIG_GW_ENDPOINT=s["s3"], RCLONE_CONFIG_GW_ACCESS_KEY_ID=k["access_key_id"],
               RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=k["secret_access_key"], RCLONE_CA_CERT=s["cert"])
    # rclone's S3 SDK refuses to start with AWS_CA_BUNDLE set (it brings its own transport): --ca-cert it is.
    env.pop("AWS_CA_BUNDLE", None)
    t0 = time.time()
    subprocess.run(["rclone", "copy", "--transfers", "8", src, "gw:small/many"], check=True, env=env)
    t1 = time.time()
    subprocess.run(["rclone", "copy", "--transfers", "8", "gw:small/many", dst], check=True, env=env)
    t2 = time.time()
    tool = "rclone copy --transfers 8"
else:
    with ThreadPoolExecutor(8) as ex:
        t0 = time.time()
        list(ex.map(lambda n: c.upload_file(f"{src}/{n}", "small", f"many/{n}"), names))
        t1 = time.time()
        os.makedirs(dst)
        list(ex.map(lambda n: c.download_file("small", f"many/{n}", f"{dst}/{n}"), names))
        t2 = time.time()
    tool = "boto3, 8 threads"
for n in names:
    with open(f"{src}/{n}", "rb") as a, open(f"{dst}/{n}", "rb") as b:
        assert a.read() == b.read(), n
print(f"many files ({tool}): 2000 files, {total / 2**20:.1f} MiB: up {total / (t1 - t0) / 1e6:.1f} MB/s, "
      f"down {total / (t2 - t1) / 1e6:.1f} MB/s, identical")
