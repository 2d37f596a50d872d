"""XTuner .py configs import without being executed; the seed tutorial's config keeps every PART 1 value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import load_config
from core.config.xtuner_import import import_xtuner, parse_xtuner
from core.errors import StudioError

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_ef965c70929c30c6.txt"
if not SEED.is_file():
    SEED = Path("/work/shared/seeds/000_ef965c70929c30c6.txt")


def seed_config(tmp_path: Path) -> Path:
    """The full internlm2_1_8b_qlora_alpaca_e3_copy.py printed in the seed tutorial, cut out of its markdown."""
    if not SEED.is_file():
        pytest.skip("seed tutorial not present")
    text = SEED.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    src = next(b for b in blocks if "PART 1  Settings" in b)
    out = tmp_path / "internlm2_1_8b_qlora_alpaca_e3_copy.py"
    out.write_text(src, encoding="utf-8")
    return out


def test_seed_config_imports_with_every_part1_value(tmp_path) -> None:
    cfg, unmapped, extra = import_xtuner(seed_config(tmp_path))
    # PART 1, as the tutorial edited it
    assert cfg.pretrained_model_name_or_path == "/root/ft/model"
    assert cfg.data_path == "/root/ft/data/personal_assistant.json"
    assert cfg.prompt_template == "default"
    assert cfg.max_length == 1024
    assert cfg.pack_to_max_length is True
    assert cfg.batch_size == 1
    assert cfg.accumulative_counts == 16  # 16 *= sequence_parallel_size (1)
    assert cfg.dataloader_num_workers == 0
    assert cfg.max_epochs == 2
    assert cfg.optim == "adamw_torch"
    assert cfg.lr == pytest.approx(2e-4)
    assert cfg.weight_decay == 0
    assert cfg.max_norm == 1
    assert cfg.warmup_ratio == pytest.approx(0.03)
    assert cfg.save_steps == 300
    assert cfg.save_total_limit == 3
    assert cfg.evaluation_freq == 300
    assert cfg.SYSTEM == ""
    assert cfg.evaluation_inputs == ["请你介绍一下你自己", "你是谁", "你是我的小助手吗"]
    # PART 2/3/5
    assert cfg.method == "qlora"
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (64, 16, 0.1)
    assert cfg.data_format == "openai"  # dataset_map_fn=openai_map_fn
    assert cfg.trust_remote_code is True
    assert cfg.logging_steps == 10
    assert cfg.lr_scheduler == "cosine"
    assert unmapped == []
    assert extra["part1"]["alpaca_en_path"] == "/root/ft/data/personal_assistant.json"
    assert extra["part1"]["betas"] == (0.9, 0.999)
    assert any("torch_dtype" in c for c in extra["changed"])


def test_deepspeed_flag_maps(tmp_path) -> None:
    cfg, _, _ = import_xtuner(seed_config(tmp_path), deepspeed="deepspeed_zero2")
    assert cfg.deepspeed == "zero2"
    cfg, _, _ = import_xtuner(seed_config(tmp_path), deepspeed="deepspeed_zero3_offload.json")
    assert cfg.deepspeed == "zero3_offload"


# A LLaVA finetune config shaped like the tutorial's (seed 000 / 002 edits applied), written for this test.
LLAVA = '''
import torch
from xtuner.utils import PROMPT_TEMPLATE
# PART 1  Settings
llm_name_or_path = '/root/share/new_models/Shanghai_AI_Laboratory/internlm2-chat-1_8b'
visual_encoder_name_or_path = '/root/share/new_models/openai/clip-vit-large-patch14-336'
pretrained_pth = '/root/share/new_models/xtuner/iter_2181.pth'
data_root = '/root/tutorial/xtuner/llava/llava_data/'
data_path = data_root + 'repeated_data.json'
image_folder = data_root
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = int(2048 - (336 / 14)**2)
batch_size = 1  # per_device
accumulative_counts = 1
max_epochs = 1
optim_type = AdamW
lr = 2e-4
evaluation_images = 'https://llava-vl.github.io/static/images/view.jpg'
evaluation_inputs = ['Please describe this picture','What is the equipment in the image?']
# PART 2  Model
model = dict(
    type=LLaVAModel, freeze_llm=True, freeze_visual_encoder=True, pretrained_pth=pretrained_pth,
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llm_name_or_path,
             trust_remote_code=True, torch_dtype=torch.float16,
             quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True, load_in_8bit=False,
                                      bnb_4bit_use_double_quant=True, bnb_4bit_quant_type='nf4')),
    llm_lora=dict(type=LoraConfig, r=512, lora_alpha=256, lora_dropout=0.05, bias='none', task_type='CAUSAL_LM'),
    visual_encoder=dict(type=CLIPVisionModel.from_pretrained, pretrained_model_name_or_path=visual_encoder_name_or_path),
    visual_encoder_lora=dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.05, bias='none'))
llava_dataset = dict(type=LLaVADataset, data_path=data_path, image_folder=image_folder,
                     dataset_map_fn=llava_map_fn,
                     template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
                     max_length=max_length, pad_image_to_square=True)
train_dataloader = dict(batch_size=batch_size, dataset=llava_dataset,
                        sampler=dict(type=LengthGroupedSampler, length_property='modality_length'))
'''


def test_llava_config_imports_and_lists_what_does_not_carry(tmp_path) -> None:
    p = tmp_path / "llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune_copy.py"
    p.write_text(LLAVA, encoding="utf-8")
    cfg, unmapped, _ = import_xtuner(p)
    assert cfg.model_type == "llava" and cfg.llava_stage == "finetune"
    assert cfg.pretrained_model_name_or_path.endswith("internlm2-chat-1_8b")
    assert cfg.visual_encoder_name_or_path.endswith("clip-vit-large-patch14-336")
    assert cfg.data_path == "/root/tutorial/xtuner/llava/llava_data/repeated_data.json"
    assert cfg.image_folder == "/root/tutorial/xtuner/llava/llava_data/"
    assert cfg.max_length == 1472
    assert cfg.method == "qlora" and cfg.lora_r == 512 and cfg.lora_alpha == 256
    assert cfg.data_format == "llava" and cfg.prompt_template == "internlm2_chat"
    assert cfg.evaluation_images == ["https://llava-vl.github.io/static/images/view.jpg"]
    text = "\n".join(unmapped)
    assert "pretrained_pth" in text and "line 7" in text
    assert "visual_encoder_lora" in text


# Seed 001 (InternLM2.5-7B, data already in XTuner's conversation format) and seed 004 (oasst1, PagedAdamW32bit).
SEED001 = '''
pretrained_model_name_or_path = '/root/finetune/models/internlm2_5-7b-chat'
alpaca_en_path = '/root/finetune/data/assistant_Tuner_change.jsonl'
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 2048
pack_to_max_length = True
evaluation_inputs = ['请介绍一下你自己', 'Please introduce yourself']
model = dict(type=SupervisedFinetune,
             llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=pretrained_model_name_or_path,
                      torch_dtype=torch.bfloat16),
             lora=dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.1, bias='none', task_type='CAUSAL_LM'))
alpaca_en = dict(type=process_hf_dataset,
                 dataset=dict(type=load_dataset, path='json', data_files=dict(train=alpaca_en_path)),
                 dataset_map_fn=None,
                 template_map_fn=dict(type=template_map_fn_factory, template=prompt_template))
train_dataloader = dict(batch_size=1, dataset=alpaca_en)
'''

SEED004 = '''
pretrained_model_name_or_path = 'internlm/internlm-20b'
data_path = 'timdettmers/openassistant-guanaco'
prompt_template = PROMPT_TEMPLATE.openassistant
max_length = 2048
batch_size = 1  # per_device
optim_type = PagedAdamW32bit
betas = (0.9, 0.95)
use_varlen_attn = True
mystery_knob = 7
train_dataset = dict(type=process_hf_dataset, dataset=dict(type=load_dataset, path=data_path),
                     dataset_map_fn=oasst1_map_fn)
train_dataloader = dict(batch_size=batch_size, dataset=train_dataset)
'''


def test_conversation_format_config(tmp_path) -> None:
    p = tmp_path / "internlm2_5_chat_7b_qlora_alpaca_e3_copy.py"
    p.write_text(SEED001, encoding="utf-8")
    cfg, unmapped, _ = import_xtuner(p)
    assert cfg.data_format == "xtuner"  # dataset_map_fn=None: the file already is XTuner conversation format
    assert cfg.data_path.endswith("assistant_Tuner_change.jsonl")
    assert cfg.method == "lora" and cfg.torch_dtype == "bfloat16"
    assert unmapped == []


def test_unmappable_settings_are_listed_with_lines(tmp_path) -> None:
    p = tmp_path / "internlm_20b_qlora_oasst1_512_e3_copy.py"
    p.write_text(SEED004, encoding="utf-8")
    cfg, unmapped, extra = import_xtuner(p)
    text = "\n".join(unmapped)
    for name in ("optim_type", "prompt_template", "betas", "use_varlen_attn", "mystery_knob", "dataset_map_fn"):
        assert name in text, name
    assert "line 10: mystery_knob = 7" in text
    assert cfg.prompt_template == "auto" and cfg.optim == "adamw_torch"
    assert cfg.data_path == "timdettmers/openassistant-guanaco"
    assert any("hub data set" in c for c in extra["changed"])


def test_the_file_is_never_executed(tmp_path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.py"
    p.write_text(f"import os\nos.system('touch {marker}')\nopen({str(marker)!r}, 'w')\n"
                 f"pretrained_model_name_or_path = __import__('os').getcwd()\nlr = 1e-4\n", encoding="utf-8")
    env, _ = parse_xtuner(p)
    assert not marker.exists()
    assert env["lr"] == 1e-4
    with pytest.raises(StudioError):  # the model path is a call we refuse to run
        import_xtuner(p)
    assert not marker.exists()


def test_bad_python_names_the_line(tmp_path) -> None:
    p = tmp_path / "broken.py"
    p.write_text("lr = 2e-4\nbatch_size = (1\n", encoding="utf-8")
    with pytest.raises(StudioError, match=r"broken.py:2"):
        import_xtuner(p)


def test_bad_value_names_the_field(tmp_path) -> None:
    p = tmp_path / "bad.py"
    p.write_text("pretrained_model_name_or_path = 'm'\nbatch_size = 0\n", encoding="utf-8")
    with pytest.raises(StudioError, match=r"batch_size.*bad.py:2"):
        import_xtuner(p)


def test_cli_writes_yaml_that_loads_and_prints_unmapped(tmp_path, capsys) -> None:
    from studio.cli import main

    p = tmp_path / "internlm_20b_qlora_oasst1_512_e3_copy.py"
    p.write_text(SEED004, encoding="utf-8")
    out = tmp_path / "run.yaml"
    assert main(["import-xtuner", str(p), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == str(out)
    assert "not imported (" in cap.err and "mystery_knob" in cap.err
    assert "python -m studio train" in cap.err
    cfg = load_config(out)
    assert cfg.pretrained_model_name_or_path == "internlm/internlm-20b"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Imported from XTuner config")
    assert "xtuner train" in text and "mystery_knob" in text


# ---------------------------------------------------------------------------- bounded parsing (issue 19, item 6)

HEAD = "pretrained_model_name_or_path = 'm'\n"
CHILD = """
import sys
from core.config.xtuner_import import parse_xtuner
from core.errors import StudioError
try:
    parse_xtuner(sys.argv[1])
