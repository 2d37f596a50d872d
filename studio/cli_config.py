"""CLI verbs for configs, XTuner's names: list-cfg, copy-cfg, import-xtuner, plus estimate.

    python -m studio list-cfg [-p PATTERN]
    python -m studio copy-cfg NAME DIR [--force]
    python -m studio import-xtuner CONFIG.py -o OUT.yaml [--deepspeed deepspeed_zero2]
    python -m studio estimate CONFIG_OR_RECIPE [--gpus N] [--json]

Listings and the written path go to stdout; explanations (unmapped settings, hints) to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.output import emit  # results to the real stdout (studio/output.py)


def _err(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def cmd_list_cfg(args: argparse.Namespace) -> int:
    from core.config.recipes import list_recipes

    names = list_recipes(args.pattern)
    if not names:
        _err(f"no recipe matches {args.pattern!r}; all of them: python -m studio list-cfg")
        return 1
    if args.json:
        emit(json.dumps(names))
        return 0
    bar = "=" * 70
    emit(bar)
    emit("PATTERN: " + (args.pattern or "*"))
    emit("-" * 70)
    for n in names:
        emit(n)
    emit(bar)
    return 0


def cmd_copy_cfg(args: argparse.Namespace) -> int:
    from core.config.recipes import copy_recipe

    dst = copy_recipe(args.name, args.dir, overwrite=args.force)
    emit(dst)
    _err(f"copied; edit it, then: python -m studio train {dst}")
    return 0


def cmd_import_xtuner(args: argparse.Namespace) -> int:
    from core.config.command import train_command
    from core.config.schema import save_config
    from core.config.xtuner_import import import_header, import_xtuner

    cfg, unmapped, extra = import_xtuner(args.config, deepspeed=args.deepspeed)
    out = args.output or extra["xtuner_name"] + ".yaml"
    save_config(cfg, out, header=import_header(unmapped, extra))
    for c in extra["changed"]:
        _err(f"changed: {c}")
    if unmapped:
        _err(f"not imported ({len(unmapped)}):")
        for u in unmapped:
            _err(f"  - {u}")
    else:
        _err("not imported: nothing; every setting has an equivalent")
    _err(f"train it: {train_command(out, cfg)}")
    emit(out)
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from core.config.recipes import resolve_config
    from core.config.schema import load_config
    from core.config.vram import estimate, format_estimate

    cfg = load_config(resolve_config(args.config))
    est = estimate(cfg, n_gpus=args.gpus)
    if args.json:
        emit(json.dumps(est, ensure_ascii=False, indent=2))
    else:
        emit(format_estimate(est))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("list-cfg", help="list the recipe gallery (like xtuner list-cfg)")
    s.add_argument("-p", "--pattern", default=None, help="case-insensitive part of the name (or a glob)")
    s.add_argument("--json", action="store_true", help="a JSON list on stdout")
    s.set_defaults(func=cmd_list_cfg)

    s = sub.add_parser("copy-cfg", help="copy a recipe to DIR/NAME_copy.yaml (like xtuner copy-cfg)")
    s.add_argument("name")
    s.add_argument("dir")
    s.add_argument("--force", action="store_true", help="overwrite an existing NAME_copy.yaml")
    s.set_defaults(func=cmd_copy_cfg)

    s = sub.add_parser("import-xtuner", help="turn an XTuner .py config into a studio YAML (never runs the file)")
    s.add_argument("config", help="the XTuner config .py")
    s.add_argument("-o", "--output", help="YAML to write (default: NAME.yaml here)")
    s.add_argument("--deepspeed", default=None, help="what you passed to xtuner train --deepspeed, if anything")
    s.set_defaults(func=cmd_import_xtuner)

    s = sub.add_parser("estimate", help="GPU memory a config needs, with the breakdown and the formula")
    s.add_argument("config", help="a YAML config or a recipe name")
    s.add_argument("--gpus", type=int, default=1, help="GPUs the run is spread over (DeepSpeed ZeRO)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_estimate)


add_parser = add_parsers
