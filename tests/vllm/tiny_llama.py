"""Write a tiny, randomly initialised Llama that vLLM can serve, with no download.

Run with the vLLM venv's Python (it needs torch, transformers and tokenizers):
    .venv-vllm/bin/python tests/vllm/tiny_llama.py OUT_DIR

The tokenizer is byte-level BPE written here, not trained: the 256 byte tokens and no merges, plus
`<s>`, `</s>` and `<pad>`, with a plain chat template. The model has 2 layers, hidden 128 and
2 attention heads (head_dim 64: vLLM's CPU attention kernels need head_dim >= 64), random weights
from a fixed seed, in float32. Its text is noise; its timing is a real vLLM's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
SPECIALS = ("<s>", "</s>", "<pad>")
MAX_MODEL_LEN = 4096


def write_tokenizer(out: Path) -> int:
    """Write tokenizer.json and tokenizer_config.json; return the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for name in SPECIALS:
        vocab[name] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "model_max_length": MAX_MODEL_LEN,
        "chat_template": CHAT_TEMPLATE,
        "add_bos_token": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return len(vocab)


def write_model(out: Path, vocab_size: int) -> None:
    """Write config.json and model.safetensors of a random 2-layer Llama."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=MAX_MODEL_LEN,
        bos_token_id=vocab_size - 3,
        eos_token_id=vocab_size - 2,
        pad_token_id=vocab_size - 1,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)


def main(argv: list[str]) -> int:
    """Write the model to argv[0]; a usage line and exit status 2 without it."""
    if len(argv) != 1:
        print("usage: python tests/vllm/tiny_llama.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    write_model(out, write_tokenizer(out))
    print(f"tiny Llama written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
