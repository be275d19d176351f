"""Writes template_goldens.json: chat templates rendered by jinja2 the way HF transformers
renders them (transformers.utils.chat_template_utils._compile_jinja_template), for
tests/templates.rs. Needs only jinja2 (used: 3.1.6). Run from this folder:

    python3 make_template_goldens.py

`strftime_now` returns "26 Jul 2024" here; the Rust test puts that date in place of today's.
"""

import json
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return "26 Jul 2024"


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

here = Path(__file__).parent
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA32 = (here / "llama3.2.jinja").read_text()
QWEN25 = (here / "qwen2.5.jinja").read_text()
# Python-isms that chat templates use, and the block/whitespace rules of trim/lstrip_blocks.
PYCOMPAT = """{%- set ns = namespace(n=0) %}
{% for m in messages %}
  {% if m.content.strip().startswith('#') %}
    {% set ns.n = ns.n + 1 %}
  {% endif %}
    [{{ loop.index }}/{{ messages|length }}] {{ m.role.upper() }}: {{ m.content.strip().replace('  ', ' ').split(' ')|join('_') }}{{ '!' if m.content.endswith('?') }}
{% endfor %}
{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}
headers={{ ns.n }} last={{ messages[-1].role }} title={{ 'hello world'.title() }} lstrip={{ '  x '.lstrip() }}|
{% if add_generation_prompt %}GEN{% endif %}
"""
TOJSON = """{% set x = {"b": 1, "a": [1.5, "x<y>&'\\"", none, true, false, 0.00001, 100], "ü": "é\\n\\t"} %}
{{ x | tojson }}
{{ x | tojson(indent=2) }}
{{ x | tojson(indent=4, sort_keys=true) }}
{{ x | tojson(ensure_ascii=true) }}
{{ x | tojson(separators=(",", ":")) }}
{{ [] | tojson(indent=2) }}{{ {} | tojson }}{{ messages | tojson }}
"""

chat = [
    {"role": "system", "content": "  You are a pirate.  "},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Arr, Paris."},
    {"role": "user", "content": "# And  of Spain?"},
]
no_system = [{"role": "user", "content": "Hi there"}]
tool_turns = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "Let me check."},
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "tool", "content": "sunny"},
    {"role": "system", "content": "Late system note."},
]

cases = [
    ("llama3", LLAMA3, chat, True),
    ("llama3_no_generation_prompt", LLAMA3, no_system, False),
    ("llama3.2", LLAMA32, chat, True),
    ("llama3.2_no_system", LLAMA32, no_system, True),
    ("llama3.2_tool_message", LLAMA32, tool_turns, False),
    ("qwen2.5", QWEN25, chat, True),
    ("qwen2.5_no_system", QWEN25, no_system, False),
    ("qwen2.5_tool_messages", QWEN25, tool_turns, True),
    ("pycompat", PYCOMPAT, chat, True),
    ("tojson", TOJSON, no_system, False),
    ("trailing_newline", "{{ bos_token }}|{{ eos_token }}\n", no_system, False),
]
out = []
for name, source, messages, add_generation_prompt in cases:
    bos, eos = ("<|begin_of_text|>", "<|eot_id|>") if name.startswith("llama") else ("<s>", "</s>")
    expected = env.from_string(source).render(
        messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt,
        bos_token=bos, eos_token=eos,
    )
    out.append(dict(name=name, template=source, bos_token=bos, eos_token=eos, messages=messages,
                    add_generation_prompt=add_generation_prompt, expected=expected))
(here / "template_goldens.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {len(out)} cases")
