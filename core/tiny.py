"""The built-in tiny model: a small Llama chat model and tokenizer shipped with the studio, nothing downloaded.

The tokenizer is a byte-level BPE (4,096 tokens, every Chinese character of its corpus a single
token, ChatML specials `<|im_start|>` / `<|im_end|>` and a chat template) trained on the project's
own zh/en instruction set in assets/tiny_chat/ (general.jsonl, self.jsonl).
The model (~2.4M parameters: 4 layers, hidden 192, tied embeddings) was pretrained on that set by
core/tiny_train.py, so before any fine-tuning it already answers open-domain questions in short
fluent sentences and calls itself a generic AI assistant. Its weights ship in
assets/tiny_chat/base/ (fp16, under 5 MB); building the model folder copies them to fp32 in a
second. Saved as an ordinary Hugging Face folder, so training, chat, merge and publish load it like
any other model.

    python -m core.tiny workspace/models/tiny      # or: python -m studio tiny
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TINY_NAME = "tiny"
# Bumped whenever the shipped base changes, so a workspace's older tiny model is rebuilt.
TINY_VERSION = "chat-2"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "tiny_chat"
BASE_DIR = ASSET_DIR / "base"  # tokenizer.json + model.safetensors (fp16), written by core/tiny_train.py
SHAPE = {"hidden": 192, "layers": 4, "heads": 6}  # the shipped base's shape

# ChatML, the template Qwen and InternLM2 use; the default system prompt is left out on purpose so
# that an identity learned in training is not steered by a prompt the user never wrote.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def instruction_pairs(which: str = "all") -> list[tuple[str, str]]:
    """(question, answer) pairs of the project's own instruction set in assets/tiny_chat.

    which: "general" (open-domain zh + en, general.jsonl), "self" (generic who-are-you answers,
    never a name, self.jsonl), "zh" / "en" (general, one language) or "all" (general + self).
    """
    files = {"self": ["self.jsonl"], "all": ["general.jsonl", "self.jsonl"]}.get(which, ["general.jsonl"])
    pairs = []
    for f in files:
        for ln in (ASSET_DIR / f).read_text(encoding="utf-8").splitlines():
            if ln.strip():
                m = json.loads(ln)["messages"]
                pairs.append((m[0]["content"], m[1]["content"]))
    if which in ("zh", "en"):
        pairs = [(q, a) for q, a in pairs if any("\u4e00" <= c <= "\u9fff" for c in q) == (which == "zh")]
    elif which not in ("general", "self", "all"):
        raise ValueError(f"which must be general, self, zh, en or all, got {which!r}")
    return pairs


def _tokenizer_corpus() -> list[str]:
    from core.data.identity import question_bank

    texts = [t for q, a in instruction_pairs() for t in (q, a)]
    texts += question_bank("zh") + question_bank("en")
    # Every Chinese character of the corpus once more on its own, so each becomes a single token
    # rather than losing the vocabulary to English word pieces.
    chars = sorted({c for t in texts for c in t if "\u3400" <= c <= "\u9fff"})
    return texts * 2 + chars * 3


def train_tokenizer(vocab_size: int = 4096):
    """Train the byte-level BPE on the instruction set (deterministic); a `tokenizers.Tokenizer`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    # A CJK character is its own pre-token: merges build whole characters, never cross-character
    # pieces that would make one Chinese token mean different things in different words.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[\u3400-\u9fff\uf900-\ufaff]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return tok


