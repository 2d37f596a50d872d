"""The model card (README.md) pushed with a model: YAML metadata, then a Chinese and an English part.

    from core.publish import model_card
    text = model_card("workspace/merged/demo", repo_id="alice/assistant", run_dir="workspace/runs/demo")

The card says what the model is, what it was trained on and how (from the run's config.yaml), what
it answered during training (samples.jsonl), and how to use it. It is always at least
MIN_CARD_CHARS characters long, because ModelScope leaves shorter READMEs unpublished.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

MIN_CARD_CHARS = 200


# ---------------------------------------------------------------------------- reading the inputs

def is_adapter(source_dir: str | os.PathLike) -> bool:
    return (Path(source_dir) / "adapter_config.json").is_file()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _run_config(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def last_answers(run_dir: str | os.PathLike | None) -> tuple[int | None, list[dict]]:
    """(step, [{prompt, answer}]) from the last line of samples.jsonl; (None, []) when there is none."""
    if run_dir is None:
        return None, []
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        return None, []
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a half-written last line while training is still going
        if isinstance(row, dict):
            last = row
    if not last:
        return None, []
    answers = last.get("answers")
    if not isinstance(answers, list):  # a flat row: {step, prompt, answer}
        answers = [last] if "answer" in last else []
    rows = [{"prompt": str(a.get("prompt", "")), "answer": str(a.get("answer", ""))}
            for a in answers if isinstance(a, dict)]
    return last.get("step"), rows


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def _hub_id(name: str | None) -> str | None:
    """`name` when it looks like a Hub id (owner/name), else None: local paths don't belong in metadata."""
    if not name or not _HUB_ID.match(name) or os.path.exists(name):
        return None
    return name


def hub_id_of_folder(folder: str | os.PathLike) -> str | None:
    """The Hub id a local model folder came from, when the studio or the folder itself recorded it.

    Looked for, in order: the download's own record (core.fsio.OUTPUT_MARKER, written by
    `studio download`), the workspace's download naming (workspace/models/<owner>__<name>), and
    config.json's `_name_or_path` when that looks like a Hub id. An InternLM2 folder converted to
    the Llama layout (<name>-llama-layout) answers for its original.
    """
    from core.fsio import read_marker

    p = Path(folder).expanduser()
    candidates = [p]
    if p.name.endswith("-llama-layout"):
        candidates.insert(0, p.with_name(p.name[: -len("-llama-layout")]))
    for c in candidates:
        marker = read_marker(c) or {}
        if marker.get("kind") == "download" and _hub_id(str(marker.get("model_id") or "")):
            return str(marker["model_id"])
    for c in candidates:
        if c.parent.name == "models" and "__" in c.name:
            guess = c.name.replace("__", "/", 1)
            if _hub_id(guess) and "__" not in guess:
                return guess
        named = str(_read_json(c / "config.json").get("_name_or_path") or "")
        if _hub_id(named):
            return named
    return None


def _is_tiny(name: str) -> bool:
    if name in ("tiny", "tiny-llava"):
        return True
    from core.fsio import read_marker

    return (read_marker(Path(name).expanduser()) or {}).get("kind") == "tiny"


def resolve_base_model(source_dir: str | os.PathLike, base_model: str | None = None,
                       run_dir: str | os.PathLike | None = None) -> str | None:
    """The base model's Hub id for the card and the published adapter_config.json, never a local path.

    `base_model` (--base-model) wins; otherwise the first base recorded by the run's config, the
    adapter's adapter_config.json or the merge record (studio_merge.json). A recorded Hub id is used
    as is; a local folder is traced back to its Hub id (hub_id_of_folder). None when nothing is recorded
    or the base is the built-in tiny model (it has no Hub id); a StudioError asking for --base-model
    when only a local path is known.
    """
    from core.errors import StudioError

    if base_model:
        if not _hub_id(base_model.strip()):
            raise StudioError(f"--base-model: {base_model!r} is not a Hub id",
                              hint="give it as owner/name, e.g. internlm/internlm2-chat-1_8b (not a local folder)")
        return base_model.strip()
    src = Path(source_dir)
    recorded = [_run_config(Path(run_dir) if run_dir else None).get("pretrained_model_name_or_path"),
                _read_json(src / "adapter_config.json").get("base_model_name_or_path"),
                _read_json(src / "studio_merge.json").get("base")]
    base = next((str(b) for b in recorded if isinstance(b, str) and b.strip()), None)
    if base is None or _is_tiny(base):
        return None
    if _hub_id(base):
        return base
    found = hub_id_of_folder(base)
    if found:
        return found
    raise StudioError(f"the base model is the local folder {base}, and no Hub id is recorded for it; a published "
                      "model card and adapter_config.json name the base by its Hub id, never by a local path",
                      hint="pass --base-model with the base model's Hub id, e.g. --base-model "
                           "internlm/internlm2-chat-1_8b (on the Publish page: the base model field)")


def _count_samples(data_path: str) -> int | None:
    p = Path(data_path)
    if not p.is_file():
        return None
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            return sum(1 for ln in text.splitlines() if ln.strip())
        data = json.loads(text)
        return len(data) if isinstance(data, list) else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- the card

def _front_matter(meta: dict[str, Any]) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip() + "\n---\n"


