"""Space bundle: app.py filled in safely, pinned requirements, README front matter. `pytest tests/unit/test_publish_space.py`"""

import ast
import re

import pytest
import yaml

from core.errors import StudioError
from core.publish import space_bundle
from core.publish.space import ASSETS, REQUIREMENTS


def _constants(app: str) -> dict:
    out = {}
    for node in ast.parse(app).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            out[node.targets[0].id] = node.value.value
    return out


def _front(readme: str) -> dict:
    return yaml.safe_load(readme[4:readme.index("\n---", 4)])


def _ours() -> dict:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", REQUIREMENTS.read_text(), re.M))


def test_gradio_bundle_for_hugging_face(tmp_path):
    title = 'Xiao "Tian"\nassistant'
    system = "You are 小天. Don't say \\n or \"quotes\"."
    paths = space_bundle(tmp_path, model_repo_id="alice/xiaotian", hub="hf", title=title, system_prompt=system)
    assert sorted(p.name for p in paths) == ["README.md", "app.py", "requirements.txt"]
    app = (tmp_path / "app.py").read_text()
    consts = _constants(app)  # also proves the filled-in file is valid Python
    assert consts["MODEL_ID"] == "alice/xiaotian"
    assert consts["HUB"] == "hf"
    assert consts["TITLE"] == title
    assert consts["SYSTEM_PROMPT"] == system
    assert "__MODEL_ID__" not in app

    reqs = (tmp_path / "requirements.txt").read_text().split()
    ours = _ours()
    for name in ("torch", "transformers", "peft", "gradio", "huggingface_hub"):
        assert f"{name}=={ours[name]}" in reqs
    assert "transformers==5.23.0" in reqs
    assert not any(r.startswith("modelscope") for r in reqs)

    front = _front((tmp_path / "README.md").read_text())
    assert front["sdk"] == "gradio" and front["sdk_version"] == ours["gradio"]
    assert front["app_file"] == "app.py" and front["title"] == title
    assert front["models"] == ["alice/xiaotian"]


def test_streamlit_bundle_for_modelscope_with_remote_code(tmp_path):
    space_bundle(tmp_path, model_repo_id="alice/xiaotian", hub="modelscope", sdk="streamlit", remote_code=True)
    consts = _constants((tmp_path / "app.py").read_text())
    assert consts["HUB"] == "modelscope"
    reqs = (tmp_path / "requirements.txt").read_text().split()
    assert "modelscope==1.40.2" in reqs and "streamlit==1.67.0" in reqs
    assert any(r.startswith("sentencepiece==") for r in reqs)
    front = _front((tmp_path / "README.md").read_text())
    assert front["deployspec"]["entry_file"] == "app.py" and front["sdk"] == "streamlit"


@pytest.mark.parametrize("name", ["app_gradio.py", "app_streamlit.py"])
def test_templates_use_public_apis_only(name):
    src = (ASSETS / name).read_text()
    ast.parse(src)
    assert "TextIteratorStreamer" in src and "apply_chat_template" in src
    assert "generation.utils" not in src and "92542" not in src  # the tutorial's private API and fixed EOS id
    assert ".cuda()" not in src  # CPU fallback: the device is chosen, never assumed


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(StudioError, match="model_repo_id"):
        space_bundle(tmp_path, model_repo_id="no-owner")
    with pytest.raises(StudioError, match="sdk"):
        space_bundle(tmp_path, model_repo_id="a/b", sdk="docker")
    with pytest.raises(StudioError, match="hub"):
        space_bundle(tmp_path, model_repo_id="a/b", hub="github")
    assert not (tmp_path / "app.py").exists()
