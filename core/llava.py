"""Image-text (LLaVA) models: build, train (stage 1 and 2), chat with an image, merge.

Models are Hugging Face `LlavaForConditionalGeneration` folders: a CLIP vision tower, a two-layer
MLP projector (`multi_modal_projector`) and a chat LLM (`language_model`), plus a `LlavaProcessor`
whose image processor pads every picture to a square (filled with the CLIP mean colour, as XTuner's
`expand2square`) before resizing, and expands `<image>` to one token per image patch.

The tutorial's two stages, with the same config, run dir, board and checkpoints as text runs:

    # stage 1: projector only, on image-caption data. LLM + vision encoder -> a LLaVA folder (built
    # once, cached in workspace/models/), then the projector is trained and the whole model is
    # written to runs/<id>/model/.
    model_type: llava
    llava_stage: pretrain
    pretrained_model_name_or_path: internlm/internlm2-chat-1_8b
    visual_encoder_name_or_path: openai/clip-vit-large-patch14-336

    # stage 2: LoRA/QLoRA on the LLM + the projector in full (saved in the adapter as
    # modules_to_save); the vision tower stays frozen. Start from stage 1's folder:
    model_type: llava
    llava_stage: finetune
    pretrained_model_name_or_path: workspace/runs/<stage-1 run id>/model

    python -m studio train my_llava_finetune.yaml
    python -m studio chat workspace/runs/<stage-1>/model --adapter workspace/runs/<stage-2>/adapter --image oph.jpg
    python -m studio merge workspace/runs/<stage-1>/model workspace/runs/<stage-2>/adapter workspace/merged/llava
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError, StudioError

IMAGE_TOKEN = "<image>"
PROJECTOR = "multi_modal_projector"
LANGUAGE_MODEL = "language_model"


# ---------------------------------------------------------------------------- build

def _image_processor(image_size: int, mean=None, std=None):
    """CLIP preprocessing with pad-to-square first (the tutorial config's pad_image_to_square=True)."""
    from transformers import LlavaImageProcessorPil

    kw = {"image_mean": list(mean), "image_std": list(std)} if mean is not None and std is not None else {}
    # Saved as "LlavaImageProcessor": on load, transformers picks the torchvision or PIL backend.
    return LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": image_size},
                                  crop_size={"height": image_size, "width": image_size}, **kw)


def _load_vision_tower(vision_path: Path):
    """A CLIPVisionModel from a CLIP vision folder or a full CLIP checkpoint (its vision half)."""
    import torch
    from transformers import AutoConfig, CLIPVisionConfig, CLIPVisionModel

    config = AutoConfig.from_pretrained(vision_path)
    if config.model_type == "clip":
        config = config.vision_config
    if not isinstance(config, CLIPVisionConfig):
        raise StudioError(f"visual_encoder_name_or_path: {vision_path} is a {config.model_type!r} model, not CLIP",
                          hint="use a CLIP vision encoder such as openai/clip-vit-large-patch14-336")
    from transformers.utils import logging as hf_logging

    dtype = getattr(config, "dtype", None) or torch.float32
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a full CLIP checkpoint's text half is skipped on purpose: no load report
    try:
        return CLIPVisionModel.from_pretrained(vision_path, config=config, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)