except StudioError as e:
    print(str(e).splitlines()[0])
    sys.exit(3)
"""


def _parse_in_child(path: Path) -> tuple[int, str]:
    """parse_xtuner in a child held to 1 GiB and 20 s: without the limits it hangs or fills memory, and the
    child's death fails the test instead of taking the test run down with it."""
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    repo = Path(__file__).resolve().parents[2]
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=repo, capture_output=True, text=True,
                           timeout=20, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    return r.returncode, (r.stdout + r.stderr).strip()


@pytest.mark.parametrize("expr, shown, why", [
    ("10 ** 10 ** 10", "10 ** 10 ** 10", "power"),
    ("9**9**9", "9**9**9", "power"),
    ("'ab' * 10**8", "'ab' * 10**8", "repetition"),
    ("[0] * 10**9", "[0] * 10**9", "repetition"),
    ("1 + 7 ** 400", "7 ** 400", "power"),  # the part that was refused, not the whole line
    ("2 ** 200 * 2 ** 200", "2 ** 200 * 2 ** 200", "product wider than 256 bits"),
])
def test_big_constants_are_refused_with_line_and_expression(tmp_path, expr, shown, why) -> None:
    p = tmp_path / "bomb.py"
    p.write_text(HEAD + "lr = 2e-4\n" + f"x = {expr}\n", encoding="utf-8")
    rc, out = _parse_in_child(p)
    assert rc == 3, out[-500:]
    assert out.startswith(f"{p}:3: refused to evaluate `{shown}`") and why in out and "\n" not in out


