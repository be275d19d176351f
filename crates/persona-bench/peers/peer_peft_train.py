#!/usr/bin/env python3
"""Peer benchmark: LoRA training throughput of PyTorch + PEFT (fp32, CPU).

Runs exactly the training workload that persona's own LoRA trainer
(crates/persona-finetune) runs in `persona bench`, so the two can be compared
in the same invocation.

Input (--workload FILE, a JSON object written by persona):

  model          absolute path of the GGUF; loaded with transformers
                 (AutoModelForCausalLM.from_pretrained(dir, gguf_file=name,
                 dtype=float32)), i.e. dequantised to fp32
  rank, alpha    LoRA rank r and lora_alpha (scale alpha / r)
  lr             AdamW learning rate (weight_decay 0, default betas/eps)
  batch_size     samples per step
  targets        GGUF projection names, mapped to HF module names:
                   attn_q -> q_proj   attn_k -> k_proj   attn_v -> v_proj
                   attn_output -> o_proj   ffn_gate -> gate_proj
                   ffn_up -> up_proj   ffn_down -> down_proj
  warmup_steps   untimed steps first (>= 0)
  timed_steps    timed steps after them (>= 1)
  threads        torch.set_num_threads (and OMP/MKL_NUM_THREADS)
  samples        [{"ids": [token ids, chat template included], "prompt_len": P}, ...]

Batches are consecutive chunks of batch_size samples in file order (the last
chunk may be shorter), cycling through the samples when there are more steps
than batches. Each batch is right-padded with id 0, attention_mask 0 on the
padding. Labels are the ids at indices >= prompt_len and -100 elsewhere (the
prompt and the padding), so the loss counts only the positions that predict a
response token. The loss is transformers' own causal-LM loss (labels=...
without num_items_in_batch): cross-entropy summed over every counted position
of the batch divided by their number, i.e. the mean over the batch's response
tokens (not a mean of per-sample means).

Base weights are frozen; peft LoraConfig(r, lora_alpha, target_modules,
lora_dropout=0.0, bias="none"); torch.manual_seed(0) before LoRA init (B = 0,
so the first loss is the base model's). A step is forward (with labels),
backward, optimizer.step(), optimizer.zero_grad(); time.perf_counter() is
taken around each whole timed step. Batch tensors are built before timing.

Noise control (same conventions and environment variables as the other peer
scripts): before each timed step the script waits until the whole machine's
CPU busy fraction is below PEER_QUIET_THRESHOLD (default 0.10) for two 1 s
samples, at most PEER_QUIET_MAX_WAIT seconds (default 900; --quiet-max-wait 0
skips the wait), and it records the share of the CPUs that *other* processes
used during each timed step ("noise" in the output; not used to reject steps,
since every step changes the weights).

Output: progress on stderr; on stdout one final JSON line
  {"figures": {"peft_train_tok_s", "peft_train_response_tok_s",
               "peft_train_step_s", "peft_train_first_loss",
               "peft_train_last_loss"},
   "versions": {"torch", "transformers", "peft"},
   "details": {...}, "noise": {...}}
  tok_s           real (non-padding) tokens of the timed batches / timed seconds
  response_tok_s  counted (response) tokens of the timed batches / timed seconds
  step_s          median seconds of one timed step
  first_loss      loss of the very first step (the first warmup step, or the
                  first timed step when warmup_steps is 0)
  last_loss       loss of the last step

Exit status 2 on bad input (missing file, bad JSON, wrong field, unknown
target, token id out of the model's vocabulary, a batch without response
tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.dont_write_bytecode = True
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local file; never reach a hub
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars on stderr (GGUF dequantisation uses tqdm directly)

TARGET_MAP = {
    "attn_q": "q_proj",
    "attn_k": "k_proj",
    "attn_v": "v_proj",
    "attn_output": "o_proj",
    "ffn_gate": "gate_proj",
    "ffn_up": "up_proj",
    "ffn_down": "down_proj",
}
PAD_ID = 0
IGNORE = -100


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fail(msg: str) -> "None":
    print(f"peer_peft_train: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load_workload(path: str) -> dict:
    if not os.path.isfile(path):
        fail(f"workload file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            w = json.load(fh)
    except json.JSONDecodeError as e:
        fail(f"workload {path} is not valid JSON: {e}")
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read workload {path}: {e}")
    if not isinstance(w, dict):
        fail(f"workload {path}: expected a JSON object at the top level")

    def need(key, check, what):
        if key not in w:
            fail(f"workload {path}: missing field `{key}` ({what})")
        if not check(w[key]):
            fail(f"workload {path}: field `{key}` must be {what}, got {json.dumps(w[key])[:80]}")
        return w[key]

    need("model", lambda v: isinstance(v, str) and v, "a path to a .gguf file")
    need("rank", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    need("alpha", lambda v: _is_num(v) and v > 0, "a number > 0")
    need("lr", lambda v: _is_num(v) and v > 0, "a number > 0")
    need("batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    need("targets", lambda v: isinstance(v, list) and v and all(isinstance(t, str) for t in v),
         "a non-empty list of GGUF projection names")
    need("warmup_steps", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    need("timed_steps", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    need("threads", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    need("samples", lambda v: isinstance(v, list) and v, "a non-empty list of {ids, prompt_len}")

    unknown = [t for t in w["targets"] if t not in TARGET_MAP]
    if unknown:
        fail(f"workload {path}: unknown target(s) {', '.join(unknown)}; "
             f"known: {', '.join(TARGET_MAP)}")
    if len(set(w["targets"])) != len(w["targets"]):
        fail(f"workload {path}: `targets` lists a name twice")

    model = w["model"]
    if not os.path.isfile(model):
        fail(f"model file not found: {model} (from the workload's `model` field)")

    for i, s in enumerate(w["samples"]):
        if not isinstance(s, dict):
            fail(f"workload {path}: samples[{i}] must be an object with `ids` and `prompt_len`")
        ids = s.get("ids")
        pl = s.get("prompt_len")
        if not isinstance(ids, list) or len(ids) < 2 or not all(_is_int(t) and t >= 0 for t in ids):
            fail(f"workload {path}: samples[{i}].ids must be a list of >= 2 non-negative integer token ids")
        if not _is_int(pl) or pl < 0 or pl >= len(ids):
            fail(f"workload {path}: samples[{i}].prompt_len must be an integer in [0, {len(ids) - 1}] "
                 f"(len(ids) = {len(ids)}), got {json.dumps(pl)}")
    return w


# ---------------------------------------------------------------------------
# Noise control (same protocol as the other peer scripts)
# ---------------------------------------------------------------------------
def _cpu_times():
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    return sum(vals[:8]), vals[3] + vals[4]  # total without guest columns, idle + iowait


def _busy_fraction(interval: float = 1.0) -> float:
    t0, i0 = _cpu_times()
    time.sleep(interval)
    t1, i1 = _cpu_times()
    dt = t1 - t0
    return 0.0 if dt <= 0 else 1.0 - (i1 - i0) / dt


def wait_quiet(threshold: float, max_wait_s: float) -> dict:
    """Wait until the machine's busy fraction < threshold for two consecutive 1 s samples."""
    if max_wait_s <= 0:
        return {"waited_s": 0.0, "quiet": None}
    t0 = time.monotonic()
    ok = 0
    while True:
        last = _busy_fraction()
        ok = ok + 1 if last < threshold else 0
        if ok >= 2:
            return {"waited_s": round(time.monotonic() - t0, 1), "quiet": True}
        if time.monotonic() - t0 > max_wait_s:
            return {"waited_s": round(time.monotonic() - t0, 1), "quiet": False}


