"""The studio's command line: XTuner's verbs in one program. `python -m studio --help`.

Exit codes: 0 success, 1 a failure the message explains, 2 bad usage. Machine-readable output
(--json) goes to stdout, human progress to stderr. Heavy imports (torch, transformers) happen
inside the verbs so `--help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from studio import cli_config, cli_data, cli_publish, output
from studio.output import emit, split_stdout


def _err(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- spine verbs

def cmd_tiny(args: argparse.Namespace) -> int:
    from core.tiny import build_tiny_model, default_tiny_dir

    out = build_tiny_model(args.to or default_tiny_dir(), force=args.force, overwrite=args.overwrite)
    emit(str(out))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core import jobs

    if args.detach:
        run = jobs.start_run(args.config, work_dir=args.work_dir, resume=args.resume, deepspeed=args.deepspeed)
        _err(f"started run {run.name} (detached); watch: python -m studio runs; stop: python -m studio stop {run.name}")
        emit(json.dumps({"run_id": run.name, "run_dir": str(run)}))
        return 0
    return jobs.run_foreground(args.config, work_dir=args.work_dir, resume=args.resume, deepspeed=args.deepspeed)


def cmd_runs(args: argparse.Namespace) -> int:
    from core import jobs

    runs = jobs.list_runs()
    if args.json:
        emit(json.dumps(runs, ensure_ascii=False, indent=2))
        return 0
    if not runs:
        _err("no runs yet: python -m studio train CONFIG --detach")
        return 0
    for r in runs:
        prog = f"{r.get('step', 0)}/{r.get('max_steps') or '?'}"
        emit(f"{r['run_id']:<32} {r.get('state', '?'):<9} step {prog:<10} {r.get('error') or ''}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from core import jobs

    state = jobs.stop_run(args.run_id, timeout=args.timeout)
    _err(f"{args.run_id}: {state}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from core import chat

    return chat.cli_chat(args, out=output.OUT or sys.stdout)


def cmd_merge(args: argparse.Namespace) -> int:
    from core import merge

    report = merge.merge_adapter(args.base, args.adapter, args.out, max_shard_size=args.max_shard_size,
                                 device=args.device, check=not args.no_check, layout=args.layout,
                                 overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
    emit(json.dumps(report, ensure_ascii=False, indent=2))
    return 0 if report.get("check", {}).get("identical", True) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from core import demo

    summary = demo.run_demo(name=args.name, author=args.author, method=args.method, workspace=args.workspace,
                            steps=args.steps)
    emit(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.errors import StudioError
    from core.probe import run_probe

    def lines(path: str | None) -> list[str] | None:
        if not path:
            return None
        if not Path(path).is_file():
            raise StudioError(f"no prompts file at {path}", hint="one prompt a line; # starts a comment")
        text = Path(path).read_text(encoding="utf-8-sig")
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]

    res = run_probe(args.model, args.adapter, name=args.name, identity=lines(args.identity),
                    unrelated=lines(args.prompts), max_new_tokens=args.max_new_tokens,
                    trust_remote_code=args.trust_remote_code)
    if not args.json:  # the two rates and the per-language counts; --json adds every answer
        res = {k: res[k] for k in ("model", "adapter", "name", "identity_hit_rate", "leak_rate", "identity_hits",
                                   "leaks")}
    emit(json.dumps(res, ensure_ascii=False, indent=None if args.json else 2))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from core import models

    path = models.download(args.model_id, hub=args.hub, to=args.to, overwrite=args.overwrite,
                           trust_remote_code=args.trust_remote_code)
    emit(str(path))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from studio import serve

    return serve.serve(host=args.host, port=args.port, headless=args.headless)


def cmd_bench(args: argparse.Namespace) -> int:
    from bench import run as bench_run

    return bench_run.main(args.rest)


# ---------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studio", description="Fine-Tune Studio: LoRA/QLoRA, the XTuner way.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("ui", help="start the Streamlit studio (127.0.0.1 by default)")
    s.add_argument("--host", default=os.environ.get("STUDIO_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("STUDIO_PORT", "8501")))
    s.add_argument("--headless", action="store_true", default=True)
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("tiny", help="build the built-in tiny model (no download)")
    s.add_argument("--to", help="output folder (default: workspace/models/tiny)")
    s.add_argument("--force", action="store_true", help="rebuild even if it exists")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --to folder that is not an earlier tiny model (never a run or a source)")
    s.set_defaults(func=cmd_tiny)

    s = sub.add_parser("download", help="download a base model from Hugging Face or ModelScope")
    s.add_argument("model_id")
    s.add_argument("--hub", choices=["hf", "modelscope"], default="modelscope")
    s.add_argument("--to", help="target folder (default: workspace/models/<name>)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --to folder that is not this model's earlier download")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="recorded with the download; without it, a model that ships Python code is pointed out")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("demo", help="the whole pipeline headless on the tiny model; JSON summary on stdout")
    s.add_argument("--name", default="小天")
    s.add_argument("--author", default="Fine-Tune Studio")
    s.add_argument("--method", choices=["lora", "qlora", "full"], default="lora")
    s.add_argument("--workspace", help="workspace folder (default: STUDIO_WORKSPACE or ./workspace)")
    s.add_argument("--steps", type=int, default=None, help="optimizer steps (default: enough for the tiny model)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("probe", help="identity_hit_rate and leak_rate of a model (+ adapter) as JSON")
    s.add_argument("model", help="a model folder, hub id or tiny")
    s.add_argument("--adapter", help="a PEFT adapter (a run's adapter/ or a checkpoint)")
    s.add_argument("--name", required=True, help="the identity name to look for in the answers")
    s.add_argument("--identity", metavar="FILE",
                   help="identity questions, one a line (default: the question banks' held-out paraphrases)")
    s.add_argument("--prompts", metavar="FILE",
                   help="unrelated prompts, one a line (default: the open-domain probe set in assets/probe)")
    s.add_argument("--max-new-tokens", type=int, default=32)
    s.add_argument("--trust-remote-code", action="store_true")
    s.add_argument("--json", action="store_true", help="one JSON line with every prompt and answer")
    s.set_defaults(func=cmd_probe)

    cli_data.add_parser(sub)
    cli_config.add_parsers(sub)

    s = sub.add_parser("train", help="train from a config (YAML or recipe name)")
    s.add_argument("config")
    s.add_argument("--work-dir", help="run folder (default: workspace/runs/<run id>)")
    s.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="resume from a checkpoint folder, or the latest complete one when no path is given")
    s.add_argument("--deepspeed", default=None,
                   choices=["zero1", "zero2", "zero2_offload", "zero3", "zero3_offload"])
    s.add_argument("--detach", action="store_true", help="start in the background and return at once")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("runs", help="list runs and their states")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("stop", help="stop a run gracefully (checkpoint, then exit)")
    s.add_argument("run_id")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds before the run is killed")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("chat", help="chat with a model, an adapter, a checkpoint or a merged model")
    s.add_argument("model", help="base model folder or id (or 'tiny')")
    s.add_argument("--adapter", action="append", default=[], help="PEFT adapter folder (repeat for several)")
    s.add_argument("--bits", type=int, choices=[4, 8], default=None)
    s.add_argument("--system", default="")
    s.add_argument("--prompt-template", default="auto")
    s.add_argument("--temperature", type=float, default=0.0, help="0 means greedy decoding")
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--max-new-tokens", type=int, default=256)
    s.add_argument("--repetition-penalty", type=float, default=1.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image", default=None, help="an image, for LLaVA models")
    s.add_argument("--prompts", default=None, help="a file of prompts (one per line, or JSONL with 'prompt')")
    s.add_argument("--json", action="store_true", help="with --prompts: one JSON line per answer on stdout")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model folder's own Python code (auto_map); off by default")
    s.set_defaults(func=cmd_chat)

    s = sub.add_parser("merge", help="merge an adapter into its base model, then check the answers match")
    s.add_argument("base")
    s.add_argument("adapter")
    s.add_argument("out")
    s.add_argument("--max-shard-size", default="2GB")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.add_argument("--no-check", action="store_true", help="skip the merged vs base+adapter comparison")
    s.add_argument("--layout", choices=["native", "internlm2"], default="native",
                   help="save InternLM2 models back in their own layout")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT that is not an earlier merge (never the base, the adapter or a run)")
    s.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model folder's own Python code (auto_map); off by default")
    s.set_defaults(func=cmd_merge)

    cli_publish.add_parser(sub)

    s = sub.add_parser("bench", help="GPU figures against a naive transformers+peft baseline")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from core.errors import StudioError

    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["bench"]:  # bench has its own options; hand them over untouched
        from bench import run as bench_run

        return bench_run.main(raw[1:])
    args = build_parser().parse_args(argv)
    if argv is None:
        split_stdout()
    try:
        return int(args.func(args) or 0)
    except StudioError as e:
        _err(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
