"""The recipe gallery: assets/recipes/*.yaml, named the XTuner way (model_method_dataset_epochs).

Same verbs as XTuner: list the gallery, copy one next to your data, edit it, train it.

    python -m studio list-cfg -p internlm2            # like `xtuner list-cfg -p internlm2`
    python -m studio copy-cfg tiny_chat_lora_identity_e3 workspace/configs
    python -m studio train workspace/configs/tiny_chat_lora_identity_e3_copy.yaml

A copy is a byte-for-byte copy, so the header comment and the inline trade-off notes stay with it.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from pathlib import Path

from core.config.schema import ConfigError, RunConfig, load_config
from core.errors import StudioError
from core.fsio import atomic_write_text

RECIPES_DIR = Path(__file__).resolve().parents[2] / "assets" / "recipes"
SUFFIX = ".yaml"


def list_recipes(pattern: str | None = None) -> list[str]:
    """Recipe names, sorted. `pattern` is a case-insensitive substring (or a glob with * ? [)."""
    names = sorted(p.stem for p in RECIPES_DIR.glob(f"*{SUFFIX}"))
    if not pattern:
        return names
    pat = pattern.lower()
    if any(c in pat for c in "*?["):
        return [n for n in names if fnmatch.fnmatch(n.lower(), pat)]
    return [n for n in names if pat in n.lower()]


def recipe_path(name: str) -> Path:
    """The YAML file of a recipe; an unknown name gets the closest names as a hint."""
    name = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    path = RECIPES_DIR / f"{name}{SUFFIX}"
    if os.sep in name or "/" in name or not path.is_file():
        names = list_recipes()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = ("did you mean: " + ", ".join(close)) if close else "see them all: python -m studio list-cfg"
        raise StudioError(f"no recipe named {name!r}", hint)
    return path


def resolve_config(name_or_path: str | os.PathLike) -> Path:
    """A config argument as the CLI takes it: an existing YAML file, else a recipe name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix == ".py":
        raise StudioError(f"{p}: XTuner .py configs are imported, not run",
                          f"python -m studio import-xtuner {p} -o {p.with_suffix('.yaml').name}")
    if p.suffix in (".yaml", ".yml") or len(p.parts) > 1:
        raise ConfigError("config", f"no config file at {p}")
    return recipe_path(str(name_or_path))


def load_recipe(name: str) -> RunConfig:
    """Load and validate a recipe by name (errors name the file and the field)."""
    return load_config(recipe_path(name))


def recipe_header(name: str) -> str:
    """The recipe's leading comment block (what it is, how to launch it), without the '#'."""
    lines = []
    for line in recipe_path(name).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines).strip()


def copy_recipe(name: str, dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy recipe NAME to DIR/NAME_copy.yaml, as `xtuner copy-cfg` does; refuses to clobber edits."""
    src = recipe_path(name)
    out_dir = Path(dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise StudioError(f"{out_dir} is a file, not a folder", "give a folder to copy the recipe into")
    if out_dir.resolve() == RECIPES_DIR.resolve():
        raise StudioError(f"{out_dir} is the recipe gallery itself", "copy the recipe into a folder of your own")
    dst = out_dir / f"{src.stem}_copy{SUFFIX}"
    if dst.is_symlink() or (dst.exists() and not dst.is_file()):
        # --force replaces a file this command wrote, never a folder or what a link points at
        raise StudioError(f"{dst} exists and is not a plain file", "choose another folder")
    if dst.exists() and not overwrite:
        raise StudioError(f"{dst} already exists (it may hold your edits)",
                          "edit that file, delete it, or copy with --force to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(dst, src.read_text(encoding="utf-8"))
