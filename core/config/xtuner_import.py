"""Import an XTuner .py config into a RunConfig, without executing it.

XTuner configs are Python files (PART 1 settings, then mmengine dicts for the model, dataset,
optimizer and hooks). Running them would import xtuner, mmengine and bitsandbytes and execute
arbitrary code, so we parse the file with `ast` and evaluate only literals, names defined earlier
in the file, arithmetic and `dict(...)`; everything else (imported classes, `PROMPT_TEMPLATE.x`,
`torch.float16`) becomes a Symbol we read by name.

    python -m studio import-xtuner internlm2_1_8b_qlora_alpaca_e3_copy.py -o my_run.yaml

Every setting that has no equivalent is listed (and written as a comment in the YAML).

Evaluation is bounded (LIMITS below): a config holds small constants, so `9**9**9`, `'ab' * 10**8`, a
1,000-deep expression or a value that would take seconds to build is refused with its line and
expression instead of being computed.
"""

from __future__ import annotations

import ast
import codecs
import operator
import os
import reprlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config.schema import TEMPLATES, ConfigError, RunConfig, config_from_dict
from core.errors import StudioError

# ---------------------------------------------------------------------------- safe evaluation

# What one config may make us compute. Real XTuner configs are ~8 KB of small constants
# (lr = 2e-4, max_length = int(2048 - (336 / 14)**2)); these bounds are far above any of them and
# far below what would take a second or a few MB to build.
MAX_SOURCE_BYTES = 1 << 20  # the .py file itself
MAX_INT_BITS = 256  # |int| < 2**256 (pow and * are checked before they are computed)
MAX_VALUE_SIZE = 100_000  # characters of a string, items of a list/dict, nested ones counted each time
MAX_TOTAL_SIZE = 2_000_000  # everything the file builds, together
MAX_DEPTH = 50  # nesting of an expression, or of a value built up through names
MAX_SECONDS = 5.0
LIMITS = {"source bytes": MAX_SOURCE_BYTES, "int bits": MAX_INT_BITS, "value size": MAX_VALUE_SIZE,
          "total size": MAX_TOTAL_SIZE, "depth": MAX_DEPTH, "seconds": MAX_SECONDS}


class _Refused(Exception):
    """An expression beyond LIMITS; parse_xtuner turns it into a one-line StudioError with the line."""

    def __init__(self, node: ast.AST, why: str):
        super().__init__(why)
        self.node, self.why = node, why


@dataclass(frozen=True)
class Symbol:
    """A name we do not evaluate: an imported class, `torch.float16`, `PROMPT_TEMPLATE.default`."""

    name: str

    def __repr__(self) -> str:
        return self.name

    @property
    def last(self) -> str:
        return self.name.split(".")[-1]


@dataclass(frozen=True)
class Call:
    """A call we do not run (other than dict/int/float/...), kept as its function and arguments."""

    func: Any
    args: tuple
    kwargs: tuple

    def __repr__(self) -> str:
        return f"{self.func}(...)"


@dataclass(frozen=True)
class Unknown:
    """An expression we could not evaluate; `src` is its source text."""

    src: str

    def __repr__(self) -> str:
        return self.src


_SRC_SHOWN = 300  # an Unknown keeps this much of its source text (it is only ever shown)

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SAFE_CALLS = {"int": int, "float": float, "str": str, "bool": bool, "min": min, "max": max, "round": round}


def _plain(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool, type(None)))


