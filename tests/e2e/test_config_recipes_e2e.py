"""copy-cfg + edit + train on the tiny recipe, and an imported XTuner config training the tiny model (CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import load_config, save_config
from core.config.recipes import copy_recipe

pytestmark = pytest.mark.e2e

SEED = Path("/work/shared/seeds/000_ef965c70929c30c6.txt")


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A fresh workspace as cwd, with the identity data the tiny recipe expects."""
    from core.data import build_identity, write_samples

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path / "workspace"))
    data = tmp_path / "workspace" / "data" / "identity.jsonl"
    data.parent.mkdir(parents=True)
    write_samples(build_identity("小天", "Alice", repeat=1), str(data))
    return tmp_path


def _train(cfg_path: Path, run_dir: Path) -> str:
    entry = pytest.importorskip("core.train.entry")
    return entry.train(load_config(cfg_path), run_dir)


def _adapter_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "adapter").iterdir())


def test_copy_edit_train_tiny(workspace) -> None:
    cfg_path = copy_recipe("tiny_chat_lora_identity_e3", workspace / "configs")
    text = cfg_path.read_text(encoding="utf-8")
    text = text.replace("max_steps: -1", "max_steps: 3").replace("evaluation_freq: 50", "evaluation_freq: 2")
    cfg_path.write_text(text, encoding="utf-8")  # the user's edit
    assert load_config(cfg_path).max_steps == 3
    run = workspace / "workspace" / "runs" / "copy-edit"
    assert _train(cfg_path, run) == "finished"
    assert "adapter_model.safetensors" in _adapter_files(run)


def test_imported_seed_config_trains_tiny(workspace) -> None:
    if not SEED.is_file():
        pytest.skip("seed tutorial not present")
    import torch

    from core.config.xtuner_import import import_header, import_xtuner

    src = next(b for b in re.findall(r"```python\n(.*?)```", SEED.read_text(encoding="utf-8"), flags=re.S)
               if "PART 1  Settings" in b)
    py = workspace / "internlm2_1_8b_qlora_alpaca_e3_copy.py"
    py.write_text(src, encoding="utf-8")
    cfg, unmapped, extra = import_xtuner(py)
    # Swap the model path for the tiny model (and the tutorial's /root data file for ours, same openai format);
    # max_steps keeps it short. QLoRA needs CUDA, so a CPU run trains the same config as LoRA.
    cfg.pretrained_model_name_or_path = "tiny"
    cfg.data_path = "workspace/data/identity.jsonl"
    cfg.max_steps = 2
    cfg.max_length = 256
    if not torch.cuda.is_available():
        cfg.method = "lora"
    out = workspace / "imported.yaml"
    save_config(cfg, out, header=import_header(unmapped, extra))
    run = workspace / "workspace" / "runs" / "imported"
    assert _train(out, run) == "finished"
    assert "adapter_config.json" in _adapter_files(run)