class Probe:
    """Wall time of a block and the CPU share used meanwhile by *other* processes."""

    def __enter__(self):
        self.c0 = _cpu_times()
        self.p0 = time.process_time()
        self.w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        own = time.process_time() - self.p0
        c1 = _cpu_times()
        busy = ((c1[0] - self.c0[0]) - (c1[1] - self.c0[1])) / os.sysconf("SC_CLK_TCK")
        ncpu = os.cpu_count() or 1
        self.other_cpu_frac = max(0.0, (busy - own) / (ncpu * max(self.wall, 1e-9)))
        return False


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def parse_args():
    ap = argparse.ArgumentParser(
        prog="peer_peft_train.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--workload", required=True, metavar="FILE",
                    help="JSON workload written by persona (format above)")
    ap.add_argument("--quiet-threshold", type=float,
                    default=float(os.environ.get("PEER_QUIET_THRESHOLD", "0.10")),
                    help="machine busy fraction below which it counts as quiet "
                         "(default $PEER_QUIET_THRESHOLD or 0.10)")
    ap.add_argument("--quiet-max-wait", type=float,
                    default=float(os.environ.get("PEER_QUIET_MAX_WAIT", "900")),
                    help="most seconds to wait for a quiet machine before each timed step; 0 = do not wait "
                         "(default $PEER_QUIET_MAX_WAIT or 900)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    w = load_workload(args.workload)
    threads = w["threads"]
    # before torch is imported, so OpenMP/MKL start with the requested pool size
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)

    import warnings

    import torch
    import transformers
    import peft
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    targets = [TARGET_MAP[t] for t in w["targets"]]
    d, f = os.path.split(os.path.abspath(w["model"]))
    t0 = time.perf_counter()
    try:
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - report any loader failure plainly
        print(f"peer_peft_train: error: transformers could not load {w['model']}: "
              f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    load_s = time.perf_counter() - t0
    cfg = model.config
    vocab = model.get_input_embeddings().weight.shape[0]
    log(f"model {f}: {cfg.model_type}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {vocab}, "
        f"tied embeddings {bool(getattr(cfg, 'tie_word_embeddings', False))}, attn {cfg._attn_implementation}; "
        f"loaded in {load_s:.1f}s; torch threads {torch.get_num_threads()}")

    for i, s in enumerate(w["samples"]):
        bad = [t for t in s["ids"] if t >= vocab]
        if bad:
            fail(f"samples[{i}] has token id {bad[0]} >= the model's vocabulary size {vocab}")

    # ---- LoRA ----
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    lcfg = LoraConfig(r=w["rank"], lora_alpha=w["alpha"], target_modules=targets,
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, lcfg)
    except ValueError as e:
        fail(f"peft could not apply LoRA to {targets}: {e}")
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    n_wrapped = sum(1 for _, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer))
    log(f"LoRA r={w['rank']} alpha={w['alpha']} on {','.join(targets)}: {n_wrapped} modules, "
        f"{n_train} trainable of {n_all} parameters")
    opt = torch.optim.AdamW(trainable, lr=w["lr"], weight_decay=0.0)

    # ---- batches (built up front, outside the timed region) ----
    samples, bs = w["samples"], w["batch_size"]
    chunks = [samples[i:i + bs] for i in range(0, len(samples), bs)]
    n_steps = w["warmup_steps"] + w["timed_steps"]
    built = {}

    def batch(step: int):
        k = step % len(chunks)
        if k not in built:
            chunk = chunks[k]
            L = max(len(s["ids"]) for s in chunk)
            ids = torch.full((len(chunk), L), PAD_ID, dtype=torch.long)
            mask = torch.zeros((len(chunk), L), dtype=torch.long)
            labels = torch.full((len(chunk), L), IGNORE, dtype=torch.long)
            for r, s in enumerate(chunk):
                n, pl = len(s["ids"]), s["prompt_len"]
                ids[r, :n] = torch.tensor(s["ids"], dtype=torch.long)
                mask[r, :n] = 1
                labels[r, pl:n] = ids[r, pl:n]
            real = int(mask.sum())
            counted = int((labels[:, 1:] != IGNORE).sum())  # index 0 is never predicted
            if counted == 0:
                fail(f"batch {k} (samples {k * bs}..{k * bs + len(chunk) - 1}) has no response tokens "
                     f"(every prompt_len covers the whole sample)")
            built[k] = (ids, mask, labels, real, counted)
        return built[k]

    for s in range(min(n_steps, len(chunks))):
        batch(s)

    def step(s: int) -> float:
        ids, mask, labels, _, _ = batch(s)
        out = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    losses = []
    for s in range(w["warmup_steps"]):
        t = time.perf_counter()
        loss = float(step(s))
        losses.append(loss)
        log(f"warmup step {s + 1}/{w['warmup_steps']}: loss {loss:.4f}, {time.perf_counter() - t:.2f}s")

    times, others, waits = [], [], []
    real_tok = counted_tok = 0
    for j in range(w["timed_steps"]):
        s = w["warmup_steps"] + j
        q = wait_quiet(args.quiet_threshold, args.quiet_max_wait)
        waits.append(q["waited_s"])
        if q["quiet"] is False:
            log(f"  machine not quiet after {q['waited_s']}s; timing anyway")
        with Probe() as p:
            t = time.perf_counter()
            loss_t = step(s)
            dt = time.perf_counter() - t
        loss = float(loss_t)
        losses.append(loss)
        times.append(dt)
        others.append(round(p.other_cpu_frac, 3))
        _, _, _, real, counted = batch(s)
        real_tok += real
        counted_tok += counted
        log(f"timed step {j + 1}/{w['timed_steps']}: loss {loss:.4f}, {dt:.3f}s, {real / dt:.1f} tok/s, "
            f"others {p.other_cpu_frac:.0%}, waited {q['waited_s']}s")

    total = sum(times)
    figures = {
        "peft_train_tok_s": real_tok / total,
        "peft_train_response_tok_s": counted_tok / total,
        "peft_train_step_s": statistics.median(times),
        "peft_train_first_loss": losses[0],
        "peft_train_last_loss": losses[-1],
    }
    result = {
        "figures": figures,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "details": {
            "model": os.path.basename(w["model"]),
            "model_load_s": round(load_s, 3),
            "threads": torch.get_num_threads(),
            "attn_implementation": cfg._attn_implementation,
            "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
            "lora_modules": n_wrapped,
            "trainable_params": n_train,
            "timed_step_s": times,
            "timed_real_tokens": real_tok,
            "timed_response_tokens": counted_tok,
            "losses": losses,
        },
        "noise": {"other_cpu_frac_per_step": others, "waited_s_per_step": waits,
                  "quiet_threshold": args.quiet_threshold, "quiet_max_wait_s": args.quiet_max_wait},
    }
    log(f"PEFT train: {figures['peft_train_tok_s']:.1f} tok/s, {figures['peft_train_response_tok_s']:.1f} "
        f"response tok/s, median step {figures['peft_train_step_s']:.3f}s, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