def build_llava_model(llm_path: str | Path, vision_path: str | Path, out_dir: str | Path, *, seed: int = 0,
                      force: bool = False) -> Path:
    """LlavaForConditionalGeneration folder from a chat LLM + a CLIP vision encoder (new projector).

    Layout as XTuner's llava_internlm2_chat_1_8b_clip_vit_large_p14_336: features of the second
    last vision layer without CLS (576 tokens at 336 px / patch 14), a GELU MLP projector. `<image>`
    is added to the tokenizer (and the embeddings grown) when missing. Skipped when `out_dir`
    already holds a model, unless force. Written to a temp folder and renamed into place.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    llm_path, vision_path, out = Path(llm_path), Path(vision_path), Path(out_dir)
    if not force and (out / "config.json").is_file() and (out / "processor_config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype="auto")
    if len(tokenizer) > llm.get_input_embeddings().weight.shape[0]:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    vision = _load_vision_tower(vision_path)
    vcfg = vision.config

    config = LlavaConfig(
        vision_config=vcfg.to_dict(), text_config=llm.config.to_dict(), image_token_index=image_token_id,
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=bool(getattr(llm.config, "tie_word_embeddings", False)),
    )
    config.dtype = llm.dtype
    # Built on the meta device, then the real LLM and vision tower are put in place: no second copy.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    torch.manual_seed(seed)
    projector = LlavaMultiModalProjector(config).to(llm.dtype)
    model.model.multi_modal_projector = projector
    model.model.language_model = llm.model
    model.model.vision_tower = vision
    model.lm_head = llm.lm_head
    model.generation_config = GenerationConfig.from_dict(llm.generation_config.to_dict())
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    try:
        from transformers import CLIPImageProcessor

        clip_ip = CLIPImageProcessor.from_pretrained(vision_path)
        image_processor = _image_processor(vcfg.image_size, clip_ip.image_mean, clip_ip.image_std)
    except OSError:  # a bare vision encoder without preprocessor_config.json: CLIP's defaults
        image_processor = _image_processor(vcfg.image_size)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vcfg.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tokenizer.chat_template)

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "studio_llava.json").write_text(json.dumps(
        {"llm": str(llm_path), "vision": str(vision_path), "image_tokens": config.image_seq_length,
         "built": time.time()}, indent=2), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def built_llava_dir(llm_path: Path, vision_path: Path) -> Path:
    """Where the LLaVA built from this LLM + vision encoder is cached (workspace/models/)."""
    from core.workspace import sub

    return sub("models") / f"llava__{llm_path.name}__{vision_path.name}"


# ---------------------------------------------------------------------------- inputs

def image_token_count(config) -> int:
    """How many `<image>` tokens one image becomes for this LlavaConfig."""
    v = config.vision_config
    n = (v.image_size // v.patch_size) ** 2
    return n + 1 if config.vision_feature_select_strategy == "full" else n


def _open_image(image):
    from PIL import Image

    from core.images import open_image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with open_image(image) as im:  # pixel limit, one-line DataError naming the file (core/images.py)
        return im.convert("RGB")


def with_image_token(messages: list[dict]) -> list[dict]:
    """A copy where the first user turn holds `<image>` (XTuner puts it before the question)."""
    if any(IMAGE_TOKEN in str(m.get("content", "")) for m in messages):
        return messages
    out, done = [], False
    for m in messages:
        if not done and m["role"] == "user":
            m = {**m, "content": f"{IMAGE_TOKEN}\n{m['content']}"}
            done = True
        out.append(m)
    return out


def llava_inputs(processor, messages: list[dict], image, device) -> dict:
    """Model inputs for one conversation about one image (path or PIL image), prompt by the chat template."""
    text = processor.tokenizer.apply_chat_template(with_image_token(messages), tokenize=False,
                                                   add_generation_prompt=True)
    # No BOS added here: training encodes turns with add_special_tokens=False too.
    enc = processor(images=_open_image(image), text=text, return_tensors="pt", add_special_tokens=False)
    return {k: v.to(device) for k, v in enc.items()}


# ---------------------------------------------------------------------------- chat

def _dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def _quantization(bits: int):
    import torch
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise StudioError(f"{bits}-bit loading needs a CUDA GPU (bitsandbytes)", hint="leave out --bits on this machine")
    # The vision tower and projector stay in 16 bit: they are small and quantizing them costs accuracy.
    # transformers 5 matches these from the start of a module name or as a suffix, older ones as a substring:
    # ".*name" covers "model.vision_tower...." under the first rule, the bare name under the second
    skip = ["vision_tower", ".*vision_tower", PROJECTOR, f".*{PROJECTOR}", "lm_head"]
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def load_llava_chat(path: str | Path, adapters: dict[str, str] | list[str] | None = None, bits: int | None = None):
    """A ChatModel (with .processor) for a LLaVA folder, each adapter attached under its own name."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from core.chat import ChatModel, attach_adapter
    from core.templates import stop_token_ids

    path = Path(path)
    processor = AutoProcessor.from_pretrained(path)
    kwargs: dict = {}
    if bits:
        kwargs = {"quantization_config": _quantization(bits), "device_map": {"": 0}}
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=_dtype(), **kwargs)
    if not bits:
        import torch

        model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    model.eval()
    if isinstance(adapters, list):
        adapters = {f"adapter{i}" if i else "adapter": a for i, a in enumerate(adapters)}
    chat = ChatModel(model=model, tokenizer=processor.tokenizer, processor=processor, base_path=str(path),
                     stop_ids=stop_token_ids(processor.tokenizer, model.generation_config))
    for name, folder in (adapters or {}).items():
        attach_adapter(chat, name, folder)
    return chat


