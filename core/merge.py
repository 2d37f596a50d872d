"""Merge a LoRA/QLoRA adapter into its base model, save sharded safetensors, and check the result.

The base is loaded in 16/32-bit even for a QLoRA adapter (merging into 4-bit weights would round
them again). Afterwards the merged folder is reloaded from disk and its greedy answers are compared
token for token with base+adapter on the run's evaluation prompts. Safe to re-run: the output is
written to a temp folder and renamed into place (core.fsio.output_dir): a folder that is not an
earlier merge output is refused unless overwrite=True (--overwrite), and the base, the adapter, their
parents, the workspace and run folders never. No Python code from a model folder runs unless
the user turns trust_remote_code on (--trust-remote-code).

    python -m studio merge tiny workspace/runs/<id>/adapter workspace/merged/my-model
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from pathlib import Path

from core.errors import StudioError
from core.fsio import output_dir

DEFAULT_PROMPTS = ["请介绍一下你自己", "Please introduce yourself", "你是谁？", "What can you do?"]


def _run_prompts(adapter: Path) -> list[str]:
    """evaluation_inputs of the run the adapter came from, when it came from one."""
    for cfg_file in (adapter.parent / "config.yaml", adapter.parent.parent.parent / "config.yaml"):
        if cfg_file.is_file():
            try:
                from core.config import load_config

                return [p for p in load_config(cfg_file).evaluation_inputs if p.strip()]
            except Exception:  # a prompt list is a nicety; the merge does not depend on it
                return []
    return []


def _dtype(device: str):
    import torch

    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def merge_inputs(base: str, adapter: str, out: str, device: str = "auto", *,
                 overwrite: bool = False) -> tuple[Path, Path, Path, str, object]:
    """Preconditions of every merge: (adapter folder, base folder, output folder, device, dtype).

    The output folder is checked here, before any model is loaded, so a refused folder costs nothing.
    """
    import torch

    from core.chat import adapter_folder
    from core.fsio import check_output_dir
    from core.models import resolve_model

    adapter_dir = adapter_folder(adapter)
    base_dir = resolve_model(base)
    out_dir = check_output_dir(out, kind="merge", overwrite=overwrite, sources=merge_sources(base, base_dir, adapter,
                                                                                             adapter_dir))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return adapter_dir, base_dir, out_dir, device, _dtype(device)


def merge_sources(base: str, base_dir: Path, adapter: str, adapter_dir: Path) -> list[Path]:
    """Every folder a merge reads: the output may be none of them nor hold one."""
    found = [base_dir, adapter_dir, Path(adapter)]
    if Path(base).expanduser().is_dir():
        found.append(Path(base))  # an InternLM2 base resolves to its converted sibling; the original counts too
    return found


def attach_for_merge(model, adapter_dir: Path, base_dir: Path):
    """The adapter on the full-precision base, in eval mode; a base of the wrong shape is named."""
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    except RuntimeError as e:
        if "size mismatch" in str(e):
            raise StudioError(f"adapter {adapter_dir} was trained for a different base than {base_dir}",
                              hint="use the base model named in adapter_config.json") from None
        raise
    return peft_model.eval()


def merge_adapter(base: str, adapter: str, out: str, *, max_shard_size: str = "2GB", device: str = "auto",
                  check: bool = True, layout: str = "native", prompts: list[str] | None = None,
                  max_new_tokens: int = 32, overwrite: bool = False, trust_remote_code: bool = False) -> dict:
    """Merge `adapter` into `base`, save to `out`; returns a report with the check's result.

    `out` must be new, empty or an earlier merge output (else `overwrite`); see core.fsio.output_dir.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.chat import ChatModel, generate_ids
    from core.models import check_remote_code, model_type_of, resolve_model
    from core.templates import stop_token_ids

    if model_type_of(resolve_model(base)) == "llava":  # LLM LoRA + projector into the whole LLaVA model
        from core.llava import merge_llava

        return merge_llava(base, adapter, out, max_shard_size=max_shard_size, device=device, check=check,
                           prompts=prompts, max_new_tokens=max_new_tokens, overwrite=overwrite)
    t0 = time.time()
    adapter_dir, base_dir, out_dir, device, dtype = merge_inputs(base, adapter, out, device, overwrite=overwrite)
    check_remote_code(base_dir, trust_remote_code)
    trc = {"trust_remote_code": trust_remote_code}  # explicit: transformers would otherwise ask on a terminal
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tok_src, **trc)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer = AutoTokenizer.from_pretrained(base_dir, **trc)

    # straight onto the device: a 7B base is not staged in CPU memory first
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, device_map=device, **trc)
    peft_model = attach_for_merge(model, adapter_dir, base_dir)
    prompts = prompts or _run_prompts(adapter_dir) or DEFAULT_PROMPTS
    chat = ChatModel(model=peft_model, tokenizer=tokenizer, adapters={"default": str(adapter_dir)},
                     stop_ids=stop_token_ids(tokenizer, model.generation_config))
    reference = []
    if check:
        for p in prompts:
            reference.append(generate_ids(chat, [{"role": "user", "content": p}], "default", max_new_tokens))
    merged = peft_model.merge_and_unload()
    t_merge = time.time() - t0

    record = {"base": str(base_dir), "adapter": str(adapter_dir)}
    with output_dir(out, kind="merge", overwrite=overwrite, record=record,
                    sources=merge_sources(base, base_dir, adapter, adapter_dir)) as tmp:
        merged.save_pretrained(tmp, max_shard_size=max_shard_size, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "studio_merge.json").write_text(json.dumps({**record, "time": time.time()}, indent=2),
                                               encoding="utf-8")
        del merged, model, peft_model, chat
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        if layout == "internlm2":
            from core.internlm2 import convert_llama_to_internlm2

            converted = tmp / ".internlm2"
            original = Path(base) if Path(base).is_dir() and model_type_of(base) == "internlm2" else None
            convert_llama_to_internlm2(tmp, converted, original=original)  # original: keeps auto_map + remote code
            for p in tmp.iterdir():  # the Llama-layout files go; the converted ones take their place
                if p.name not in (".internlm2", "studio_merge.json"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            for p in converted.iterdir():
                p.rename(tmp / p.name)
            converted.rmdir()
    t_save = time.time() - t0 - t_merge

    report: dict = {"merged": str(out_dir), "base": str(base_dir), "adapter": str(adapter_dir),
                    "dtype": str(dtype).replace("torch.", ""), "layout": layout,
                    "shards": sorted(p.name for p in out_dir.glob("*.safetensors")),
                    "merge_seconds": round(t_merge, 2), "save_seconds": round(t_save, 2)}
    if check:
        load_dir = out_dir
        if layout == "internlm2":
            load_dir = resolve_model(str(out_dir))  # back through the Llama-layout loader
        merged_model = AutoModelForCausalLM.from_pretrained(load_dir, dtype=dtype, **trc).to(device).eval()
        mchat = ChatModel(model=merged_model, tokenizer=tokenizer,
                          stop_ids=stop_token_ids(tokenizer, merged_model.generation_config))
        mismatches = []
        for p, ref in zip(prompts, reference, strict=True):
            got = generate_ids(mchat, [{"role": "user", "content": p}], None, max_new_tokens)
            if got != ref:
                mismatches.append({"prompt": p, "adapter": tokenizer.decode(ref, skip_special_tokens=True),
                                   "merged": tokenizer.decode(got, skip_special_tokens=True)})
        report["check"] = {"identical": not mismatches, "compared": len(prompts), "mismatches": mismatches}
        del merged_model
    report["seconds"] = round(time.time() - t0, 2)
    return report
