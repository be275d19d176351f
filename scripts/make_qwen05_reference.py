"""llama.cpp's reference for Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), which persona's parity tests
(crates/persona-engine/tests/qwen.rs, crates/persona-tokenizer/tests/qwen.rs) compare against:
token ids of 3 raw strings, and for 3 chat prompts the rendered prompt, its ids and 32 greedy
tokens. Same prompts, strings and policy as the 1.5B's ../shared/reference file.

To rerun it (it rewrites crates/persona-testkit/data/greedy_llamacpp_qwen2.5-0.5b.json):

    ./target/release/persona setup --model qwen2.5-0.5b
    bash scripts/setup_test_peers.sh
    OMP_NUM_THREADS=1 "${PERSONA_TEST_PEERS_VENV:-$HOME/.cache/persona/test-peers-venv}/bin/python" \
        scripts/make_qwen05_reference.py [MODEL.gguf] [--out FILE]

MODEL.gguf defaults to the file `persona setup` put in the cache ($PERSONA_HOME, else
$XDG_CACHE_HOME/persona, else ~/.cache/persona). Its sha256 must be the one pinned in
crates/persona-models/src/lib.rs. Policy: the GGUF's chat template rendered with
jinja2(trim_blocks, lstrip_blocks), add_generation_prompt=True; tokenize(add_bos=False,
special=True); greedy = argmax of the raw last-position logits (lowest id on ties), 32 tokens, no
penalties, EOS not a stop condition; 1 thread, flash attention off. `text` is the greedy ids
detokenized without special tokens.
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

import jinja2
import llama_cpp
import numpy as np
from llama_cpp import Llama

FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
N_TOKENS = 32
THREADS = 1
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates/persona-testkit/data/greedy_llamacpp_qwen2.5-0.5b.json"

PROMPTS = {
    "capital": [
        {"role": "user", "content": "What is the capital of France? Answer in one sentence."}
    ],
    "persona": [
        {"role": "system", "content": "You are a grumpy old lighthouse keeper."},
        {"role": "user", "content": "What do you think about modern technology?"},
    ],
    "advice": [
        {"role": "user", "content": "Give me three short tips for learning a new language."}
    ],
}

STRINGS = [
    "Hello, world! How are you?",
    "In 2024, 3.14159 and 1,000,000 \u2014 na\u00efve caf\u00e9 \u6771\u4eac \U0001f980",
    'def f(x):\n    return {"a": x * 2}  # comment',
]


def cached_model() -> Path:
    home = os.environ.get("PERSONA_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = Path(xdg) / "persona" if xdg and os.path.isabs(xdg) else Path.home() / ".cache/persona"
    return Path(home) / "models" / FILE_NAME


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    model = args.model or cached_model()
    if not model.is_file():
        raise SystemExit(f"{model} is missing: run `persona setup --model qwen2.5-0.5b` first")
    sha = sha256_of(model)
    if sha != SHA256:
        raise SystemExit(f"{model} has sha256 {sha}, not the pinned {SHA256}")

    llm = Llama(
        model_path=str(model),
        n_ctx=2048,
        n_batch=512,
        n_ubatch=512,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        flash_attn=False,
        logits_all=False,
        verbose=False,
    )
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(
        llm.metadata["tokenizer.chat_template"]
    )

    def token_text(token):
        # The template's bos_token / eos_token, as llama.cpp and HF set them up ("" if none).
        return llm.detokenize([token], special=True).decode("utf-8") if token >= 0 else ""

    def tokenize(text):
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def greedy(prompt_ids):
        llm.reset()
        llm.eval(prompt_ids)
        out = []
        for _ in range(N_TOKENS):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            out.append(int(np.argmax(logits)))
            llm.eval([out[-1]])
        return out

    prompts = {}
    for name, messages in PROMPTS.items():
        text = template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=token_text(llm.token_bos()),
            eos_token=token_text(llm.token_eos()),
        )
        prompt_ids = tokenize(text)
        greedy_ids = greedy(prompt_ids)
        prompts[name] = {
            "messages": messages,
            "prompt_text": text,
            "prompt_ids": prompt_ids,
            "greedy_ids": greedy_ids,
            "text": llm.detokenize(greedy_ids, special=False).decode("utf-8"),
        }
        print(f"{name}: {len(prompt_ids)} prompt tokens -> {prompts[name]['text']!r}")

    reference = {
        "model_file": FILE_NAME,
        "sha256": SHA256,
        "tool": (
            f"llama-cpp-python {llama_cpp.__version__}, {THREADS} thread, CPU, flash_attn off "
            "(scripts/make_qwen05_reference.py); prompt = chat template rendered with "
            "jinja2(trim_blocks, lstrip_blocks), add_generation_prompt=True; "
            "tokenize(add_bos=False, special=True); greedy = argmax of raw logits, "
            f"{N_TOKENS} tokens, no penalties, EOS not a stop condition"
        ),
        "prompts": prompts,
        "tokenize": [{"text": s, "ids": tokenize(s)} for s in STRINGS],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