def model_card(source_dir: str | os.PathLike, *, repo_id: str, base_model: str | None = None,
               run_dir: str | os.PathLike | None = None, language: tuple[str, ...] | list[str] = ("zh", "en"),
               license: str = "apache-2.0") -> str:
    """The README.md text for `source_dir` (a merged model folder or a PEFT adapter folder).

    `base_model` wins over the run's config and the adapter's own record of its base; the card names
    the base by its Hub id only (resolve_base_model raises when only a local path is known). The result
    is editable text; `push` only checks it is still long enough.
    """
    src = Path(source_dir)
    run = Path(run_dir) if run_dir else None
    cfg = _run_config(run)
    adapter = is_adapter(src)
    base_id = resolve_base_model(src, base_model, run)
    method = str(cfg.get("method") or ("lora" if adapter else "")).lower()
    name = repo_id.split("/")[-1]

    tags = ["fine-tune-studio", "xtuner-style", "chat"]
    if method:
        tags.append(method)
    if adapter:
        tags.append("peft")
    meta: dict[str, Any] = {}
    if base_id:
        meta["base_model"] = base_id
    meta["library_name"] = "peft" if adapter else "transformers"
    meta["tags"] = tags
    meta["license"] = license
    meta["language"] = list(language)
    meta["pipeline_tag"] = "text-generation"

    data_path = str(cfg.get("data_path") or "")
    n_samples = _count_samples(data_path) if data_path else None
    data_name = Path(data_path).name if data_path else ""
    step, answers = last_answers(run)
    base_txt = base_id or "(not recorded)"
    kind_en = "a LoRA adapter" if adapter else "a merged, ready-to-run model"
    kind_zh = "LoRA 适配器（adapter）" if adapter else "合并后可直接运行的完整模型"

    hp_keys = ("method", "lora_r", "lora_alpha", "lora_dropout", "max_length", "batch_size",
               "accumulative_counts", "max_epochs", "max_steps", "lr", "warmup_ratio", "lr_scheduler", "seed")
    hp_rows = [f"| {k} | {cfg[k]} |" for k in hp_keys if k in cfg and cfg[k] not in ("", None)]

    zh: list[str] = [f"# {name}", "", "## 中文说明", "",
                     f"`{repo_id}` 是在基座模型 `{base_txt}` 上用 Fine-Tune Studio 微调得到的{kind_zh}，"
                     "按照 XTuner 教程的流程（数据 → 配置 → 训练 → 对比 → 合并 → 发布）制作。"]
    if data_name:
        zh.append(f"训练数据：`{data_name}`" + (f"，共 {n_samples} 条样本。" if n_samples else "。"))
    if method:
        zh.append(f"微调方法：{method}。" + ("超参数见下方英文部分的表格。" if hp_rows else ""))
    zh += ["", "它可以像普通的 transformers 对话模型一样加载，使用分词器自带的对话模板（chat template）生成回答，"
           "在没有 GPU 的机器上也能用 CPU 运行（速度较慢）。下面的英文部分给出了完整的使用代码。", ""]

    en: list[str] = ["## English", "",
                     f"`{repo_id}` is {kind_en} fine-tuned from `{base_txt}` with Fine-Tune Studio, "
                     "following the XTuner tutorial flow (data, config, train, compare, merge, publish)."]
    if data_name:
        en.append(f"Training data: `{data_name}`" + (f", {n_samples} samples." if n_samples else "."))
    en.append("")
    if hp_rows:
        en += ["### Training", "", "| setting | value |", "| --- | --- |", *hp_rows, ""]
    if answers:
        en += [f"### Answers at step {step}" if step is not None else "### Answers", "",
               "What the model answered to the run's evaluation questions (greedy decoding):", ""]
        for a in answers:
            en += [f"- **{a['prompt']}**", f"  {a['answer'].strip() or '(empty)'}"]
        en.append("")
    en += ["### How to use", "", "```python"]
    if adapter:
        en += ["from peft import AutoPeftModelForCausalLM",
               "from transformers import AutoTokenizer", "",
               f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
               f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    else:
        en += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
               f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
               f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")']
    en += ['messages = [{"role": "user", "content": "请介绍一下你自己"}]',
           "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
           "return_dict=True)",
           "out = model.generate(**inputs, max_new_tokens=128, do_sample=False)",
           'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
           "```", "",
           f"License: {license}. Check the base model's own license before you redistribute it.", ""]
    card = _front_matter(meta) + "\n" + "\n".join(zh + en)
    # The body above is always far longer than the minimum; the check guards later edits of this code.
    assert len(card) >= MIN_CARD_CHARS
    return card


def check_card(text: str, hub: str) -> None:
    """Refuse a card that a hub would leave unpublished; names what to fix."""
    from core.errors import StudioError

    if len(text.strip()) < MIN_CARD_CHARS:
        raise StudioError(f"README.md is {len(text.strip())} characters; {hub} needs at least {MIN_CARD_CHARS}",
                          hint="add a description of the model, its data and how to use it (or leave the card "
                               "as generated)")
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end < 0:
            raise StudioError("README.md: the YAML front matter opened with --- is never closed",
                              hint="end the metadata block with a line holding only ---")
        import yaml

        try:
            yaml.safe_load(text[3:end])
        except yaml.YAMLError as e:
            raise StudioError(f"README.md: the YAML front matter does not parse: {e}".splitlines()[0],
                              hint="fix the metadata between the two --- lines") from None
