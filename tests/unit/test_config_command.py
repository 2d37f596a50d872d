"""The equivalent command lines: ours for any config, XTuner's for imported ones."""

from __future__ import annotations

from core.config.command import train_command, xtuner_command
from core.config.recipes import copy_recipe


def test_train_command_for_a_file(tmp_path) -> None:
    f = copy_recipe("tiny_chat_lora_identity_e3", tmp_path / "my cfgs")
    cmd = train_command(f)
    assert cmd == f"python -m studio train '{f}'"
    assert train_command(f, work_dir="runs/a", resume="latest", detach=True).endswith(
        "--work-dir runs/a --resume --detach")
    assert train_command("tiny_chat_lora_identity_e3", n_gpus=2) == \
        "NPROC_PER_NODE=2 python -m studio train tiny_chat_lora_identity_e3"


def test_xtuner_command_matches_the_tutorial() -> None:
    assert xtuner_command("/root/ft/config/internlm2_1_8b_qlora_alpaca_e3_copy.py", work_dir="/root/ft/train",
                          deepspeed="zero2") == (
        "xtuner train /root/ft/config/internlm2_1_8b_qlora_alpaca_e3_copy.py --work-dir /root/ft/train "
        "--deepspeed deepspeed_zero2")
    assert xtuner_command("a.py", deepspeed="deepspeed_zero2.json", n_gpus=8) == \
        "NPROC_PER_NODE=8 xtuner train a.py --deepspeed deepspeed_zero2.json"
    assert xtuner_command("a.py", deepspeed="none") == "xtuner train a.py"
