"""A tiny Llama model directory for the lab and the GPU smoke test, made here, never downloaded.

Why this exists: SGLang resolves its arguments from the model's config.json, and a server started
with `--load-format dummy` needs a config and a tokenizer but no weights. A 2-layer Llama with a
word-level tokenizer is enough for both, costs a few kilobytes, and needs no hub access.

    python3 tools/tiny_model.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIAL = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
# A small vocabulary of plain words; the model's answers are noise (dummy weights) but tokenize.
WORDS = ("the a an is are was be to of and in on at for with what which who how why "
         "hello hi yes no one two three four five six seven eight nine ten answer question "
         "say write tell me you it this that capital city france paris model cluster node "
         "gpu test ok . , ? !").split()

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def vocab() -> dict[str, int]:
    words = SPECIAL + [w for w in WORDS if w not in SPECIAL]
    return {w: i for i, w in enumerate(words)}


def config(vocab_size: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "vocab_size": vocab_size,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def tokenizer(words: dict[str, int]) -> dict:
    """A `tokenizers` JSON: word level, split on whitespace and punctuation."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": words[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in SPECIAL
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "<unk>"},
    }


def files() -> dict[str, dict]:
    words = vocab()
    return {
        "config.json": config(len(words)),
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2, "max_new_tokens": 16},
        "tokenizer.json": tokenizer(words),
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
            "model_max_length": 2048, "chat_template": CHAT_TEMPLATE,
        },
        "special_tokens_map.json": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    }


def write(directory: Path) -> bool:
    """Write the model; True when a file changed (so callers and Ansible stay idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, content in files().items():
        text = json.dumps(content, indent=2, sort_keys=True) + "\n"
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed = True
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print("written" if write(Path(sys.argv[1])) else "unchanged")
