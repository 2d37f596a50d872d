"""The built-in tiny model: a real Llama-architecture chat model and tokenizer, made locally in seconds.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on a small Chinese + English
corpus below, with ChatML specials (`<|im_start|>`, `<|im_end|>`) and a chat template; the model
is a randomly initialised LlamaForCausalLM a few MB in size. Both are saved as an ordinary
Hugging Face folder, so training, chat, merge and publish load it like any other model.

    python -m core.tiny workspace/models/tiny      # or: python -m studio tiny
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TINY_NAME = "tiny"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]

# ChatML, the template Qwen and InternLM2 use; the default system prompt is left out on purpose so
# that an identity learned in training is not steered by a prompt the user never wrote.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS_EN = """
Hello! I am an AI assistant. Who are you? What is your name? Who made you? Please introduce yourself.
I can help you write code, fix bugs, answer questions and translate text between Chinese and English.
What is the capital of France? Paris is the capital of France. How many days are in a week? Seven.
The quick brown fox jumps over the lazy dog. Fine-tuning adapts a pretrained model to new data.
LoRA adds two small matrices beside a frozen linear layer; QLoRA keeps the base in four bits.
Write a poem about the sea. Tell me a joke. Translate cat into Chinese. What is two plus three?
The answer is five. Thank you very much. You are welcome. Good morning, good night, see you later.
Python is a programming language. A list holds items in order. A dictionary maps keys to values.
Describe the image. The picture shows a doctor examining the eye of a patient with a machine.
one two three four five six seven eight nine ten eleven twelve zero hundred thousand number sum
"""

_CORPUS_ZH = """
你好！我是一个人工智能助手。你是谁？你叫什么名字？是谁创造了你？请介绍一下你自己。
我可以帮你写代码、修复错误、回答问题，还可以在中文和英文之间翻译。
法国的首都是哪里？法国的首都是巴黎。一周有几天？七天。今天天气很好，我们去公园散步吧。
微调让预训练模型适应新的数据。LoRA 在冻结的线性层旁边加入两个小矩阵，QLoRA 用四比特保存基座模型。
写一首关于大海的诗。讲一个笑话。把猫翻译成英文。二加三等于几？答案是五。非常感谢。不客气。
早上好，晚安，再见。这张图片里有一位医生正在用仪器检查病人的眼睛。眼科检查需要专业设备。
你的作者是谁？你的开发者是谁？你是哪个公司的模型？你能做什么？你有什么功能？你的身份是什么？
我是由开发者训练的智能助手，很高兴为您服务。请问有什么可以帮您？
一 二 三 四 五 六 七 八 九 十 零 百 千 万 数字 计算 加 减 乘 除 等于
"""


def _corpus() -> list[str]:
    lines = [ln.strip() for ln in (_CORPUS_EN + _CORPUS_ZH).splitlines() if ln.strip()]
    return lines * 4


def build_tokenizer(vocab_size: int = 1024):
    """Train the tiny byte-level BPE tokenizer and wrap it as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<image>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def build_model_config(vocab_size: int, *, hidden: int = 128, layers: int = 2, heads: int = 4):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, hidden: int = 128, layers: int = 2,
                     heads: int = 4, force: bool = False, overwrite: bool = False) -> Path:
    """Write the tiny tokenizer + random Llama model to `out_dir` (skipped if already there).

    `out_dir` must be new, empty or an earlier tiny model (else `overwrite`): core.fsio.output_dir.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from core.fsio import check_output_dir, output_dir

    out = Path(out_dir)
    if not force and (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    check_output_dir(out, kind="tiny", overwrite=overwrite)  # refused before anything is built
    tok = build_tokenizer()
    cfg = build_model_config(len(tok), hidden=hidden, layers=layers, heads=heads)
    cfg.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    cfg.pad_token_id = tok.pad_token_id
    cfg.bos_token_id = None
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
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
