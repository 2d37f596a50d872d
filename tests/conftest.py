"""Shared fixtures: an isolated workspace per test session, the tiny model built once, and `ws`: a fresh
workspace per test with the tiny model linked in (modules that need another kind define their own `ws`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFDATA = REPO.parent / "shared" / "refdata"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _session_workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("workspace")
    old = os.environ.get("STUDIO_WORKSPACE")
    os.environ["STUDIO_WORKSPACE"] = str(ws)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield ws
    if old is None:
        os.environ.pop("STUDIO_WORKSPACE", None)
    else:
        os.environ["STUDIO_WORKSPACE"] = old


@pytest.fixture(scope="session")
def tiny_model(_session_workspace) -> Path:
    from core.tiny import build_tiny_model

    return build_tiny_model(_session_workspace / "models" / "tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture
def ws(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_model)
    return tmp_path