# ---------------------------------------------------------------------------- data

def encode_llava_sample(tokenizer, sample: dict, max_length: int, system: str, image_token_id: int,
                        tokens_per_image: int) -> dict | None:
    """encode_sample, then each `<image>` token becomes `tokens_per_image` placeholders (no loss).

    max_length counts text tokens, as XTuner's (2048 - image tokens); None when nothing carries
    loss or truncation cut an image placeholder off.
    """
    from core.train.dataset import IGNORE, encode_sample

    images = sample.get("images") or []
    enc = encode_sample(tokenizer, sample, max_length, system)
    if enc is None:
        return None
    if enc["input_ids"].count(image_token_id) != len(images):
        return None
    ids, labels = [], []
    for t, lab in zip(enc["input_ids"], enc["labels"], strict=True):
        if t == image_token_id:
            ids += [t] * tokens_per_image
            labels += [IGNORE] * tokens_per_image
        else:
            ids.append(t)
            labels.append(lab)
    return {"input_ids": ids, "labels": labels, "images": list(images)}


def load_llava_data(cfg, tokenizer, image_token_id: int, tokens_per_image: int) -> tuple[list[dict], dict]:
    from core.data import IMAGE_TOKEN as DATA_IMAGE_TOKEN
    from core.data import read_samples

    path = Path(cfg.data_path)
    if not path.is_file():
        raise StudioError(f"data_path: no data file at {path}",
                          hint="build one with: python -m studio data llava --images DIR --qa FILE -o OUT")
    rd: dict = {}
    rows: list[dict] = []
    stats = {"samples": 0, "dropped": 0, "images": 0, "tokens": 0}
    from core.train.dataset import SampleError, refuse_unusable_media

    samples = read_samples(path, None if cfg.data_format == "auto" else cfg.data_format,
                           cfg.data_mapping or None, image_folder=cfg.image_folder or None, stats=rd)
    # videos/audios: refused at load (after counting them), never trained as <video>/<audio> text
    for sample in refuse_unusable_media(samples, str(path), usable=("images",), model="a LLaVA model"):
        stats["samples"] += 1
        n_tags = sum(str(m["content"]).count(DATA_IMAGE_TOKEN) for m in sample["messages"])
        if n_tags != len(sample.get("images") or []):
            raise DataError(str(path), rd.get("line"), "messages",
                            f"{n_tags} {DATA_IMAGE_TOKEN} tag(s) for {len(sample.get('images') or [])} image(s)",
                            f"put one {DATA_IMAGE_TOKEN} in the text per image")
        try:
            enc = encode_llava_sample(tokenizer, sample, cfg.max_length, cfg.SYSTEM, image_token_id, tokens_per_image)
        except SampleError as exc:
            raise DataError(str(path), rd.get("line"), exc.field, exc.message, exc.hint) from None
        if enc is None:
            stats["dropped"] += 1
            continue
        stats["images"] += len(enc["images"])
        stats["tokens"] += len(enc["input_ids"])
        rows.append(enc)
    if not rows:
        raise StudioError(f"data_path: {path} has no sample with an answer to learn from",
                          hint="check the file with: python -m studio data validate " + str(path))
    return rows, stats