def test_values_grown_through_names_are_bounded(tmp_path) -> None:
    deep = tmp_path / "deep_names.py"  # depth without any deep expression
    deep.write_text(HEAD + "a = [1]\n" + "a = [a]\n" * 200, encoding="utf-8")
    rc, out = _parse_in_child(deep)
    assert rc == 3 and ": refused to evaluate `[a]`: a value nested" in out, out[-500:]
    shared = tmp_path / "shared.py"  # held by reference, small in memory, 180,000 items to show or write
    shared.write_text(HEAD + "a = [1] * 300\nb = [a] * 300\nc = [b, b]\n", encoding="utf-8")
    rc, out = _parse_in_child(shared)
    assert rc == 3 and f"{shared}:4: refused to evaluate `[b, b]`: a value of 180," in out, out[-500:]
    grown = tmp_path / "grown.py"  # each value under the per-value limit, all of them together far over it
    grown.write_text(HEAD + "a = 'x' * 90000\n" + "".join(f"b{i} = a + 'y'\n" for i in range(2000)),
                     encoding="utf-8")
    rc, out = _parse_in_child(grown)
    assert rc == 3 and "in all" in out, out[-500:]


@pytest.mark.parametrize("body, words", [
    ("x = " + "-" * 300 + "1\n", ":2: refused to evaluate `------"),  # the parser takes it; we do not
    ("x = " + "-" * 100_000 + "1\n", "nested too deeply"),  # the parser itself gives up (MemoryError)
    ("x = " + "+".join(["1"] * 100_000) + "\n", "nested too deeply"),  # RecursionError in ast construction
])
def test_deeply_nested_expressions_give_one_line(tmp_path, body, words) -> None:
    p = tmp_path / "nested.py"
    p.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(StudioError) as e:
        parse_xtuner(p)
    assert words in str(e.value) and str(e.value).startswith(str(p))


