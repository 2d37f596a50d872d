"""The one typed run config: every setting of a training run, documented once (en + zh).

Field names follow XTuner's PART 1 settings where XTuner has one, so a user who read the
tutorial recognises them. `load_config(path)` validates at once and names the field that is
wrong; `save_config` writes YAML atomically. Try it:

    python -c "from core.config import load_config; print(load_config('assets/recipes/tiny_chat_lora_identity_e3.yaml'))"
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import StudioError
from core.fsio import atomic_write_text


class ConfigError(StudioError, ValueError):
    """A config problem; `field` names the setting, the message says what is allowed."""

    def __init__(self, field_name: str, message: str, source: str | None = None):
        self.field = field_name
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field_name}: {message}")
        self.message = message


def _f(default: Any, en: str, zh: str, section: str, choices: tuple | None = None, **kw) -> Any:
    meta = {"help": en, "zh": zh, "section": section}
    if choices:
        meta["choices"] = choices
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


TEMPLATES = ("auto", "internlm2_chat", "qwen_chat", "llama3_chat", "default")
METHODS = ("lora", "qlora", "full")
DEEPSPEED = ("none", "zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")


@dataclass
class RunConfig:
    """A training run. Sections: model, data, method, schedule, saving, evaluation, system."""

    # ---- model
    pretrained_model_name_or_path: str = _f(
        "", "Base model: a local folder, a Hugging Face id or a ModelScope id ('tiny' = the built-in tiny model).",
        "基座模型：本地目录、Hugging Face 或 ModelScope 模型 ID（tiny 表示内置小模型）。", "model")
    model_hub: str = _f("auto", "Where a model id is downloaded from.", "模型 ID 从哪个平台下载。", "model",
                        ("auto", "hf", "modelscope"))
    trust_remote_code: bool = _f(False, "Allow the model folder's own Python code (InternLM2 ships some).",
                                 "允许加载模型目录自带的 Python 代码（InternLM2 需要）。", "model")
    torch_dtype: str = _f("auto", "Weights dtype for training: auto picks bf16 on a GPU that has it, else fp32.",
                          "训练时的权重精度：auto 在支持的 GPU 上用 bf16，否则 fp32。", "model",
                          ("auto", "bfloat16", "float16", "float32"))
    model_type: str = _f("causal_lm", "causal_lm for chat LLMs; llava for image-text models.",
                         "causal_lm 为对话大模型；llava 为图文多模态模型。", "model", ("causal_lm", "llava"))
    visual_encoder_name_or_path: str = _f(
        "", "LLaVA only: the CLIP vision tower, when building a LLaVA model from an LLM.",
        "仅 LLaVA：视觉编码器（CLIP），从纯文本模型构建 LLaVA 时使用。", "model")
    llava_stage: str = _f("finetune", "LLaVA only: pretrain trains the projector; finetune adds LoRA on the LLM.",
                          "仅 LLaVA：pretrain 只训练投影层；finetune 再加上 LLM 的 LoRA。", "model",
                          ("pretrain", "finetune"))

    # ---- data
    data_path: str = _f("", "Training data file (JSON or JSONL in any supported format).",
                        "训练数据文件（任意支持格式的 JSON 或 JSONL）。", "data")
    data_format: str = _f("auto", "Data format; auto detects it from the first record.",
                          "数据格式；auto 根据第一条记录自动识别。", "data")
    data_mapping: dict = _f({}, "Field mapping for custom files, e.g. {input: toy_input, output: toy_output}.",
                            "自定义字段映射，例如 {input: toy_input, output: toy_output}。", "data")
    image_folder: str = _f("", "LLaVA only: folder that relative image paths are resolved against.",
                           "仅 LLaVA：图片相对路径的根目录。", "data")
    prompt_template: str = _f("auto", "Chat template: auto uses the tokenizer's own, else the named XTuner one.",
                              "对话模板：auto 使用分词器自带模板，否则使用指定的 XTuner 模板。", "data", TEMPLATES)
    SYSTEM: str = _f("", "System prompt added to samples that have none.",
                     "系统提示词，加到没有系统提示的样本上。", "data")
    max_length: int = _f(2048, "Longest sample in tokens; longer ones are truncated.",
                         "单条样本最大 token 数，超出部分截断。", "data")
    pack_to_max_length: bool = _f(True, "Pack short samples into max_length rows (they never attend to each other).",
                                  "把短样本拼接到 max_length（样本之间互不可见），提高 GPU 利用率。", "data")
    shuffle: bool = _f(True, "Shuffle samples each epoch.", "每个 epoch 打乱样本顺序。", "data")

    # ---- method
    method: str = _f("lora", "lora (16-bit base), qlora (4-bit nf4 base), or full fine-tuning.",
                     "lora（16 位基座）、qlora（4 位 nf4 基座）或全参数微调。", "method", METHODS)
    lora_r: int = _f(64, "LoRA rank.", "LoRA 秩。", "method")
    lora_alpha: int = _f(16, "LoRA alpha (scale = alpha / r).", "LoRA alpha（缩放 = alpha / r）。", "method")
    lora_dropout: float = _f(0.1, "Dropout on the LoRA branch.", "LoRA 分支的 dropout。", "method")
    lora_target_modules: list = _f(["all-linear"], "Layers that get LoRA; all-linear = every linear layer but the head.",
                                   "加 LoRA 的层；all-linear 表示除输出头外所有线性层。", "method")
    lora_modules_to_save: list = _f([], "Extra modules trained in full and saved with the adapter (e.g. embed_tokens).",
                                    "额外全量训练并随 adapter 保存的模块（如 embed_tokens）。", "method")

    # ---- schedule
    batch_size: int = _f(1, "Samples (or packed rows) per device per step.", "每张卡每步的样本（或拼接行）数。", "schedule")
    micro_batch_size: int = _f(0, "Rows per forward pass; 0 = auto: batch_size x accumulative_counts rows per optimizer "
                               "step in as few passes as fit in GPU memory (same result, faster).",
                               "每次前向的行数；0 = 自动：每个优化步 batch_size × accumulative_counts 行，"
                               "在显存允许时合并成更少的前向（结果相同，更快）。", "schedule")
    accumulative_counts: int = _f(16, "Gradient accumulation: backward passes per optimizer step.",
                                  "梯度累积：每多少次反向传播更新一次参数。", "schedule")
    max_epochs: float = _f(3, "Passes over the data.", "训练轮数。", "schedule")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: use max_epochs).",
                        "最多训练多少步（-1 表示按 max_epochs）。", "schedule")
    lr: float = _f(2e-4, "Peak learning rate.", "峰值学习率。", "schedule")
    weight_decay: float = _f(0.0, "AdamW weight decay.", "AdamW 权重衰减。", "schedule")
    max_norm: float = _f(1.0, "Gradient clipping norm.", "梯度裁剪范数。", "schedule")
    warmup_ratio: float = _f(0.03, "Share of steps spent warming the lr up before the cosine decay.",
                             "学习率预热占总步数的比例，之后余弦衰减。", "schedule")
    lr_scheduler: str = _f("cosine", "Learning-rate schedule after warmup.", "预热后的学习率策略。", "schedule",
                           ("cosine", "linear", "constant"))
    optim: str = _f("adamw_torch", "Optimizer (transformers name); paged_adamw_8bit saves memory with QLoRA.",
                    "优化器（transformers 名称）；QLoRA 可用 paged_adamw_8bit 省显存。", "schedule",
                    ("adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "adamw_8bit", "sgd"))
    gradient_checkpointing: str = _f("auto", "Recompute activations to save memory; auto turns it on only when the run "
                                     "would not fit without it. offload: also keep the saved layer inputs in CPU RAM "
                                     "(least GPU memory, room for more rows per pass; single-GPU runs).",
                                     "重计算激活以节省显存；auto 仅在不开就放不下时开启。offload：再把各层保存的输入放到内存"
                                     "（显存最省，每次前向可放更多行；仅单卡）。", "schedule",
                                     ("auto", "true", "false", "offload"))
    attn_implementation: str = _f("auto", "Attention kernel: auto = flash-attn if installed, else PyTorch's varlen flash "
                                  "kernel (studio_varlen) on a GPU, else sdpa.",
                                  "注意力实现：auto 优先 flash-attn，其次 PyTorch 自带的变长 flash 内核（studio_varlen），CPU 上用 sdpa。",
                                  "schedule", ("auto", "studio_varlen", "sdpa", "flex_attention", "flash_attention_2",
                                               "eager"))
    fp8_base: bool = _f(False, "LoRA on a GPU with FP8 tensor cores (H100, L40, RTX 4090): run the frozen base weights' "
                        "GEMMs in FP8. ~14% faster on a 7B (H100), but not the same maths: the loss curve drifts "
                        "(7.6% apart from bf16 after 50 steps in the bench), so it is off unless you choose it.",
                        "LoRA + 支持 FP8 的 GPU（H100、L40、4090）：冻结的基座权重用 FP8 做矩阵乘。7B 约快 14%（H100），"
                        "但数值不同：损失曲线会偏离（基准里 50 步后与 bf16 相差 7.6%），所以默认关闭。", "schedule")
    seed: int = _f(42, "Random seed (data order, LoRA init, dropout).", "随机种子。", "schedule")
    deepspeed: str = _f("none", "DeepSpeed ZeRO stage for multi-GPU runs.", "多卡训练的 DeepSpeed ZeRO 阶段。",
                        "schedule", DEEPSPEED)

    # ---- saving
    save_steps: int = _f(500, "Save a resumable checkpoint every N optimizer steps.",
                         "每 N 步保存一次可续训的检查点。", "saving")
    save_total_limit: int = _f(2, "Checkpoints kept (oldest removed first; -1 keeps all).",
                               "最多保留的检查点数（-1 全部保留）。", "saving")
    logging_steps: int = _f(1, "Write metrics every N optimizer steps.", "每 N 步记录一次指标。", "saving")

    # ---- evaluation
    evaluation_freq: int = _f(500, "Answer evaluation_inputs every N optimizer steps (and before training).",
                              "每 N 步（以及训练前）回答一次 evaluation_inputs。", "evaluation")
    evaluation_inputs: list = _f(["请介绍一下你自己", "Please introduce yourself"],
                                 "Questions answered during training so you can watch the model change.",
                                 "训练过程中回答的问题，用于观察模型变化。", "evaluation")
    evaluation_images: list = _f([], "LLaVA only: one image per evaluation input.",
                                 "仅 LLaVA：每个评测问题对应的图片。", "evaluation")
    eval_max_new_tokens: int = _f(64, "Longest evaluation answer in tokens.", "评测回答的最大 token 数。", "evaluation")

    # ---- system
    work_dir: str = _f("", "Run folder (default: workspace/runs/<run id>).", "运行目录（默认 workspace/runs/<运行 ID>）。",
                       "system")
    dataloader_num_workers: int = _f(0, "Data loader worker processes.", "数据加载进程数。", "system")

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Names users bring from transformers / LLaMA-Factory / XTuner's own code, for the "did you mean".
ALIASES = {
    "learning_rate": "lr", "model_name_or_path": "pretrained_model_name_or_path", "model": "pretrained_model_name_or_path",
    "num_train_epochs": "max_epochs", "epochs": "max_epochs", "gradient_accumulation_steps": "accumulative_counts",
    "per_device_train_batch_size": "batch_size", "cutoff_len": "max_length", "template": "prompt_template",
    "system": "SYSTEM", "system_prompt": "SYSTEM", "packing": "pack_to_max_length", "finetuning_type": "method",
    "lora_rank": "lora_r", "lora_target": "lora_target_modules", "dataset": "data_path", "output_dir": "work_dir",
    "max_grad_norm": "max_norm", "warmup": "warmup_ratio", "lr_scheduler_type": "lr_scheduler",
}

FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}


def field_help(name: str, lang: str = "en") -> str:
    meta = FIELDS[name].metadata
    return meta["zh"] if lang == "zh" else meta["help"]


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)  # ~1 ms each time; it was asked twice per field per validation


def _expected_type(name: str) -> Any:
    return _hints()[name]


def _coerce(name: str, value: Any, source: str | None) -> Any:
    """Check (and gently coerce) one value against its declared type; names the field on error."""
    typ = _expected_type(name)
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(name, f"expected true or false, got {value!r}", source)
    if typ is int:
        # YAML's .nan / .inf are floats: int() of them raises, so finiteness is checked first
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)) or int(value) != value:
            raise ConfigError(name, f"expected a whole number, got {value!r}", source)
        return int(value)
    if typ is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads 2e-4 as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {value!r}", source)
        try:
            value = float(value)
        except OverflowError:  # an int too big for a float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value!r}", source)
        return value
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, bool) and "true" in FIELDS[name].metadata.get("choices", ()):
            return "true" if value else "false"  # YAML reads `gradient_checkpointing: true` as a bool
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(name, f"expected text, got {value!r}", source)
        return str(value)
    if typ is list:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list, got {value!r}", source)
        # every list here is a list of texts; a nested list (a YAML alias tree, say) is refused before
        # anything renders it
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise ConfigError(name, f"item {i + 1}: expected text, got {_short(item)}", source)
            out.append(str(item))
        return out
    if typ is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a mapping (key: value), got {value!r}", source)
        out_map = {}
        for k, v in value.items():  # the one mapping (data_mapping) is field name -> field name
            for x in (k, v):
                if isinstance(x, bool) or not isinstance(x, (str, int, float)):
                    raise ConfigError(name, f"{_short(k)}: expected text, got {_short(x)}", source)
            out_map[str(k)] = str(v)
        return out_map
    return value


@dataclass(frozen=True)
class Range:
    """Where a number may lie: `low < v` (or `low <= v` when closed_low) and `v <= high` (`v < high` when
    open_high); `also` is one value outside that which means something (-1: "off")."""

    low: float
    high: float
    closed_low: bool = False
    open_high: bool = False
    also: int | None = None
    also_means: str = ""

    def __contains__(self, v: float) -> bool:
        if self.also is not None and v == self.also:
            return True
        above = v >= self.low if self.closed_low else v > self.low
        below = v < self.high if self.open_high else v <= self.high
        return math.isfinite(v) and above and below

    def __str__(self) -> str:
        if (self.low, self.high, self.closed_low, self.open_high) == (0, 1, True, True):
            text = "in [0, 1)"  # the ratios
        else:
            text = (f"{'>=' if self.closed_low else '>'} {_num(self.low)} and "
                    f"{'<' if self.open_high else '<='} {_num(self.high)}")
        return text if self.also is None else f"{self.also} ({self.also_means}) or {text}"


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


# Every number of a run, checked at load so a typo (lr: 2e4, seed: -1, eval_max_new_tokens: 1e8) or
# YAML's .nan / .inf stops here with the field's name instead of starting a run that diverges or hangs.
# The upper bounds are far beyond any real run and keep one value from tying up a GPU for days.
MAX_EVAL_NEW_TOKENS = 4096
MAX_CONFIG_BYTES = 4 << 20  # a config YAML is a few KB; this leaves room for long evaluation prompts
RANGES: dict[str, Range] = {
    "max_length": Range(0, 1_048_576),
    "lora_r": Range(0, 4096),
    "lora_alpha": Range(0, 65_536),
    "lora_dropout": Range(0, 1, closed_low=True, open_high=True),
    "batch_size": Range(0, 4096),
    "micro_batch_size": Range(0, 4096, closed_low=True),  # 0 = auto; must also divide the rows per step
    "accumulative_counts": Range(0, 4096),
    "max_epochs": Range(0, 10_000, closed_low=True),  # 0 only with max_steps (checked below)
    "max_steps": Range(0, 1_000_000_000, also=-1, also_means="use max_epochs"),
    "lr": Range(0, 1),
    "weight_decay": Range(0, 1, closed_low=True),
    "max_norm": Range(0, 1_000_000, closed_low=True),  # 0: no clipping
    "warmup_ratio": Range(0, 1, closed_low=True, open_high=True),
    "seed": Range(0, 2**32 - 1, closed_low=True),  # numpy's seed range
    "save_steps": Range(0, 1_000_000_000),
    "save_total_limit": Range(0, 1_000_000, also=-1, also_means="keep all"),
    "logging_steps": Range(0, 1_000_000_000),
    "evaluation_freq": Range(0, 1_000_000_000),
    "eval_max_new_tokens": Range(0, MAX_EVAL_NEW_TOKENS),
    "dataloader_num_workers": Range(0, 64, closed_low=True),
}


def _short(value: Any) -> str:
    return reprlib.repr(value)


def validate(cfg: RunConfig, source: str | None = None) -> None:
    """Field-level checks beyond types; raises ConfigError naming the field."""
    for name, f in FIELDS.items():
        value = _coerce(name, getattr(cfg, name), source)
        object.__setattr__(cfg, name, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(name, f"{value!r} is not one of {', '.join(map(str, choices))}", source)
    for name, rng in RANGES.items():
        value = getattr(cfg, name)
        if value not in rng:
            raise ConfigError(name, f"must be {rng}, got {value!r}", source)
    if cfg.max_epochs <= 0 and cfg.max_steps <= 0:
        raise ConfigError("max_epochs", "must be > 0 (or set max_steps)", source)
    if cfg.micro_batch_size < 0 or (cfg.micro_batch_size and (cfg.batch_size * cfg.accumulative_counts)
                                    % cfg.micro_batch_size):
        raise ConfigError("micro_batch_size", f"must be 0 (auto) or divide batch_size x accumulative_counts = "
                                              f"{cfg.batch_size * cfg.accumulative_counts}, got {cfg.micro_batch_size}",
                          source)


def config_from_dict(data: dict[str, Any], source: str | None = None) -> RunConfig:
    """Build a RunConfig; unknown keys are refused with a 'did you mean'."""
    if not isinstance(data, dict):
        raise ConfigError("(top level)", "expected a mapping of settings", source)
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        k = unknown[0]
        close = [ALIASES[k]] if k in ALIASES else difflib.get_close_matches(str(k), FIELDS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(str(k), f"unknown setting{hint}", source)
    kwargs = {k: _coerce(k, v, source) for k, v in data.items()}
    try:
        cfg = RunConfig.__new__(RunConfig)
        for name, f in FIELDS.items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            object.__setattr__(cfg, name, kwargs.get(name, default))
        validate(cfg, source)
    except ConfigError:
        raise
    return cfg


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML config; every error names the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", f"no config file at {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError("config", f"{path} is {path.stat().st_size:,} bytes; a config is a few KB "
                                    f"(the limit is {MAX_CONFIG_BYTES:,})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("yaml", f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError("yaml", f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except (ValueError, RecursionError) as e:  # a 5,000-digit number; nesting deeper than Python's stack
        raise ConfigError("yaml", f"{path}: not a config ({_yaml_failure(e)})") from None
    return config_from_dict(data, source=str(path))


def _yaml_failure(e: Exception) -> str:
    return "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]


def config_from_yaml(text: str, source: str = "<yaml>") -> RunConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError("yaml", f"not valid YAML {where} ({getattr(e, 'problem', e)})", source) from None
    except (ValueError, RecursionError) as e:
        raise ConfigError("yaml", f"not a config ({_yaml_failure(e)})", source) from None
    return config_from_dict(data, source=source)


def config_to_yaml(cfg: RunConfig, header: str = "") -> str:
    """YAML grouped by section with each field's help as a comment above it."""
    lines = [f"# {h}" for h in header.splitlines()] if header else []
    section = None
    for name, f in FIELDS.items():
        sec = f.metadata["section"]
        if sec != section:
            lines.append("")
            lines.append(f"# ---- {sec}")
            section = sec
        lines.append(f"# {f.metadata['help']}")
        lines.append(f"{name}: {_yaml_value(getattr(cfg, name))}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text[:-3].rstrip() if text.endswith("\n...") or text.endswith("...") else text


def save_config(cfg: RunConfig, path: str | os.PathLike, header: str = "") -> Path:
    return atomic_write_text(path, config_to_yaml(cfg, header))
