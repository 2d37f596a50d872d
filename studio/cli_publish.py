"""`python -m studio publish hf|modelscope SOURCE --repo ID [--space] [--private] [--dry-run DIR] ...`

SOURCE is a merged model folder or an adapter folder (adapter_config.json). The token comes from
HF_TOKEN / MODELSCOPE_API_TOKEN only (there is no --token flag: a token on the command line ends up
in shell history and `ps`). The JSON result (URLs, files, API calls) goes to stdout, progress to
stderr. `--dry-run DIR` writes DIR/model, DIR/space and DIR/plan.json and touches no network; DIR must
be new, empty or an earlier dry run (else --overwrite), and is never the source or a parent of it.
Without --base-model the base is traced to its Hub id (the download's record); a local path is never
published: when no Hub id is known, publish asks for --base-model.
"""

from __future__ import annotations

import argparse
import json
import sys

from studio.output import emit  # the real stdout: libraries' prints are moved to stderr


def _progress(event: dict) -> None:
    msg = event.get("message")
    if msg:
        print(f"publish: {msg}", file=sys.stderr, flush=True)


def cmd_publish(args: argparse.Namespace) -> int:
    from core.errors import StudioError
    from core.publish import push, resolve_token

    card = None
    if args.card:
        try:
            with open(args.card, encoding="utf-8") as f:
                card = f.read()
        except OSError as e:
            raise StudioError(f"{args.card}: cannot read the model card ({e.strerror})") from None
    token = None if args.dry_run else resolve_token(args.hub)
    result = push(args.hub, args.source, args.repo, token=token, private=args.private, space=args.space,
                  dry_run_dir=args.dry_run, progress=_progress, space_repo_id=args.space_repo, sdk=args.sdk,
                  base_model=args.base_model, run_dir=args.run, card=card, system_prompt=args.system,
                  title=args.title, overwrite=args.overwrite)
    summary = {k: result.get(k) for k in ("hub", "repo_id", "model_url", "space_id", "space_url", "dry_run",
                                          "stage_dir", "total_bytes")}
    summary["files"] = [f["path"] for f in result["model_files"]]
    summary["space_files"] = result["space_files"]
    summary["calls"] = [c["call"] for c in result["calls"]]
    if "pushed" in result:
        summary["pushed"] = result["pushed"]
    emit(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    where = result["stage_dir"] + "/plan.json" if result["dry_run"] else result["model_url"]
    print(f"publish: {'dry run written to' if result['dry_run'] else 'published'} {where}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("publish", help="push a merged model or an adapter to a model repo, and a chat Space",
                       description="Publish to Hugging Face or ModelScope. Token: HF_TOKEN / MODELSCOPE_API_TOKEN.")
    s.add_argument("hub", choices=["hf", "modelscope"])
    s.add_argument("source", help="merged model folder or adapter folder")
    s.add_argument("--repo", required=True, help="model repo id, owner/name")
    s.add_argument("--space", action="store_true", help="also publish a chat app (HF Space / ModelScope studio)")
    s.add_argument("--space-repo", default=None, help="the Space's id (default: the same as --repo)")
    s.add_argument("--sdk", choices=["gradio", "streamlit"], default="gradio", help="the Space's app framework")
    s.add_argument("--private", action="store_true", help="create private repos")
    s.add_argument("--dry-run", metavar="DIR", default=None,
                   help="write everything that would be pushed and the API calls to DIR; no network")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --dry-run folder that is not an earlier dry run (never a source or a run)")
    s.add_argument("--base-model", default=None,
                   help="the base model's Hub id (owner/name), for the model card and adapters; needed when the "
                        "base is a local folder whose Hub id is not recorded")
    s.add_argument("--run", default=None, metavar="RUN_DIR",
                   help="the training run (workspace/runs/<id>) whose config and answers fill the model card")
    s.add_argument("--card", default=None, metavar="FILE", help="use this README.md instead of the generated card")
    s.add_argument("--system", default="", help="system prompt the Space's app sends")
    s.add_argument("--title", default=None, help="the Space's title")
    s.set_defaults(func=cmd_publish)


add_parsers = add_parser