def test_encodings_by_bom_else_utf8_with_a_line(tmp_path) -> None:
    text = HEAD.replace("'m'", "'/root/模型'") + "lr = 1e-4\n"
    for enc in ("utf-16", "utf-8-sig"):
        p = tmp_path / f"{enc}.py"
        p.write_text(text, encoding=enc)
        env, _ = parse_xtuner(p)
        assert env["pretrained_model_name_or_path"] == "/root/模型" and env["lr"] == 1e-4, enc
    p = tmp_path / "latin1.py"
    p.write_text("lr = 1e-4\nSYSTEM = 'caf\xe9'\n", encoding="latin-1")
    with pytest.raises(StudioError, match=r"latin1.py:2: not UTF-8 text \(byte 0xe9") as e:
        parse_xtuner(p)
    assert "save the file as UTF-8" in str(e.value)
    p = tmp_path / "nul.py"
    p.write_bytes(b"lr = 1\n\0\n")
    with pytest.raises(StudioError, match="nul.py"):
        parse_xtuner(p)


def test_a_long_value_is_shown_cut_short(tmp_path) -> None:
    p = tmp_path / "long.py"
    p.write_text(HEAD + "mystery = 'a' * 50000\n", encoding="utf-8")
    _, unmapped, _ = import_xtuner(p)
    assert len(unmapped) == 1 and unmapped[0].startswith("line 2: mystery = 'aaa") and len(unmapped[0]) < 300


