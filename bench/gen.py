#!/usr/bin/env python3
"""Deterministic benchmark data set for bench/run.sh (stdlib only).

    gen.py OUT_DIR GIB [SEED]

Writes about GIB GiB under OUT_DIR, split by bytes roughly as:
  10%  small/   many 1-64 KiB text/JSON-ish files (compressible)
  40%  medium/  1-16 MiB files: random (incompressible), text-like, or a mix of both
  50%  models/  safetensors-like files (<= 512 MiB each, at least 2) of F32 or BF16
                weights: sign/exponent drawn from a normal distribution with small
                sigma (0.01-0.05, varying per tensor), mantissa bits uniform.
Same (GIB, SEED) -> same bytes. Weight data is built with bytes-level tricks
(translate tables over random bytes) so it runs at a few hundred MB/s without numpy.
"""
import json
import math
import os
import random
import statistics
import struct
import sys

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
WORDS = ("model layer weight bias attention head embed token config optimizer step loss "
         "learning_rate batch epoch checkpoint shard tensor float dtype shape name value "
         "train eval metric accuracy run seed gpu node rank world_size warmup decay").split()


def text_pool(rng, n=4000):
    """Lines of JSON-ish / log-ish text; files are built by sampling these."""
    pool = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            d = {rng.choice(WORDS): rng.choice(WORDS) for _ in range(rng.randint(2, 6))}
            d["step"] = rng.randint(0, 10**6)
            d["loss"] = round(rng.uniform(0.5, 4.0), 6)
            pool.append(json.dumps(d))
        elif kind == 1:
            pool.append(f"[{rng.randint(0, 10**9):010d}] INFO " + " ".join(rng.choices(WORDS, k=rng.randint(5, 15))))
        else:
            pool.append(",".join(f"{rng.gauss(0, 1):.5f}" for _ in range(rng.randint(4, 12))))
    return pool


def text_bytes(rng, pool, size):
    lines = rng.choices(pool, k=size // 60 + 16)
    return "\n".join(f"{i} {l}" for i, l in enumerate(lines)).encode()[:size]


def weight_tables(sigma):
    """Translate tables mapping a uniform byte u to the float's top byte (sign + exponent
    bits 7..1) and the 0x80 bit of the next byte (exponent bit 0), for |x| ~ half-normal(sigma)."""
    nd = statistics.NormalDist()
    top, low = bytearray(256), bytearray(256)
    for u in range(256):
        q = ((u & 127) + 0.5) / 128
        x = sigma * nd.inv_cdf(0.5 + q / 2)
        e = math.frexp(x)[1] - 1 + 127  # biased exponent
        top[u] = ((u >> 7) << 7) | (e >> 1)
        low[u] = (e & 1) << 7
    return bytes(top), bytes(low)


def weights(rng, n, sigma, stride):
    """n values, stride 4 (F32, little-endian) or 2 (BF16)."""
    buf = bytearray(rng.randbytes(n * stride))
    top_t, low_t = weight_tables(sigma)
    u = bytes(buf[stride - 1::stride])
    buf[stride - 1::stride] = u.translate(top_t)
    mant = int.from_bytes(buf[stride - 2::stride], "little") & int.from_bytes(b"\x7f" * n, "little")
    buf[stride - 2::stride] = (mant | int.from_bytes(u.translate(low_t), "little")).to_bytes(n, "little")
    return buf


def write_model(rng, path, size, dtype):
    """Tensors of up to 16 MiB filling `size` bytes of data (the header comes on top)."""
    stride = 4 if dtype == "F32" else 2
    cols = 4096 if dtype == "F32" else 8192
    header, off, sizes = {"__metadata__": {"format": "pt"}}, 0, []
    while size - off >= stride * cols:
        nbytes = min(16 * MIB, (size - off) // (stride * cols) * stride * cols)
        i = len(sizes)
        header[f"model.layers.{i // 4}.{'qkvo'[i % 4]}_proj.weight"] = {
            "dtype": dtype, "shape": [nbytes // stride // cols, cols], "data_offsets": [off, off + nbytes]}
        sizes.append(nbytes)
        off += nbytes
    hdr = json.dumps(header).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr)
        for nbytes in sizes:
            f.write(weights(rng, nbytes // stride, rng.uniform(0.01, 0.05), stride))


def main():
    out, gib = sys.argv[1], float(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    total = int(gib * GIB)
    rng = random.Random(seed)
    pool = text_pool(rng)
    for d in ("small", "medium", "models"):
        os.makedirs(os.path.join(out, d), exist_ok=True)

    # small: 1-64 KiB text, grouped in subdirectories of 200 files
    budget, n = total * 10 // 100, 0
    while budget > 0:
        size = min(budget, rng.randint(1 * KIB, 64 * KIB))
        sub = os.path.join(out, "small", f"d{n // 200:03d}")
        os.makedirs(sub, exist_ok=True)
        ext = (".json", ".txt", ".csv")[n % 3]
        with open(os.path.join(sub, f"f{n:06d}{ext}"), "wb") as f:
            f.write(text_bytes(rng, pool, size))
        budget -= size
        n += 1

    # medium: 1-16 MiB, a third each random / text / alternating 256 KiB-1 MiB segments
    budget, n = total * 40 // 100, 0
    while budget > 0:
        size = min(budget, rng.randint(1 * MIB, 16 * MIB))
        kind = ("random", "text", "mixed")[n % 3]
        with open(os.path.join(out, "medium", f"{kind}-{n:04d}.bin"), "wb") as f:
            left = size
            while left > 0:
                seg = min(left, rng.randint(256 * KIB, 1 * MIB))
                rand = kind == "random" or (kind == "mixed" and rng.random() < 0.5)
                f.write(rng.randbytes(seg) if rand else text_bytes(rng, pool, seg))
                left -= seg
        budget -= size
        n += 1

    # models: >= 2 files of <= 512 MiB, alternating F32 / BF16
    budget = total - total * 10 // 100 - total * 40 // 100
    count = max(2, math.ceil(budget / (512 * MIB) - 0.01))  # 0.01: rounding slack
    for i in range(count):
        dtype = ("F32", "BF16")[i % 2]
        write_model(rng, os.path.join(out, "models", f"model-{i + 1:05d}-of-{count:05d}.safetensors"),
                    budget // count, dtype)


if __name__ == "__main__":
    main()
