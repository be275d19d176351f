"""Greedy generation in llama.cpp (llama-cpp-python), optionally steered by a GGUF control
vector, for persona's peer tests.

    python llamacpp_greedy.py REQUEST.json

REQUEST: {"model": GGUF path, "control_vector": GGUF path or null, "n_tokens": N,
          "threads": T, "prompts": [[token ids], ...]}
Prints one JSON object: {"control_vector": {...} or null, "outputs": [{"ids": [...],
"top5": [[5 ids], ...], "top5_logits": [[5 logits], ...]}, ...]} (per step, best first).

The control vector is read with gguf (llama.cpp's own Python reader) and laid out the way
llama.cpp's loader does it: tensor direction.N goes to slot N - 1 of a buffer that starts at
layer 1; llama.cpp adds slot N - 1 to the output of block N, at every position. Greedy =
argmax of the raw last-position logits (lowest id on ties), EOS not a stop condition.
"""

import ctypes
import json
import sys

import gguf
import llama_cpp
import numpy as np
from llama_cpp import Llama


def read_control_vector(path):
    reader = gguf.GGUFReader(path)
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, (str, int, float)):
            meta[name] = value
    directions = {}
    for t in reader.tensors:
        prefix, _, index = t.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            sys.exit(f"{path}: tensor {t.name} is not direction.N with N >= 1")
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            sys.exit(f"{path}: tensor {t.name} is {t.tensor_type.name}, llama.cpp needs F32")
        directions[int(index)] = np.array(t.data, dtype=np.float32).reshape(-1)
    return meta, directions


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    llm = Llama(
        model_path=req["model"],
        n_ctx=2048,
        n_batch=512,
        n_ubatch=512,
        n_threads=req.get("threads", 1),
        n_threads_batch=req.get("threads", 1),
        flash_attn=False,
        logits_all=False,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    n_embd = llm.n_embd()
    n_layer = llama_cpp.llama_model_n_layer(llm.model)
    cv_info = None
    if req.get("control_vector"):
        meta, directions = read_control_vector(req["control_vector"])
        buf = np.zeros(n_embd * n_layer, dtype=np.float32)
        for n, v in directions.items():
            if v.size != n_embd:
                sys.exit(f"direction.{n} has {v.size} values, the model's width is {n_embd}")
            buf[n_embd * (n - 1): n_embd * n] += v
        # "shift" moves every direction by that many blocks: a negative control for tests.
        shift = int(req.get("shift", 0))
        if shift:
            directions = {n + shift: v for n, v in directions.items()}
            buf[:] = 0
            for n, v in directions.items():
                buf[n_embd * (n - 1): n_embd * n] += v
        lo, hi = min(directions), max(directions)
        rc = llama_cpp.llama_set_adapter_cvec(
            llm._ctx.ctx,
            buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            buf.size,
            n_embd,
            lo,
            hi,
        )
        if rc != 0:
            sys.exit(f"llama_set_adapter_cvec failed ({rc})")
        cv_info = {
            "metadata": meta,
            "layers": sorted(directions),
            "norms": {str(n): float(np.linalg.norm(v)) for n, v in directions.items()},
            "applied": [lo, hi],
        }
    outputs = []
    for prompt in req["prompts"]:
        llm.reset()
        llm.eval(prompt)
        ids, top5, top5_logits = [], [], []
        for _ in range(req["n_tokens"]):
            ptr = llm._ctx.get_logits_ith(-1)
            logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()
            # argmax first (lowest id on ties), then the next four by logit
            first = int(np.argmax(logits))
            order = [first] + [int(i) for i in np.argsort(-logits, kind="stable") if i != first][:4]
            ids.append(first)
            top5.append(order)
            top5_logits.append([float(logits[i]) for i in order])
            llm.eval([first])
        outputs.append({"ids": ids, "top5": top5, "top5_logits": top5_logits})
    json.dump({"control_vector": cv_info, "outputs": outputs}, sys.stdout)


if __name__ == "__main__":
    main()