def test_small_constants_still_evaluate(tmp_path) -> None:
    p = tmp_path / "ok.py"
    p.write_text(HEAD + "a = 2 ** 255\nb = -(2 ** 255)\nc = 'ab' * 1000\nd = [0.9] * 2\ne = int(2048 - (336 / 14)**2)\n"
                 "f = round(0.123456, 3)\ng = 2 ** -10\n", encoding="utf-8")
    env, _ = parse_xtuner(p)
    assert env["a"] == 2**255 and env["b"] == -(2**255) and len(env["c"]) == 2000 and env["d"] == [0.9, 0.9]
    assert env["e"] == 1472 and env["f"] == 0.123 and env["g"] == 2**-10


# Real configs from InternLM/xtuner (tests/fixtures/real/xtuner_configs/PROVENANCE.md), imported as they are.
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "xtuner_configs"


def _real(name: str) -> Path:
    p = REAL / name
    if not p.is_file():
        pytest.skip(f"{p} not present (see PROVENANCE.md for where it comes from)")
    return p


def test_real_internlm2_chat_1_8b_qlora_alpaca_imports() -> None:
    cfg, unmapped, _ = import_xtuner(_real("internlm2_chat_1_8b_qlora_alpaca_e3.py"))
    assert cfg.pretrained_model_name_or_path == "internlm/internlm2-chat-1_8b" and cfg.method == "qlora"
    assert (cfg.lora_r, cfg.lora_alpha, cfg.max_length, cfg.max_epochs) == (64, 16, 2048, 3)
    assert cfg.data_path == "tatsu-lab/alpaca" and cfg.data_format == "alpaca" and cfg.logging_steps == 10
    assert [u.split(":")[1].strip().split(" ")[0] for u in unmapped] == ["SYSTEM"]  # SYSTEM_TEMPLATE.alpaca


def test_real_llava_qlora_finetune_imports() -> None:
    cfg, unmapped, _ = import_xtuner(
        _real("llava_internlm2_chat_1_8b_qlora_clip_vit_large_p14_336_lora_e1_gpu8_finetune.py"))
    assert cfg.model_type == "llava" and cfg.llava_stage == "finetune" and cfg.method == "qlora"
    assert cfg.max_length == 1472 and (cfg.lora_r, cfg.lora_alpha) == (512, 256) and cfg.batch_size == 16
    assert cfg.image_folder == "./data/llava_data/llava_images" and cfg.dataloader_num_workers == 4
    text = "\n".join(unmapped)
    assert "pretrained_pth" in text and "visual_encoder_lora" in text


def test_real_full_finetune_with_deepspeed_imports() -> None:
    cfg, unmapped, _ = import_xtuner(_real("internlm2_chat_7b_full_finetune_custom_dataset_e1.py"),
                                     deepspeed="deepspeed_zero3")
    assert cfg.method == "full" and cfg.deepspeed == "zero3" and cfg.max_length == 32768
    assert cfg.pretrained_model_name_or_path == "internlm/internlm2-chat-7b" and cfg.lr == pytest.approx(4e-5)
    assert cfg.data_path == "/path/to/json/file.json"
    assert any("use_varlen_attn" in u for u in unmapped)