class _Evaluator:
    def __init__(self, src: str):
        self.src = src
        self.env: dict[str, Any] = {}
        self.depth = 0
        self.total = 0
        self.deadline = time.monotonic() + MAX_SECONDS
        # id -> (value, size, depth) of every value built so far; the value is held so its id stays unique
        self.measured: dict[int, tuple[Any, int, int]] = {}

    def unknown(self, node: ast.AST) -> Unknown:
        text = ast.get_source_segment(self.src, node) or type(node).__name__
        return Unknown(text if len(text) <= _SRC_SHOWN else text[:_SRC_SHOWN] + "...")

    def measure(self, v: Any) -> tuple[int, int]:
        """(size, depth) of a value: characters + items, nested ones counted each time they appear."""
        hit = self.measured.get(id(v))
        if hit is not None and hit[0] is v:
            return hit[1], hit[2]
        if isinstance(v, (str, Unknown)):
            size, depth = len(v if isinstance(v, str) else v.src) + 1, 0
        elif isinstance(v, Symbol):
            size, depth = len(v.name) + 1, 0
        elif isinstance(v, (list, tuple, dict, Call)):
            if isinstance(v, dict):
                parts = [*v.keys(), *v.values()]
            elif isinstance(v, Call):
                parts = [v.func, *v.args, *(x for _, x in v.kwargs)]
            else:
                parts = list(v)
            size, depth = 1, 0
            for x in parts:
                s, d = self.measure(x)
                size, depth = size + s, max(depth, d + 1)
        else:
            size, depth = 1, 0
        self.measured[id(v)] = (v, size, depth)
        return size, depth

    def check(self, node: ast.AST, v: Any) -> Any:
        """Refuse a value beyond LIMITS (an int too wide, a string or list too long, nested too deep)."""
        if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
            raise _Refused(node, f"an integer wider than {MAX_INT_BITS} bits")
        if _plain(v) and not isinstance(v, str):
            return v
        new = id(v) not in self.measured
        size, depth = self.measure(v)
        if size > MAX_VALUE_SIZE:
            raise _Refused(node, f"a value of {size:,} items/characters (the limit is {MAX_VALUE_SIZE:,})")
        if depth > MAX_DEPTH:
            raise _Refused(node, f"a value nested {depth} deep (the limit is {MAX_DEPTH})")
        if new:
            self.total += size
            if self.total > MAX_TOTAL_SIZE:
                raise _Refused(node, f"the file builds more than {MAX_TOTAL_SIZE:,} items/characters in all")
        return v

    def _size_of(self, v: Any) -> int:
        return len(v) if isinstance(v, str) else self.measure(v)[0]

    def _precheck(self, node: ast.AST, op: ast.operator, a: Any, b: Any) -> None:
        """Refuse `x ** n`, `x * n` and `'%...' % x` whose result would be too big, before computing it."""
        ints = isinstance(a, int) and isinstance(b, int)
        # |a| >= 2**(bits - 1), so a**b has more than (bits - 1) * b bits; below that bound it is cheap to compute
        # and check() looks at the exact result
        if isinstance(op, ast.Pow) and ints and b > 0 and (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
            raise _Refused(node, f"a power of more than {(abs(a).bit_length() - 1) * b:,} bits "
                                 f"(the limit is {MAX_INT_BITS})")
        if isinstance(op, ast.Mult):
            if ints and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
                raise _Refused(node, f"a product wider than {MAX_INT_BITS} bits")
            for seq, n in ((a, b), (b, a)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and n > 0:
                    size = self._size_of(seq) * n
                    if size > MAX_VALUE_SIZE:
                        raise _Refused(node, f"a repetition of {size:,} items/characters "
                                             f"(the limit is {MAX_VALUE_SIZE:,})")

    def eval(self, node: ast.AST) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(node, f"an expression nested more than {MAX_DEPTH} deep")
            if time.monotonic() > self.deadline:
                raise _Refused(node, f"evaluating the file took more than {MAX_SECONDS:g} s")
            return self.check(node, self._eval(node))
        finally:
            self.depth -= 1

    def _eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.env.get(node.id, Symbol(node.id))
        if isinstance(node, ast.Attribute):
            base = self.eval(node.value)
            if isinstance(base, Symbol):
                return Symbol(f"{base.name}.{node.attr}")
            return self.unknown(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.eval(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return {self.eval(k) if k is not None else "**": self.eval(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            v = self.eval(node.operand)
            if isinstance(v, (int, float)) and not isinstance(node.op, ast.Not):
                return -v if isinstance(node.op, ast.USub) else v
            if _plain(v) and isinstance(node.op, ast.Not):
                return not v
            return self.unknown(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = self.eval(node.left), self.eval(node.right)
            if isinstance(node.op, ast.Mod) and isinstance(a, str):
                return self.unknown(node)  # '%999999999d' % 1: formatting is never needed for a setting
            if _plain(a) and _plain(b) and a is not None and b is not None:
                self._precheck(node, node.op, a, b)
                try:
                    return _BINOPS[type(node.op)](a, b)
                except Exception:  # noqa: BLE001 - e.g. 'a' - 1: not evaluable, kept as text
                    return self.unknown(node)
            if isinstance(a, list) and isinstance(b, list) and isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Mult) and any(isinstance(x, (list, tuple)) for x in (a, b)) \
                    and any(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)):
                self._precheck(node, node.op, a, b)
                return a * b
            return self.unknown(node)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
            a, b = self.eval(node.left), self.eval(node.comparators[0])
            if _plain(a) and _plain(b):
                try:
                    return _CMP[type(node.ops[0])](a, b)
                except TypeError:
                    pass
            return self.unknown(node)
        if isinstance(node, ast.IfExp):
            test = self.eval(node.test)
            if _plain(test):
                return self.eval(node.body if test else node.orelse)
            return self.unknown(node)
        if isinstance(node, ast.Call):
            func = self.eval(node.func)
            args = tuple(self.eval(a) for a in node.args)
            kwargs = {kw.arg: self.eval(kw.value) for kw in node.keywords if kw.arg}
            if isinstance(func, Symbol) and func.name == "dict" and not args:
                return kwargs
            if isinstance(func, Symbol) and func.name in _SAFE_CALLS and all(_plain(a) for a in args) and not kwargs:
                if func.name == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 100:
                    return self.unknown(node)  # round(5, -10**50) computes 10**(10**50)
                try:
                    return _SAFE_CALLS[func.name](*args)
                except Exception:  # noqa: BLE001
                    return self.unknown(node)
            return Call(func, args, tuple(kwargs.items()))
        return self.unknown(node)

    def run(self, tree: ast.Module) -> dict[str, int]:
        """Evaluate the module's top-level statements; returns name -> line of its (last) assignment."""
        lines: dict[str, int] = {}
        self._block(tree.body, lines)
        return lines

    def _block(self, body: list[ast.stmt], lines: dict[str, int]) -> None:
        self.depth += 1
        try:
            self._statements(body, lines)
        finally:
            self.depth -= 1

    def _statements(self, body: list[ast.stmt], lines: dict[str, int]) -> None:
        for st in body:
            if isinstance(st, ast.Assign):
                value = self.eval(st.value)
                for t in st.targets:
                    if isinstance(t, ast.Name):
                        self.env[t.id] = value
                        lines[t.id] = st.lineno
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                self.env[st.target.id] = self.eval(st.value)
                lines[st.target.id] = st.lineno
            elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
                fake = ast.BinOp(left=ast.Name(id=st.target.id, ctx=ast.Load()), op=st.op, right=st.value)
                ast.copy_location(fake, st)
                self.env[st.target.id] = self.eval(fake)
                lines[st.target.id] = st.lineno
            elif isinstance(st, ast.If):
                test = self.eval(st.test)
                if _plain(test):  # only branches we can decide; `if use_varlen_attn:` with False is skipped
                    self._block(st.body if test else st.orelse, lines)


# ---------------------------------------------------------------------------- mapping tables

_MAP_FN_FORMAT = {"openai_map_fn": "openai", "alpaca_map_fn": "alpaca", "alpaca_zh_map_fn": "alpaca",
                  "llava_map_fn": "llava", "pretrain_map_fn": "pretrain_text", None: "xtuner"}
_OPTIM = {"AdamW": "adamw_torch", "SGD": "sgd", "PagedAdamW8bit": "paged_adamw_8bit", "AdamW8bit": "adamw_8bit"}
_DTYPE = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}
_DS = {"deepspeed_zero1": "zero1", "deepspeed_zero2": "zero2", "deepspeed_zero2_offload": "zero2_offload",
       "deepspeed_zero3": "zero3", "deepspeed_zero3_offload": "zero3_offload"}

# PART 1 names that map 1:1 onto a RunConfig field of the same name.
_SAME = ("max_length", "pack_to_max_length", "batch_size", "accumulative_counts", "dataloader_num_workers",
         "max_epochs", "lr", "weight_decay", "max_norm", "warmup_ratio", "save_steps", "save_total_limit",
         "evaluation_freq", "SYSTEM", "evaluation_inputs", "evaluation_images", "visual_encoder_name_or_path",
         "image_folder", "pretrained_model_name_or_path")
# Names whose value, when equal to this, is what the studio does anyway.
_DEFAULTS_OK = {"use_varlen_attn": False, "sequence_parallel_size": 1, "betas": (0.9, 0.999), "visualizer": None,
                "log_level": "INFO", "load_from": None, "resume": False, "max_iters": None}
# Structures XTuner wires together below PART 1; we read what we need from them.
_STRUCTURE = {"tokenizer", "model", "image_processor", "train_dataloader", "sampler", "optim_wrapper",
              "param_scheduler", "train_cfg", "custom_hooks", "default_hooks", "env_cfg", "randomness",
              "log_processor", "optim_type", "prompt_template", "data_root", "data_path", "llm_name_or_path",
              "pretrained_pth", "evaluation_images", "strategy", "runner_type", "deepspeed"}


def _get(d: Any, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, dict) else default


def _typename(v: Any) -> str | None:
    t = _get(v, "type")
    if isinstance(t, Symbol):
        return t.last
    return None


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 120
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 12
_SHORT.maxlevel = 4


def _fmt(v: Any) -> str:
    """A value as the message shows it: the repr, cut short (a value may be up to MAX_VALUE_SIZE long)."""
    return _SHORT.repr(v)


class _Mapper:
    def __init__(self, env: dict[str, Any], lines: dict[str, int], path: str):
        self.env, self.lines, self.path = env, lines, path
        self.out: dict[str, Any] = {}
        self.unmapped: list[str] = []
        self.changed: list[str] = []
        self.used: set[str] = set()

    def miss(self, name: str, value: Any, why: str) -> None:
        line = self.lines.get(name.split(".")[0])
        where = f"line {line}: " if line else ""
        self.unmapped.append(f"{where}{name} = {_fmt(value)}: {why}")

    def take(self, name: str) -> Any:
        self.used.add(name)
        return self.env.get(name)

    # -- PART 1
    def part1(self) -> None:
        for name in _SAME:
            if name in self.env:
                v = self.take(name)
                if isinstance(v, (Symbol, Call, Unknown)):
                    if name == "SYSTEM":
                        self.miss(name, v, "XTuner's SYSTEM_TEMPLATE texts are not bundled; paste the text you want")
                    else:
                        self.miss(name, v, "not a value we can read without running the file")
                    continue
                self.out[name] = v
        if "evaluation_images" in self.out and isinstance(self.out["evaluation_images"], str):
            self.out["evaluation_images"] = [self.out["evaluation_images"]]
        if "llm_name_or_path" in self.env and "pretrained_model_name_or_path" not in self.out:
            self.out["pretrained_model_name_or_path"] = self.take("llm_name_or_path")
        for name, ok in _DEFAULTS_OK.items():
            if name in self.env:
                v = self.take(name)
                if v != ok and not (isinstance(ok, tuple) and isinstance(v, list) and tuple(v) == ok):
                    self.miss(name, v, f"not supported; the studio runs with {name} = {ok!r}")
        pt = self.take("prompt_template")
        if pt is not None:
            self._template(pt)
        optim = self.take("optim_type")
        if optim is not None:
            name = optim.last if isinstance(optim, Symbol) else str(optim)
            if name in _OPTIM:
                self.out["optim"] = _OPTIM[name]
            else:
                self.out["optim"] = "adamw_torch"
                self.miss("optim_type", optim, "no such optimizer here; using adamw_torch (paged_adamw_8bit saves memory)")
        if "pretrained_pth" in self.env:
            v = self.take("pretrained_pth")
            if v is not None:
                self.miss("pretrained_pth", v, "XTuner .pth projector weights are not loaded; start from a LLaVA "
                          "model folder (xtuner convert pth_to_hf) or train the pretrain stage here")

    def _template(self, pt: Any) -> None:
        name = pt.last if isinstance(pt, Symbol) else str(pt)
        if name in TEMPLATES:
            self.out["prompt_template"] = name
        else:
            self.out["prompt_template"] = "auto"
            self.miss("prompt_template", pt, "no such template here; using the tokenizer's own chat template (auto)")

    # -- PART 2
    def model(self) -> None:
        model = self.take("model")
        if not isinstance(model, dict):
            return
        mtype = _typename(model)
        if mtype == "LLaVAModel":
            self.out["model_type"] = "llava"
            self.out["llava_stage"] = "finetune" if (_get(model, "llm_lora") or not _get(model, "freeze_llm", True)) \
                else "pretrain"
            if _get(model, "freeze_visual_encoder", True) is not True:
                self.miss("model.freeze_visual_encoder", False, "the vision tower always stays frozen here")
            if _get(model, "visual_encoder_lora"):
                self.miss("model.visual_encoder_lora", _get(model, "visual_encoder_lora"),
                          "LoRA on the vision tower is not supported; only the LLM gets LoRA")
        elif mtype not in ("SupervisedFinetune", None):
            self.miss("model.type", model.get("type"), "only SupervisedFinetune and LLaVAModel are imported")
        llm = _get(model, "llm", {})
        path = _get(llm, "pretrained_model_name_or_path")
        if isinstance(path, str) and not self.out.get("pretrained_model_name_or_path"):
            self.out["pretrained_model_name_or_path"] = path
        if _get(llm, "trust_remote_code") is not None:
            self.out["trust_remote_code"] = bool(_get(llm, "trust_remote_code"))
        dt = _get(llm, "torch_dtype")
        if isinstance(dt, Symbol) and dt.last in _DTYPE:
            # XTuner trains fp16 weights under AMP because that is what every GPU has; auto picks bf16 where
            # the GPU supports it, which is the safer choice for the same run.
            if dt.last == "float16":
                self.out["torch_dtype"] = "auto"
                self.changed.append("model.llm.torch_dtype = torch.float16 -> torch_dtype: auto "
                                    "(bf16 on GPUs that have it, else fp16/fp32); set float16 to force it")
            else:
                self.out["torch_dtype"] = _DTYPE[dt.last]
        q = _get(llm, "quantization_config")
        lora = _get(model, "lora") or _get(model, "llm_lora")
        if isinstance(q, dict) and q.get("load_in_4bit"):
            self.out["method"] = "qlora"
            for k, ok in (("bnb_4bit_quant_type", "nf4"), ("bnb_4bit_use_double_quant", True), ("load_in_8bit", False)):
                if k in q and q[k] != ok:
                    self.miss(f"model.llm.quantization_config.{k}", q[k], f"QLoRA here always uses {k} = {ok!r}")
        elif isinstance(q, dict) and q.get("load_in_8bit"):
            self.out["method"] = "lora"
            self.miss("model.llm.quantization_config.load_in_8bit", True, "8-bit training is not supported; "
                      "imported as lora (16-bit base); use qlora for a 4-bit base")
        else:
            self.out["method"] = "lora" if isinstance(lora, dict) else "full"
        if self.out.get("model_type") == "llava" and not isinstance(lora, dict) and "method" in self.out:
            self.out["method"] = "qlora" if self.out["method"] == "qlora" else "lora"
        if isinstance(lora, dict):
            for src, dst in (("r", "lora_r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout")):
                if _plain(lora.get(src)) and lora.get(src) is not None:
                    self.out[dst] = lora[src]
            tm = lora.get("target_modules")
            if isinstance(tm, (list, tuple)) and all(isinstance(t, str) for t in tm):
                self.out["lora_target_modules"] = list(tm)
            elif isinstance(tm, str):
                self.out["lora_target_modules"] = [tm]
            if lora.get("bias", "none") != "none":
                self.miss("model.lora.bias", lora.get("bias"), "LoRA bias training is not supported (bias='none')")
            if lora.get("modules_to_save"):
                self.out["lora_modules_to_save"] = list(lora["modules_to_save"])
        self.used.update({"tokenizer", "image_processor"})

    # -- PART 3
    def dataset(self) -> None:
        dl = self.take("train_dataloader")
        ds = _get(dl, "dataset")
        if isinstance(ds, dict) and _typename(ds) == "ConcatDataset":
            parts = ds.get("datasets") or []
            if len(parts) > 1:
                self.miss("train_dataloader.dataset", ds, f"{len(parts)} datasets are concatenated; the first "
                          "is imported (merge the files with python -m studio data convert)")
            ds = parts[0] if parts else {}
        for name, v in self.env.items():  # the dataset's own variable name (alpaca_en, llava_dataset, ...)
            if v is ds:
                self.used.add(name)
        if not isinstance(ds, dict):
            return
        inner = ds.get("dataset")
        data = None
        if isinstance(inner, dict):
            files = inner.get("data_files")
            if isinstance(files, dict):
                data = files.get("train")
            elif isinstance(files, (str, list)):
                data = files
            if data is None:
                data = inner.get("path")
                if isinstance(data, str) and not os.path.splitext(data)[1]:
                    self.changed.append(f"data path {data!r} is a hub data set name: download it, or point "
                                        "data_path at a local file")
        elif "data_path" in ds:
            data = ds["data_path"]
        if isinstance(data, list):
            if len(data) > 1:
                self.miss("dataset.data_files", data, "several files: the first is imported")
            data = data[0] if data else None
        if isinstance(data, str):
            self.out["data_path"] = data
            self.used.update(n for n, v in self.env.items() if v == data)  # alpaca_en_path and friends
        elif data is not None:
            self.miss("dataset.data_files", data, "not a path we can read without running the file")
        if isinstance(ds.get("image_folder"), str):
            self.out["image_folder"] = ds["image_folder"]
        if "dataset_map_fn" in ds:
            fn = ds["dataset_map_fn"]
            key = fn.last if isinstance(fn, Symbol) else fn
            if key in _MAP_FN_FORMAT:
                self.out["data_format"] = _MAP_FN_FORMAT[key]
            else:
                self.out["data_format"] = "auto"
                self.miss("dataset.dataset_map_fn", fn, "custom map functions are not run; the format is detected "
                          "from the data (use data_mapping for renamed fields)")
        tmf = ds.get("template_map_fn")
        if isinstance(tmf, dict) and tmf.get("template") is not None and "prompt_template" not in self.out:
            self._template(tmf["template"])
        if "shuffle_before_pack" in ds and ds["shuffle_before_pack"] is False:
            self.miss("dataset.shuffle_before_pack", False, "samples are always shuffled before packing")
        for k in ("max_length", "pack_to_max_length"):
            if _plain(ds.get(k)) and ds.get(k) is not None and k not in self.out:
                self.out[k] = ds[k]
        sampler = _get(dl, "sampler")
        if isinstance(sampler, dict) and sampler.get("shuffle") is False:
            self.out["shuffle"] = False
        self.used.add("sampler")

    # -- PART 4 / 5
    def schedule(self) -> None:
        ow = self.take("optim_wrapper")
        opt = _get(ow, "optimizer")
        opt = opt if isinstance(opt, dict) else {}
        for k, dst in (("lr", "lr"), ("weight_decay", "weight_decay")):
            if dst not in self.out and _plain(opt.get(k)) and opt.get(k) is not None:
                self.out[dst] = opt[k]
        clip = _get(ow, "clip_grad")
        if "max_norm" not in self.out and isinstance(clip, dict) and _plain(clip.get("max_norm")):
            self.out["max_norm"] = clip["max_norm"]
        if "accumulative_counts" not in self.out and isinstance(_get(ow, "accumulative_counts"), int):
            self.out["accumulative_counts"] = ow["accumulative_counts"]
        sched = self.take("param_scheduler")
        names = [_typename(s) for s in sched] if isinstance(sched, list) else []
        if names and names[-1] == "CosineAnnealingLR":
            self.out["lr_scheduler"] = "cosine"
        elif names and names[-1] in ("LinearLR",) and len(names) > 1:
            self.out["lr_scheduler"] = "linear"
        elif names and names[-1] == "ConstantLR":
            self.out["lr_scheduler"] = "constant"
        elif names:
            self.miss("param_scheduler", names, "imported as warmup + cosine")
        tc = self.take("train_cfg")
        if isinstance(tc, dict):
            if "max_epochs" not in self.out and _plain(tc.get("max_epochs")) and tc.get("max_epochs"):
                self.out["max_epochs"] = tc["max_epochs"]
            if _plain(tc.get("max_iters")) and tc.get("max_iters"):
                self.out["max_steps"] = int(tc["max_iters"])
        hooks = self.take("default_hooks")
        logger = _get(hooks, "logger", {})
        if isinstance(_get(logger, "interval"), int):
            self.out["logging_steps"] = logger["interval"]
        rnd = self.take("randomness")
        if isinstance(_get(rnd, "seed"), int):
            self.out["seed"] = rnd["seed"]
        for h in self.take("custom_hooks") or []:
            if _typename(h) == "EvaluateChatHook":
                for src, dst in (("every_n_iters", "evaluation_freq"), ("evaluation_inputs", "evaluation_inputs"),
                                 ("system", "SYSTEM")):
                    if dst not in self.out and isinstance(h.get(src), (int, str, list)):
                        self.out[dst] = h[src]
        strategy = self.take("strategy")
        ds_cfg = _get(strategy, "config") if _typename(strategy) == "DeepSpeedStrategy" else None
        stage = _get(_get(ds_cfg, "zero_optimization"), "stage")
        if isinstance(stage, int) and 1 <= stage <= 3:
            self.out["deepspeed"] = f"zero{stage}"
        ds_var = self.take("deepspeed")
        if isinstance(ds_var, str):
            self._deepspeed(ds_var)

    def _deepspeed(self, value: str) -> None:
        key = Path(value).stem
        if key in _DS:
            self.out["deepspeed"] = _DS[key]
        elif key in _DS.values():
            self.out["deepspeed"] = key
        elif key and key != "none":
            self.miss("deepspeed", value, f"unknown DeepSpeed config; use one of {', '.join(_DS)}")

    def leftovers(self) -> None:
        for name, v in self.env.items():
            if name in self.used or name in _STRUCTURE or name in _SAME or name.startswith("_"):
                continue
            if name in self.out:
                continue
            if isinstance(v, Symbol) and v.name == name:
                continue
            self.miss(name, v, "no equivalent setting here")


# ---------------------------------------------------------------------------- public API

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_source(path: Path) -> str:
    """The config's text: UTF-16 / UTF-8 by their BOM, else UTF-8; anything else is a one-line error."""
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise StudioError(f"{path}: {size:,} bytes; an XTuner config is a few KB (the limit is {MAX_SOURCE_BYTES:,})",
                          "give the .py file `xtuner copy-cfg` wrote")
    data = path.read_bytes()[:MAX_SOURCE_BYTES + 1]
    enc = next((e for bom, e in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(enc)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1 if enc == "utf-8" else None
        where = f"{path}:{line}" if line else str(path)
        raise StudioError(f"{where}: not {enc.upper()} text (byte 0x{data[e.start]:02x} cannot be decoded)",
                          "save the file as UTF-8 (most editors: File > Save with Encoding)") from None


def parse_xtuner(py_path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, int]]:
    """The top-level variables of an XTuner config, evaluated safely (name -> value), and their lines.

    lines["__part2__"] is the line where PART 2 starts (0 when the file has no such banner).
    """
    path = Path(py_path)
    if not path.is_file():
        raise StudioError(f"no XTuner config at {path}", "give the .py file `xtuner copy-cfg` wrote")
    src = read_source(path)
    try:
        tree = ast.parse(src, filename=str(path))
    except SyntaxError as e:
        raise StudioError(f"{path}{f':{e.lineno}' if e.lineno else ''}: not valid Python ({e.msg})",
                          "fix the line the error points at (a missing comma or quote, usually)") from None
    except ValueError as e:  # NUL bytes
        raise StudioError(f"{path}: not a Python text file ({e})", "give the .py file `xtuner copy-cfg` wrote") from None
    except (RecursionError, MemoryError):
        raise StudioError(f"{path}: an expression is nested too deeply for Python's parser",
                          "an XTuner config holds plain settings; remove the deeply nested expression") from None
    ev = _Evaluator(src)
    try:
        lines = ev.run(tree)
    except _Refused as e:
        expr = ast.get_source_segment(src, e.node) or type(e.node).__name__
        expr = " ".join(expr.split())
        expr = expr if len(expr) <= 60 else expr[:57] + "..."
        raise StudioError(f"{path}:{getattr(e.node, 'lineno', '?')}: refused to evaluate `{expr}`: {e.why}",
                          "an XTuner config holds small constants; write the value itself") from None
    except RecursionError:  # a backstop: MAX_DEPTH keeps the evaluator well inside Python's stack
        raise StudioError(f"{path}: nested too deeply to evaluate",
                          "an XTuner config holds plain settings; remove the deeply nested expression") from None
    lines["__part2__"] = next((i for i, ln in enumerate(src.splitlines(), 1) if "PART 2" in ln), 0)
    return ev.env, lines


def import_xtuner(py_path: str | os.PathLike, deepspeed: str | None = None) -> tuple[RunConfig, list[str], dict]:
    """Map an XTuner config to a RunConfig.

    Returns (config, unmapped, extra): `unmapped` lists each setting that has no equivalent, as
    'line N: name = value: why'; `extra` holds `part1` (the PART 1 values as read), `changed` (settings
    mapped to something different on purpose), `xtuner_name` and `source`. `deepspeed` is what the user
    passed as `xtuner train ... --deepspeed X`.
    """
    env, lines = parse_xtuner(py_path)
    m = _Mapper(env, lines, str(py_path))
    m.part1()
    m.model()
    m.dataset()
    m.schedule()
    if deepspeed:
        m._deepspeed(deepspeed)
    m.leftovers()
    out = {k: v for k, v in m.out.items() if v is not None}
    if isinstance(out.get("max_epochs"), float) and out["max_epochs"].is_integer():
        out["max_epochs"] = int(out["max_epochs"])
    if not out.get("pretrained_model_name_or_path"):
        raise StudioError(f"{py_path}: no pretrained_model_name_or_path (or llm_name_or_path) found",
                          "is this an XTuner training config?")
    try:
        cfg = config_from_dict(out, source=str(py_path))
    except ConfigError as e:
        line = lines.get(e.field)
        where = f"{py_path}:{line}" if line else str(py_path)
        raise ConfigError(e.field, f"{e.message} (imported from {where})") from None
    end = lines["__part2__"] or 10**9
    part1 = {k: v for k, v in env.items() if lines.get(k, 10**9) < end}
    extra = {"source": str(py_path), "xtuner_name": Path(py_path).stem, "part1": part1, "changed": m.changed,
             "deepspeed_arg": deepspeed}
    return cfg, m.unmapped, extra


def import_header(unmapped: list[str], extra: dict) -> str:
    """The comment block written above an imported YAML: where it came from, what did not carry over."""
    from core.config.command import xtuner_command

    lines = [f"Imported from XTuner config {extra['source']}",
             f"XTuner's own command was: {xtuner_command(extra['source'], deepspeed=extra.get('deepspeed_arg'))}"]
    if extra.get("changed"):
        lines.append("Changed on the way:")
        lines += [f"  - {c}" for c in extra["changed"]]
    if unmapped:
        lines.append(f"Not imported ({len(unmapped)}):")
        lines += [f"  - {u}" for u in unmapped]
    else:
        lines.append("Every setting was imported.")
    return "\n".join(lines)