def build_tokenizer(tokenizer_json: str | os.PathLike | None = None):
    """The tiny tokenizer as a PreTrainedTokenizerFast: the shipped one, or one at `tokenizer_json`."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    path = Path(tokenizer_json) if tokenizer_json else BASE_DIR / "tokenizer.json"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(path)),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def build_model_config(vocab_size: int, *, hidden: int = SHAPE["hidden"], layers: int = SHAPE["layers"],
                       heads: int = SHAPE["heads"]):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 3),
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,  # half the parameters of the vocabulary: the shipped weights stay under 5 MB
        torch_dtype="float32",
    )


def _is_current(out: Path) -> bool:
    try:
        cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return cfg.get("studio_tiny_version") == TINY_VERSION and (out / "tokenizer.json").is_file()


def _is_older_tiny(out: Path) -> bool:
    # The random 2-layer tiny model of earlier versions (no output marker): replaced, not refused.
    try:
        cfg = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (cfg.get("model_type") == "llama" and cfg.get("vocab_size") == 1024 and cfg.get("hidden_size") == 128
            and "studio_tiny_version" not in cfg and (out / "tokenizer.json").is_file())


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, random_init: bool = False,
                     force: bool = False, overwrite: bool = False) -> Path:
    """Write the tiny tokenizer + the shipped chat model to `out_dir` (skipped if already there).

    random_init: an untrained model of the same shape (seeded), for tests that need one.

    `out_dir` must be new, empty or an earlier tiny model (else `overwrite`): core.fsio.output_dir.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from core.fsio import check_output_dir, output_dir

    out = Path(out_dir)
    if not force and _is_current(out):
        return out
    overwrite = overwrite or _is_older_tiny(out)
    check_output_dir(out, kind="tiny", overwrite=overwrite)  # refused before anything is built
    tok = build_tokenizer()
    cfg = build_model_config(len(tok))
    cfg.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    cfg.pad_token_id = tok.pad_token_id
    cfg.bos_token_id = None
    cfg.studio_tiny_version = TINY_VERSION
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    if not random_init:
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(BASE_DIR / "model.safetensors")).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:  # lm_head is tied to embed_tokens
            raise RuntimeError(f"{BASE_DIR / 'model.safetensors'} does not fit the tiny shape: "
                               f"missing {missing}, unexpected {unexpected}")
        model.tie_weights()
    model.generation_config = GenerationConfig(
        eos_token_id=[cfg.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tok.pad_token_id,
        do_sample=False,
    )
    with output_dir(out, kind="tiny", overwrite=overwrite) as tmp:  # appears whole or not at all
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out


def default_tiny_dir() -> Path:
    from core.workspace import workspace_root

    return workspace_root() / "models" / TINY_NAME


def ensure_tiny() -> Path:
    """The tiny model's folder in the workspace, built on first use (one builder at a time)."""
    import fcntl

    target = default_tiny_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several ranks or pages may ask at once
        return build_tiny_model(target)


TINY_LLAVA_NAME = "tiny-llava"


def build_tiny_llava(out_dir: str | os.PathLike, *, image_size: int = 64, patch_size: int = 16, seed: int = 0,
                     force: bool = False) -> Path:
    """A tiny LLaVA (tiny CLIP vision tower + the tiny chat LM + a local image processor), no download.

    64 px images in 16 px patches give 16 image tokens, so CPU training takes seconds. Built the
    same way as a real one: core.llava.build_llava_model(LLM folder, CLIP folder, out_dir).
    """
    import tempfile

    import torch
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    from core.llava import build_llava_model

    out = Path(out_dir)
    if not force and (out / "config.json").is_file() and (out / "processor_config.json").is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="tiny-llava-") as tmp:
        lm = build_tiny_model(Path(tmp) / "lm", seed=seed)
        vcfg = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                image_size=image_size, patch_size=patch_size, projection_dim=64)
        torch.manual_seed(seed)
        clip = Path(tmp) / "clip"
        CLIPVisionModel(vcfg).save_pretrained(clip)
        CLIPImageProcessorPil(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size}).save_pretrained(clip)
        return build_llava_model(lm, clip, out, seed=seed, force=True)


def ensure_tiny_llava() -> Path:
    """The tiny LLaVA's folder in the workspace, built on first use."""
    from core.workspace import workspace_root

    return build_tiny_llava(workspace_root() / "models" / TINY_LLAVA_NAME)


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(default_tiny_dir())
    print(build_tiny_model(target, force=True))
