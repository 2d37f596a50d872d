"""core/llava.py and the tiny LLaVA: building, processor (pad to square, image tokens), encoding, LoRA targets.

    .venv/bin/python -m pytest tests/unit/test_llava.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.errors import DataError, StudioError
from core.llava import (
    IMAGE_TOKEN,
    LlavaCollator,
    build_llava_model,
    encode_llava_sample,
    image_token_count,
    llava_inputs,
    load_llava_data,
    lora_target_regex,
    with_image_token,
)
from core.train.dataset import IGNORE


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from core.tiny import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny-llava")


@pytest.fixture(scope="module")
def processor(tiny_llava):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_llava)


@pytest.fixture(scope="module")
def model(tiny_llava):
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(tiny_llava)


def _image(tmp_path: Path, name: str, size=(40, 80), color=(200, 30, 30)) -> Path:
    p = tmp_path / name
    Image.new("RGB", size, color).save(p)
    return p


def test_tiny_llava_keeps_the_tiny_lm_weights(tiny_llava, model, tmp_path):
    from transformers import AutoModelForCausalLM

    from core.tiny import build_tiny_model

    lm = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "lm"))
    ours = model.model.language_model.state_dict()
    for k, v in lm.model.state_dict().items():
        assert torch.equal(ours[k], v), k
    assert torch.equal(model.lm_head.weight, lm.lm_head.weight)
    assert model.config.model_type == "llava" and model.config.image_seq_length == 16
    assert json.loads((tiny_llava / "studio_llava.json").read_text())["image_tokens"] == 16


def test_processor_pads_to_square_with_the_mean_colour(processor, tmp_path):
    ip = processor.image_processor
    assert ip.do_pad and ip.crop_size["height"] == ip.crop_size["width"] == 64
    tall = Image.new("RGB", (20, 80), (255, 0, 0))  # padded left and right to 80x80, then 64x64
    px = ip(tall, return_tensors="pt")["pixel_values"][0]
    assert px.shape == (3, 64, 64)
    # the padding is the CLIP mean colour, which normalises to ~0; the red middle does not
    assert px[:, :, :4].abs().max() < 0.03
    assert px[0, :, 30:34].mean() > 1.0


def test_llava_inputs_put_one_token_per_patch_in_the_user_turn(processor, model, tmp_path):
    img = _image(tmp_path, "a.png")
    inputs = llava_inputs(processor, [{"role": "user", "content": "What is this?"}], img, "cpu")
    ids = inputs["input_ids"][0].tolist()
    n = ids.count(model.config.image_token_id)
    assert n == image_token_count(model.config) == 16
    text = processor.tokenizer.decode(ids)
    assert text.index(IMAGE_TOKEN) > text.index("user") and text.rstrip().endswith("assistant")
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == len(ids) + 3


def test_llava_inputs_refuse_a_missing_image(processor, tmp_path):
    with pytest.raises(StudioError, match="image not found"):
        llava_inputs(processor, [{"role": "user", "content": "hi"}], tmp_path / "none.jpg", "cpu")


def test_with_image_token_adds_the_tag_once_to_the_first_user_turn():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]
    out = with_image_token(msgs)
    assert out[1]["content"] == f"{IMAGE_TOKEN}\nq1" and out[3]["content"] == "q2"
    assert msgs[1]["content"] == "q1"  # the caller's list is not changed
    tagged = [{"role": "user", "content": f"look {IMAGE_TOKEN}"}]
    assert with_image_token(tagged) is tagged


def test_encode_expands_image_tokens_without_loss(processor, tmp_path):
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    sample = {"messages": [{"role": "user", "content": f"{IMAGE_TOKEN}\nWhat is it?"},
                           {"role": "assistant", "content": "An eye exam."}], "images": ["/x.jpg"]}
    enc = encode_llava_sample(tok, sample, 128, "", image_id, 16)
    assert enc["input_ids"].count(image_id) == 16 and enc["images"] == ["/x.jpg"]
    assert all(lab == IGNORE for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if t == image_id)
    answer = tok.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE])
    assert answer.startswith("An eye exam.")
    # truncation that cuts the image tag off drops the sample rather than training on a broken one
    assert encode_llava_sample(tok, sample, 3, "", image_id, 16) is None


def test_data_with_more_tags_than_images_names_the_line(processor, tmp_path):
    img = _image(tmp_path, "a.png")
    data = tmp_path / "d.json"
    data.write_text(json.dumps([
        {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
        {"image": "a.png", "conversations": [{"from": "human", "value": "<image><image>\nq"},
                                             {"from": "gpt", "value": "a"}]},
    ]), encoding="utf-8")
    from core.config import config_from_dict

    cfg = config_from_dict({"model_type": "llava", "pretrained_model_name_or_path": "x", "data_path": str(data)})
    tok = processor.tokenizer
    with pytest.raises(DataError, match="<image>") as e:
        load_llava_data(cfg, tok, tok.convert_tokens_to_ids(IMAGE_TOKEN), 16)
    assert e.value.file == str(data) and e.value.field
    data.write_text(json.dumps([{"image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}]), encoding="utf-8")
    rows, stats = load_llava_data(cfg, tok, tok.convert_tokens_to_ids(IMAGE_TOKEN), 16)
    assert rows[0]["images"] == [str(img.resolve())] and stats["images"] == 1


def test_collator_pads_and_stacks_images_in_row_order(processor, tmp_path):
    a, b = _image(tmp_path, "a.png"), _image(tmp_path, "b.png", (64, 32), (0, 0, 255))
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7], "images": [str(a)]},
            {"input_ids": [5], "labels": [5], "images": [str(b)]},
            {"input_ids": [9, 9], "labels": [9, 9], "images": []}]
    batch = LlavaCollator(0, processor.image_processor)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0], [9, 9, 0]]
    assert batch["labels"][1].tolist() == [5, IGNORE, IGNORE]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["pixel_values"].shape == (2, 3, 64, 64)
    assert batch["pixel_values"][0, 0].mean() > batch["pixel_values"][1, 0].mean()  # red first, then blue
    assert "pixel_values" not in LlavaCollator(0, processor.image_processor)(rows[2:])


def test_lora_targets_only_the_language_model(model):
    import re

    rx = re.compile(lora_target_regex(model, ["all-linear"]))
    hit = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and rx.fullmatch(n)]
    assert hit and all(".language_model." in n for n in hit)
    assert {n.rsplit(".", 1)[-1] for n in hit} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}
    assert not any(rx.fullmatch(n) for n, _ in model.named_modules() if "vision_tower" in n or "projector" in n)
    two = re.compile(lora_target_regex(model, ["q_proj", "v_proj"]))
    assert {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if two.fullmatch(n)} == {"q_proj", "v_proj"}


def test_plain_llm_without_vision_encoder_is_refused(tmp_path):
    from core.config import config_from_dict
    from core.llava import _base_llava
    from core.tiny import build_tiny_model

    lm = build_tiny_model(tmp_path / "lm")
    cfg = config_from_dict({"model_type": "llava", "pretrained_model_name_or_path": str(lm), "data_path": "x"})
    with pytest.raises(StudioError, match="visual_encoder_name_or_path"):
        _base_llava(cfg, print)


def test_build_from_a_full_clip_checkpoint_adds_the_image_token(tmp_path):
    """The tutorial layout: a whole CLIPModel folder (text + vision) and an LLM whose tokenizer lacks <image>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        AutoProcessor,
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        LlavaForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "a", "b", "c", "d", "e", "f"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}<eos>{% endfor %}"
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    clip = CLIPModel(CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 50},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16))
    clip.save_pretrained(tmp_path / "clip")
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                          image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(tmp_path / "clip")

    out = build_llava_model(tmp_path / "lm", tmp_path / "clip", tmp_path / "llava")
    m = LlavaForConditionalGeneration.from_pretrained(out)
    proc = AutoProcessor.from_pretrained(out)
    assert proc.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == 8 == m.config.image_token_id
    assert m.get_input_embeddings().weight.shape[0] == 9
    assert torch.equal(m.get_input_embeddings().weight[:8], lm.get_input_embeddings().weight)
    vis = m.model.vision_tower.state_dict()
    ref = CLIPVisionModel.from_pretrained(tmp_path / "clip").state_dict()
    assert vis.keys() == ref.keys()
    assert all(torch.equal(vis[k], ref[k]) for k in ref)
    assert torch.equal(ref["embeddings.patch_embedding.weight"], clip.vision_model.embeddings.patch_embedding.weight)
    assert list(proc.image_processor.image_mean) == [0.5, 0.5, 0.5] and proc.image_processor.do_pad
    assert image_token_count(m.config) == 16
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert build_llava_model(tmp_path / "lm", tmp_path / "clip", out) == out  # cached: not rebuilt
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_llm_plus_vision_encoder_is_built_once_into_the_workspace(tmp_path):
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    from core.config import config_from_dict
    from core.llava import _base_llava
    from core.models import model_type_of
    from core.tiny import build_tiny_model

    lm = build_tiny_model(tmp_path / "lm")
    clip = tmp_path / "clip"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     image_size=32, patch_size=16)).save_pretrained(clip)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    cfg = config_from_dict({"model_type": "llava", "pretrained_model_name_or_path": str(lm),
                            "visual_encoder_name_or_path": str(clip), "data_path": "x"})
    logs: list[str] = []
    built = _base_llava(cfg, logs.append)
    assert model_type_of(built) == "llava" and built.parent.name == "models" and "building" in logs[0]
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert _base_llava(cfg, logs.append) == built and (built / "model.safetensors").stat().st_mtime_ns == stamp
    # a LLaVA folder is used as it is; the vision encoder setting is then moot
    cfg2 = config_from_dict({**cfg.to_dict(), "pretrained_model_name_or_path": str(built)})
    assert _base_llava(cfg2, logs.append) == built and "ignored" in logs[-1]


def _png_bomb(path: Path, side: int) -> Path:
    """An all-black 1-bit PNG, side x side: tens of KB on disk, side**2 pixels decoded."""
    import struct
    import zlib

    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(b"\x00" + bytes((side + 7) // 8)) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [30_000, 10_000])
def test_collator_refuses_a_decompression_bomb_naming_the_file(tmp_path, side):
    bomb = _png_bomb(tmp_path / "bomb.png", side)
    collate = LlavaCollator(pad_token_id=0, image_processor=None)  # the image is refused before processing
    with pytest.raises(DataError, match=rf"bomb\.png: {side * side:,} pixels is more than the limit"):
        collate([{"input_ids": [1, 2], "labels": [1, 2], "images": [str(bomb)]}])


def test_collator_names_a_file_that_is_not_an_image(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8\xff garbage")
    collate = LlavaCollator(pad_token_id=0, image_processor=None)
    with pytest.raises(DataError, match=r"fake\.jpg: not a readable image"):
        collate([{"input_ids": [1], "labels": [1], "images": [str(fake)]}])