@dataclass
class LlavaCollator:
    """Pads token rows and turns each row's image files into pixel_values (in row order)."""

    pad_token_id: int
    image_processor: object

    def __call__(self, rows: list[dict]):
        import torch

        from core.train.dataset import IGNORE

        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, mask, images = [], [], [], []
        for r in rows:
            n = len(r["input_ids"])
            ids.append(r["input_ids"] + [self.pad_token_id] * (width - n))
            labels.append(r["labels"] + [IGNORE] * (width - n))
            mask.append([1] * n + [0] * (width - n))
            images += [_open_image(p) for p in r["images"]]
        batch = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}
        if images:
            batch["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch


# ---------------------------------------------------------------------------- train

def lora_target_regex(model, names: list[str]) -> str:
    """A PEFT target regex for linear layers inside the language model only (never vision/projector)."""
    import torch

    if names in (["all-linear"], ["all_linear"]):
        found = set()
        for full, mod in model.named_modules():
            if f".{LANGUAGE_MODEL}." in f".{full}" and isinstance(mod, torch.nn.Linear):
                found.add(full.rsplit(".", 1)[-1])
        names = sorted(found)
    if not names:
        raise StudioError("lora_target_modules: no linear layer found in the language model",
                          hint="list layer names, e.g. [q_proj, v_proj], or use [all-linear]")
    return rf".*\.{LANGUAGE_MODEL}\..*\.({'|'.join(re.escape(n) for n in names)})"


def _resolve_eval_images(cfg) -> list[str]:
    out = []
    for i, p in enumerate(cfg.evaluation_images or []):
        cands = [Path(p)] + ([Path(cfg.image_folder) / p] if cfg.image_folder else [])
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise StudioError(f"evaluation_images[{i}]: no image at {p}",
                              hint="give a path that exists, absolute or relative to image_folder")
        out.append(str(found.resolve()))
    return out


def _base_llava(cfg, log) -> Path:
    from core.models import model_type_of, resolve_model

    base = resolve_model(cfg.pretrained_model_name_or_path, cfg.model_hub)
    if model_type_of(base) == "llava":
        if cfg.visual_encoder_name_or_path:
            log("visual_encoder_name_or_path ignored: the model is already a LLaVA model")
        return base
    if not cfg.visual_encoder_name_or_path:
        raise StudioError("visual_encoder_name_or_path: needed to build a LLaVA model from the LLM "
                          f"{cfg.pretrained_model_name_or_path}",
                          hint="set it to a CLIP encoder (openai/clip-vit-large-patch14-336), or point "
                               "pretrained_model_name_or_path at a LLaVA folder (e.g. a stage-1 run's model/)")
    vision = resolve_model(cfg.visual_encoder_name_or_path, cfg.model_hub)
    target = built_llava_dir(base, vision)
    log(f"llava: building {target.name} from {base} + {vision} (cached)")
    if cfg.llava_stage == "finetune":
        log("llava: WARNING stage 2 (finetune) is starting from a freshly initialised projector; the tutorial "
            "runs stage 1 first (the _pretrain recipe) and points pretrained_model_name_or_path at its run's model/")
    return build_llava_model(base, vision, target, seed=cfg.seed)


def train_llava(cfg, run_dir: Path, resume: str | None = None, deepspeed: str | None = None,
                stop_flag: dict | None = None) -> str:
    """Stage 1 (llava_stage: pretrain) or stage 2 (finetune) per `cfg` into `run_dir`; 'finished' or 'stopped'."""
    import os

    from transformers import AutoProcessor, LlavaForConditionalGeneration, Trainer

    from core import rundir
    from core.templates import apply_template
    from core.train.callbacks import EvalSamplesCallback, RunDirCallback
    from core.train.dataset import SFTDataset
    from core.train.entry import log, pick_attention, pick_dtype, training_args, use_grad_checkpointing

    stop_flag = stop_flag if stop_flag is not None else {}
    run_dir = Path(run_dir)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    is_main = int(os.environ.get("RANK", "0")) == 0
    stage = cfg.llava_stage
    if stage == "pretrain" and cfg.method != "lora":
        log(f"llava stage 1 trains the projector only: method {cfg.method} is not used")

    # ---- setup: model, processor, data
    model_path = _base_llava(cfg, log)
    log(f"model: {model_path} (LLaVA, stage {stage})")
    processor = AutoProcessor.from_pretrained(model_path)
    tokenizer = processor.tokenizer
    log(f"chat template: {apply_template(tokenizer, cfg.prompt_template)}")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    dtype = pick_dtype(cfg)
    kwargs: dict = {"dtype": dtype, "attn_implementation": pick_attention(cfg.attn_implementation)}
    if cfg.method == "qlora" and stage == "finetune":
        kwargs["quantization_config"] = _quantization(4)
        kwargs["device_map"] = {"": local_rank}
    model = LlavaForConditionalGeneration.from_pretrained(model_path, **kwargs)
    model.config.use_cache = False
    per_image = image_token_count(model.config)
    rows, stats = load_llava_data(cfg, tokenizer, model.config.image_token_id, per_image)
    log(f"data: {stats['samples']} samples -> {len(rows)} kept ({stats['dropped']} without an answer or cut), "
        f"{stats['images']} images x {per_image} image tokens, {stats['tokens']} tokens"
        + ("; pack_to_max_length is ignored for LLaVA" if cfg.pack_to_max_length else ""))

    checkpointing, why_ckpt = use_grad_checkpointing(cfg, model_path, sum(p.numel() for p in model.parameters()))
    log(f"gradient checkpointing {'on' if checkpointing else 'off'} ({why_ckpt})")
    if stage == "pretrain":
        for name, p in model.named_parameters():
            p.requires_grad = f"{PROJECTOR}." in name
    else:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if cfg.method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
        elif cfg.method == "full":
            raise StudioError("method: full is not supported for LLaVA finetuning",
                              hint="use lora or qlora (the tutorial's stage 2)")
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=lora_target_regex(model, list(cfg.lora_target_modules)),
                          modules_to_save=[PROJECTOR, *cfg.lora_modules_to_save], task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, lora)
    if checkpointing:
        model.enable_input_require_grads()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"trainable {trainable:,} of {total:,} ({100 * trainable / total:.2f}%): "
        + ("projector" if stage == "pretrain" else f"projector + {cfg.method} r={cfg.lora_r} on the LLM")
        + "; vision tower frozen")

    # ---- train
    args = training_args(cfg, run_dir, dtype, checkpointing, deepspeed)
    eval_images = _resolve_eval_images(cfg)
    callbacks = [
        RunDirCallback(run_dir, cfg.save_total_limit, stop_flag, is_main),
        EvalSamplesCallback(run_dir, tokenizer, cfg.evaluation_inputs, cfg.SYSTEM, cfg.evaluation_freq,
                            cfg.eval_max_new_tokens, is_main, images=eval_images, processor=processor),
    ]
    trainer = Trainer(model=model, args=args, train_dataset=SFTDataset(rows),
                      data_collator=LlavaCollator(tokenizer.pad_token_id, processor.image_processor),
                      processing_class=processor, callbacks=callbacks)
    ckpt = None
    if resume:
        ckpt = rundir.latest_checkpoint(run_dir) if resume == "latest" else Path(resume)
        log(f"resume: from {ckpt}" if ckpt else "resume: no complete checkpoint yet, starting from the beginning")
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    # ---- save: stage 1 -> model/ (a whole LLaVA folder for stage 2), stage 2 -> adapter/
    stopped = bool(stop_flag.get("stop"))
    if is_main and not stopped:
        out = run_dir / (rundir.FULL_MODEL if stage == "pretrain" else rundir.ADAPTER)
        tmp = out.with_name(out.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        trainer.save_model(str(tmp))
        processor.save_pretrained(str(tmp))
        if stage == "pretrain":
            model.generation_config.save_pretrained(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        log(f"saved {out}")
    return "stopped" if stopped else "finished"


# ---------------------------------------------------------------------------- merge

def _run_eval(adapter: Path) -> tuple[list[str], list[str]]:
    """evaluation_inputs and evaluation_images of the run the adapter came from."""
    for cfg_file in (adapter.parent / "config.yaml", adapter.parent.parent.parent / "config.yaml"):
        if cfg_file.is_file():
            try:
                from core.config import load_config

                cfg = load_config(cfg_file)
                return [p for p in cfg.evaluation_inputs if p.strip()], _resolve_eval_images(cfg)
            except Exception:  # prompts for the check are a nicety; the merge does not depend on them
                return [], []
    return [], []


def _check_image():
    """A fixed picture for the merge check when the run names none."""
    from PIL import Image

    im = Image.new("RGB", (96, 64))
    im.putdata([((x * 5) % 256, (y * 7) % 256, (x * y) % 256) for y in range(64) for x in range(96)])
    return im


def merge_llava(base: str, adapter: str, out: str, *, max_shard_size: str = "2GB", device: str = "auto",
                check: bool = True, prompts: list[str] | None = None, images: list | None = None,
                max_new_tokens: int = 32, **_ignored) -> dict:
    """Merge the LLM LoRA (and the trained projector) into the LLaVA base; save the full model + processor.

    The check compares greedy answers about the run's evaluation images, base+adapter vs the
    merged folder reloaded from disk, token for token.
    """
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from core.merge import attach_for_merge, merge_inputs
    from core.templates import stop_token_ids

    t0 = time.time()
    overwrite = bool(_ignored.get("overwrite", False))
    adapter_dir, base_dir, out_dir, device, dtype = merge_inputs(base, adapter, out, device, overwrite=overwrite)
    processor = AutoProcessor.from_pretrained(base_dir)
    model = LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=dtype).to(device)
    peft_model = attach_for_merge(model, adapter_dir, base_dir)
    run_prompts, run_images = _run_eval(adapter_dir)
    prompts = prompts or run_prompts or ["Please describe this picture"]
    images = images or run_images or [_check_image()]
    cases = [(p, images[i] if i < len(images) else images[0]) for i, p in enumerate(prompts)]
    stops = stop_token_ids(processor.tokenizer, model.generation_config)

    def greedy(m, prompt, image) -> list[int]:
        inputs = llava_inputs(processor, [{"role": "user", "content": prompt}], image, device)
        with torch.no_grad():
            got = m.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops or None,
                             pad_token_id=processor.tokenizer.pad_token_id, use_cache=True)
        return got[0, inputs["input_ids"].shape[1]:].tolist()

    reference = [greedy(peft_model, p, im) for p, im in cases] if check else []
    merged = peft_model.merge_and_unload()
    t_merge = time.time() - t0

    from core.fsio import output_dir

    # the one output-folder rule (core/fsio.py): it replaces only an earlier merge output
    with output_dir(out, kind="merge", overwrite=overwrite, sources=[base_dir, adapter_dir, Path(adapter)],
                    record={"base": str(base_dir), "adapter": str(adapter_dir)}) as tmp:
        merged.save_pretrained(tmp, max_shard_size=max_shard_size)
        processor.save_pretrained(tmp)
        (tmp / "studio_merge.json").write_text(json.dumps(
            {"base": str(base_dir), "adapter": str(adapter_dir), "time": time.time()}, indent=2), encoding="utf-8")
        del merged, model, peft_model
    t_save = time.time() - t0 - t_merge

    report: dict = {"merged": str(out_dir), "base": str(base_dir), "adapter": str(adapter_dir),
                    "dtype": str(dtype).replace("torch.", ""), "layout": "llava",
                    "shards": sorted(p.name for p in out_dir.glob("*.safetensors")),
                    "merge_seconds": round(t_merge, 2), "save_seconds": round(t_save, 2)}
    if check:
        reloaded = LlavaForConditionalGeneration.from_pretrained(out_dir, dtype=dtype).to(device).eval()
        mismatches = []
        for (p, im), ref in zip(cases, reference, strict=True):
            got = greedy(reloaded, p, im)
            if got != ref:
                mismatches.append({"prompt": p, "adapter": processor.tokenizer.decode(ref, skip_special_tokens=True),
                                   "merged": processor.tokenizer.decode(got, skip_special_tokens=True)})
        report["check"] = {"identical": not mismatches, "compared": len(cases), "mismatches": mismatches}
        del reloaded
    report["seconds"] = round(time.time() - t0, 2)
    return report
