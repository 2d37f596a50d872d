"""Push a merged model or an adapter to a Hugging Face or ModelScope model repo, and its chat Space.

    from core.publish import push, resolve_token
    result = push("hf", "workspace/merged/demo", "alice/assistant", token=resolve_token("hf"), space=True)
    result = push("modelscope", "workspace/merged/demo", "alice/assistant", token=None,
                  dry_run_dir="workspace/publish/dry")          # writes files + plan.json, no network

Hugging Face goes through huggingface_hub (create_repo, then one preupload per file so progress is
reported file by file, then one create_commit); ModelScope through the modelscope SDK's HubApi
(create_repo, upload_folder, and deploy_repo for a studio). Endpoints: `endpoint=` or HF_ENDPOINT /
MODELSCOPE_ENDPOINT (tests point them at tests/fakehub).

The token lives in memory only: it is handed to the SDK client, which sends it in the Authorization
header (ModelScope's SDK also repeats it in its m_session_id cookie); it is never written to a file,
a log line, a config, a git remote or a URL, and it is scrubbed from every error message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import StudioError
from core.fsio import atomic_write_json, atomic_write_text, output_dir
from core.publish.card import check_card, model_card, resolve_base_model
from core.publish.space import space_bundle

HUBS = ("hf", "modelscope")
TOKEN_ENV = {"hf": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}
TOKEN_PAGE = {"hf": "https://huggingface.co/settings/tokens", "modelscope": "https://modelscope.cn/my/myaccesstoken"}
DEFAULT_ENDPOINT = {"hf": "https://huggingface.co", "modelscope": "https://www.modelscope.cn"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# Training leftovers that have no place in a published repo.
# studio_merge.json / studio_llava.json record local paths (base, adapter): they stay on this machine.
IGNORE_NAMES = {".git", "__pycache__", ".ms_upload_cache", "COMPLETE", "optimizer.pt", "scheduler.pt",
                "trainer_state.json", "training_args.bin", "README.md", ".DS_Store", "studio_merge.json",
                "studio_llava.json"}
IGNORE_PREFIXES = ("rng_state", ".")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

Progress = Callable[[dict], None]


# ---------------------------------------------------------------------------- tokens and errors

def resolve_token(hub: str, given: str | None = None) -> str | None:
    """The token to use: `given` (the page's password field) or HF_TOKEN / MODELSCOPE_API_TOKEN."""
    _check_hub(hub)
    token = (given or "").strip() or os.environ.get(TOKEN_ENV[hub], "").strip()
    return token or None


def _check_hub(hub: str) -> None:
    if hub not in HUBS:
        raise StudioError(f"hub: {hub!r} is not one of {', '.join(HUBS)}", hint="use hf or modelscope")


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _status_of(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None) or getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


def advice(hub: str, exc: BaseException, *, repo_id: str, token: str | None, endpoint: str,
           what: str, status: int | None = None) -> StudioError:
    """Turn an SDK/HTTP failure into one plain sentence and what to do about it."""
    site = "Hugging Face" if hub == "hf" else "ModelScope"
    status = status or _status_of(exc)
    owner = repo_id.split("/")[0]
    detail = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, token)
    if status == 401 or (status is None and "token" in str(exc).lower() and "login" in str(exc).lower()):
        return StudioError(f"{site} refused the token while trying to {what} ({detail})",
                           hint=f"make a token with write access at {TOKEN_PAGE[hub]} and set "
                                f"{TOKEN_ENV[hub]} (or paste it in the Publish page)")
    if status == 403:
        return StudioError(f"{site} says the token may not {what} under '{owner}' ({detail})",
                           hint=f"use a token with write permission, and an owner that is your user name or an "
                                f"organisation where you may create repos; tokens: {TOKEN_PAGE[hub]}")
    if status == 404:
        return StudioError(f"{site} could not find '{repo_id}' or its owner '{owner}' while trying to {what} "
                           f"({detail})",
                           hint="check the spelling of --repo owner/name; the owner must exist and the token must "
                                "see it")
    if status == 409:
        return StudioError(f"{site} reports a conflict while trying to {what} ({detail})",
                           hint="another upload to this repo is running or the name is taken by another kind of "
                                "repo: wait and re-run (publishing is safe to repeat), or pick another --repo name")
    if status is not None and status >= 500:
        return StudioError(f"{site} failed on its side ({status}) while trying to {what}",
                           hint="re-run in a few minutes; files already uploaded are not sent again")
    if isinstance(exc, (ConnectionError, OSError)) or "connect" in type(exc).__name__.lower():
        var = "HF_ENDPOINT" if hub == "hf" else "MODELSCOPE_ENDPOINT"
        return StudioError(f"cannot reach {endpoint} to {what} ({detail})",
                           hint=f"check the network (a proxy?) and {var}; on a box without internet, use "
                                "--dry-run DIR and push the folder from elsewhere")
    return StudioError(f"{site}: could not {what}: {detail}")


# ---------------------------------------------------------------------------- preconditions and staging

def check_source(source_dir: str | os.PathLike) -> str:
    """'adapter' or 'merged' for a folder that can be published; a StudioError naming what is missing."""
    src = Path(source_dir)
    if not src.is_dir():
        raise StudioError(f"{src}: no such folder", hint="give a merged model folder or an adapter folder")
    names = {p.name for p in src.iterdir()}
    if "adapter_config.json" in names:
        if not names & {"adapter_model.safetensors", "adapter_model.bin"}:
            raise StudioError(f"{src}: adapter_config.json is there but adapter_model.safetensors is not",
                              hint="point at the run's adapter/ folder or a complete checkpoints/step-N folder")
        return "adapter"
    if "config.json" not in names:
        raise StudioError(f"{src}: neither config.json (a model) nor adapter_config.json (an adapter)",
                          hint="merge first: python -m studio merge BASE ADAPTER OUT, then publish OUT")
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        raise StudioError(f"{src}: config.json but no weights (*.safetensors / *.bin)",
                          hint="the merge did not finish: run it again")
    if not names & {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}:
        raise StudioError(f"{src}: no tokenizer files (tokenizer.json / tokenizer_config.json)",
                          hint="copy the tokenizer files from the base model folder into it")
    return "merged"


def _publishable(path: Path, root: Path) -> bool:
    for part in path.relative_to(root).parts:
        if part in IGNORE_NAMES or part.startswith(IGNORE_PREFIXES) or part.endswith(".tmp"):
            return False
    return path.is_file()


def source_files(source_dir: str | os.PathLike) -> list[tuple[Path, str]]:
    """[(local file, path in repo)] of what gets published from `source_dir` (README.md is generated)."""
    root = Path(source_dir)
    return [(p, p.relative_to(root).as_posix()) for p in sorted(root.rglob("*")) if _publishable(p, root)]


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # the staging folder costs no disk space for multi-GB weights
    except OSError:
        shutil.copy2(src, dst)


def stage_model(source_dir: str | os.PathLike, out_dir: str | os.PathLike, card: str, *,
                base_model: str | None = None) -> list[str]:
    """Build the model repo's tree in `out_dir` (hard links to the source + README.md); returns repo paths.

    `out_dir` must be new or empty (plan_push gives it a fresh folder). An adapter's adapter_config.json
    is rewritten in the staged copy only (the user's adapter folder is never touched): its
    base_model_name_or_path becomes `base_model` (a Hub id), or null when that is unknown, so that no
    local path is published and the adapter (and its Space) finds its base on the Hub.
    """
    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise StudioError(f"{out} is not empty; the model repo is staged into a new folder",
                          hint="choose a new --dry-run folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        paths = []
        for src, rel in source_files(source_dir):
            if rel == "adapter_config.json":
                import json

                cfg = json.loads(src.read_text(encoding="utf-8"))
                cfg["base_model_name_or_path"] = base_model if _is_hub_id(base_model) else None
                atomic_write_text(tmp / rel, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
            else:
                _link_or_copy(src, tmp / rel)
            paths.append(rel)
        atomic_write_text(tmp / "README.md", card)
        paths.append("README.md")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)  # the staged tree appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(paths)


def _needs_remote_code(source_dir: Path) -> bool:
    import json

    try:
        cfg = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return "auto_map" in cfg


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and bool(_REPO_ID.match(name)) and not os.path.exists(name)


# ---------------------------------------------------------------------------- the plan

def _endpoint(hub: str, endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    if hub == "hf":
        return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT["hf"]).rstrip("/")
    ep = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN") or DEFAULT_ENDPOINT["modelscope"]
    return (ep if ep.startswith(("http://", "https://")) else "https://" + ep).rstrip("/")


def _calls_for(hub: str, ep: str, repo_type: str, repo_id: str, paths: list[str], *, private: bool,
               sdk: str | None) -> list[dict]:
    """The SDK calls (and the HTTP requests behind them) that publishing one repo makes."""
    if hub == "hf":
        t = {"model": "models", "space": "spaces"}[repo_type]
        prefix = "" if repo_type == "model" else "spaces/"
        create_args: dict[str, Any] = {"repo_id": repo_id, "repo_type": repo_type, "private": private,
                                       "exist_ok": True}
        if sdk:
            create_args["space_sdk"] = sdk
        calls = [{"call": "HfApi.create_repo", "args": create_args, "http": [f"POST {ep}/api/repos/create"]}]
        for p in paths:
            calls.append({"call": "HfApi.preupload_lfs_files", "args": {"repo_id": repo_id, "path_in_repo": p},
                          "http": [f"POST {ep}/api/{t}/{repo_id}/preupload/main",
                                   f"POST {ep}/{prefix}{repo_id}.git/info/lfs/objects/batch (large files; "
                                   "or the Xet protocol when hf_xet is installed)"]})
        calls.append({"call": "HfApi.create_commit",
                      "args": {"repo_id": repo_id, "repo_type": repo_type, "paths": paths},
                      "http": [f"POST {ep}/api/validate-yaml", f"POST {ep}/api/{t}/{repo_id}/commit/main (NDJSON)"]})
        return calls
    t = {"model": "models", "studio": "studios"}[repo_type]
    create_args = {"repo_id": repo_id, "repo_type": repo_type, "visibility": "private" if private else "public",
                   "exist_ok": True}
    if sdk:
        create_args.update({"sdk_type": sdk})
    create_http = f"POST {ep}/api/v1/models" if repo_type == "model" else f"POST {ep}/openapi/v1/studios"
    calls = [{"call": "HubApi.create_repo", "args": create_args, "http": [create_http]},
             {"call": "HubApi.upload_folder", "args": {"repo_id": repo_id, "repo_type": repo_type, "paths": paths},
              "http": [f"POST {ep}/api/v1/repos/{t}/{repo_id}/info/lfs/objects/batch", "PUT <blob upload URL>",
                       f"POST {ep}/api/v1/repos/{t}/{repo_id}/commit/master"]}]
    if repo_type == "studio":
        calls.append({"call": "HubApi.deploy_repo", "args": {"repo_id": repo_id, "repo_type": "studio"},
                      "http": [f"POST {ep}/openapi/v1/studios/{repo_id}/deploy"]})
    return calls


def repo_urls(hub: str, ep: str, repo_id: str, space_id: str | None) -> dict[str, str | None]:
    if hub == "hf":
        return {"model_url": f"{ep}/{repo_id}", "space_url": f"{ep}/spaces/{space_id}" if space_id else None}
    return {"model_url": f"{ep}/models/{repo_id}", "space_url": f"{ep}/studios/{space_id}" if space_id else None}


def default_stage_dir(hub: str, repo_id: str) -> Path:
    """workspace/publish/<hub>-<owner>__<name>: where a push stages its files (rebuilt each time)."""
    from core.workspace import sub

    return sub("publish") / f"{hub}-{repo_id.replace('/', '__')}"


def plan_push(hub: str, source_dir: str | os.PathLike, repo_id: str, *, stage_dir: str | os.PathLike | None = None,
              private: bool = False, space: bool = False, space_repo_id: str | None = None,
              sdk: str = "gradio", base_model: str | None = None, run_dir: str | os.PathLike | None = None,
              card: str | None = None, system_prompt: str = "", title: str | None = None,
              license: str = "apache-2.0", endpoint: str | None = None, overwrite: bool = False) -> dict:
    """Check everything, write what would be pushed under `stage_dir` (model/, space/), return the plan.

    Touches no network; `stage_dir` defaults to default_stage_dir(). The plan lists the repos, the
    files of each (paths in the repo) and the SDK calls with the HTTP requests behind them; `push`
    executes exactly this plan. `stage_dir` follows core.fsio.output_dir: new, empty or an earlier
    staging folder (else `overwrite`); never the source, a parent of it, a run or the workspace.
    The base model is named by its Hub id only (resolve_base_model): a local path is never published.
    """
    _check_hub(hub)
    if not _REPO_ID.match(repo_id or ""):
        raise StudioError(f"--repo: {repo_id!r} is not a repo id", hint="write it as owner/name, e.g. alice/assistant")
    space_id = (space_repo_id or repo_id) if space else None
    if space_id and not _REPO_ID.match(space_id):
        raise StudioError(f"space repo: {space_id!r} is not a repo id", hint="write it as owner/name")
    src = Path(source_dir)
    kind = check_source(src)
    base_id = resolve_base_model(src, base_model, run_dir)
    if kind == "adapter" and space and not base_id:
        raise StudioError(f"{src}/adapter_config.json: the base model has no Hub id, so a Space could not load it",
                          hint="pass --base-model with the base model's Hub id (e.g. internlm/internlm2-chat-1_8b), "
                               "or publish the merged model instead")
    card = card if card is not None else model_card(src, repo_id=repo_id, base_model=base_id, run_dir=run_dir,
                                                    license=license)
    check_card(card, "ModelScope" if hub == "modelscope" else "Hugging Face")

    default = stage_dir is None
    stage = Path(stage_dir) if stage_dir is not None else default_stage_dir(hub, repo_id)
    ep = _endpoint(hub, endpoint)
    space_paths: list[str] = []
    # the default stage is the studio's own folder under workspace/publish: it is always rebuilt
    with output_dir(stage, kind="publish", overwrite=overwrite or default, sources=[src]) as tmp:
        model_paths = stage_model(src, tmp / "model", card, base_model=base_id if kind == "adapter" else None)
        if space_id:
            written = space_bundle(tmp / "space", model_repo_id=repo_id, hub=hub, sdk=sdk, title=title,
                                   system_prompt=system_prompt, license=license, remote_code=_needs_remote_code(src))
            space_paths = sorted(p.name for p in written)
        for cache in stage.glob(".upload-cache-*") if stage.is_dir() else ():
            shutil.move(str(cache), str(tmp / cache.name))  # ModelScope's resume record survives a re-plan

    space_type = "space" if hub == "hf" else "studio"
    calls = _calls_for(hub, ep, "model", repo_id, model_paths, private=private, sdk=None)
    if space_id:
        calls += _calls_for(hub, ep, space_type, space_id, space_paths, private=private, sdk=sdk)
    sizes = {rel: (stage / "model" / rel).stat().st_size for rel in model_paths}
    return {
        "hub": hub, "endpoint": ep, "kind": kind, "source": str(src.resolve()), "private": private,
        "license": license,
        "repo_id": repo_id, "space_id": space_id, "sdk": sdk if space_id else None,
        "stage_dir": str(stage.resolve()),
        "model_files": [{"path": p, "bytes": sizes[p]} for p in model_paths],
        "space_files": space_paths,
        "total_bytes": sum(sizes.values()),
        **repo_urls(hub, ep, repo_id, space_id),
        "calls": calls,
    }


# ---------------------------------------------------------------------------- execution

def _say(progress: Progress | None, **event: Any) -> None:
    if progress is not None:
        progress(event)


def _push_hf(plan: dict, token: str, progress: Progress | None) -> dict:
    from huggingface_hub import CommitOperationAdd, HfApi

    ep, stage = plan["endpoint"], Path(plan["stage_dir"])
    api = HfApi(endpoint=ep, token=token)
    out: dict[str, Any] = {}
    jobs = [("model", plan["repo_id"], stage / "model", [f["path"] for f in plan["model_files"]], None)]
    if plan["space_id"]:
        jobs.append(("space", plan["space_id"], stage / "space", plan["space_files"], plan["sdk"]))
    for repo_type, rid, folder, paths, sdk in jobs:
        what = f"create the {repo_type} repo {rid}"
        try:
            _say(progress, stage="create_repo", repo=rid, repo_type=repo_type, message=f"creating {repo_type} {rid}")
            kwargs = {"space_sdk": sdk} if sdk else {}
            url = api.create_repo(rid, repo_type=repo_type, private=plan["private"], exist_ok=True, **kwargs)
            ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in paths]
            total = sum((folder / p).stat().st_size for p in paths)
            done = 0
            what = f"upload files to {rid}"
            for op, p in zip(ops, paths, strict=True):
                api.preupload_lfs_files(rid, additions=[op], repo_type=repo_type)
                done += (folder / p).stat().st_size
                _say(progress, stage="upload", repo=rid, file=p, done=done, total=total,
                     message=f"{rid}: {p} ({done / 1e6:.1f}/{total / 1e6:.1f} MB)")
            what = f"commit to {rid}"
            info = api.create_commit(rid, operations=ops, repo_type=repo_type,
                                     commit_message="Publish with Fine-Tune Studio")
        except StudioError:
            raise
        except Exception as e:
            raise advice("hf", e, repo_id=rid, token=token, endpoint=ep, what=what) from None
        _say(progress, stage="done", repo=rid, message=f"{repo_type} {rid}: {info.commit_url}")
        out[repo_type] = {"url": str(url), "commit_url": info.commit_url, "commit": info.oid}
    return out


def _push_modelscope(plan: dict, token: str, progress: Progress | None) -> dict:
    from modelscope.hub.api import HubApi

    ep, stage = plan["endpoint"], Path(plan["stage_dir"])
    api = HubApi(endpoint=ep, token=token)
    jobs = [("model", plan["repo_id"], stage / "model", None)]
    if plan["space_id"]:
        jobs.append(("studio", plan["space_id"], stage / "space", plan["sdk"]))
    visibility = "private" if plan["private"] else "public"
    # upload_folder folds per-file HTTP failures into one StorageError and only logs their statuses;
    # keep those log lines to tell a refused token from a missing repo.
    seen = _Recorder()
    logging.getLogger("modelscope_hub").addHandler(seen)
    try:
        return _push_modelscope_jobs(api, jobs, visibility, plan, token, progress, seen)
    finally:
        logging.getLogger("modelscope_hub").removeHandler(seen)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.statuses: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.statuses += [int(c) for c in re.findall(r"\[(4\d\d|5\d\d)\]", record.getMessage())]


def _push_modelscope_jobs(api: Any, jobs: list, visibility: str, plan: dict, token: str,
                          progress: Progress | None, seen: _Recorder) -> dict:
    ep, stage = plan["endpoint"], Path(plan["stage_dir"])
    out: dict[str, Any] = {}
    for repo_type, rid, folder, sdk in jobs:
        what = f"create the {repo_type} repo {rid}"
        # The SDK prints an upload report on stdout; stdout is for our --json output.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                _say(progress, stage="create_repo", repo=rid, repo_type=repo_type, message=f"creating {repo_type} {rid}")
                extra: dict[str, Any] = {}
                if sdk:
                    from core.publish.space import pinned_versions

                    extra = {"sdk_type": sdk, "sdk_version": pinned_versions().get(sdk, "")}
                api.create_repo(rid, repo_type=repo_type, visibility=visibility, license=plan["license"],
                                exist_ok=True, **extra)
                what = f"upload files to {rid}"

                def report(ev: dict, rid: str = rid) -> None:
                    _say(progress, stage="upload", repo=rid, done=ev.get("committed_bytes"),
                         total=ev.get("total_bytes"),
                         message=f"{rid}: {ev.get('committed_files')}/{ev.get('total_files')} files committed")

                result = api.upload_folder(repo_id=rid, folder_path=str(folder), repo_type=repo_type,
                                           commit_message="Publish with Fine-Tune Studio", disable_tqdm=True,
                                           tracker_path=str(stage / f".upload-cache-{repo_type}"),
                                           progress_callback=report)
                entry: dict[str, Any] = {"result": result if isinstance(result, (dict, list)) else None}
                if repo_type == "studio":
                    what = f"start the studio {rid}"
                    try:
                        api.deploy_repo(rid, "studio")
                        entry["deployed"] = True
                    except Exception as e:  # the files are up; going online can also be done by hand
                        entry["deployed"] = False
                        entry["deploy_hint"] = (f"{advice('modelscope', e, repo_id=rid, token=token, endpoint=ep, what=what)}"
                                                " — or open the studio's settings page and click 上线 (go online)")
            except StudioError:
                raise
            except Exception as e:
                status = _status_of(e) or (seen.statuses[0] if seen.statuses else None)
                raise advice("modelscope", e, repo_id=rid, token=token, endpoint=ep, what=what,
                             status=status) from None
        _say(progress, stage="done", repo=rid, message=f"{repo_type} {rid} published")
        out["space" if repo_type == "studio" else "model"] = entry
    return out


def push(hub: str, source_dir: str | os.PathLike, repo_id: str, *, token: str | None, private: bool = False,
         space: bool = False, dry_run_dir: str | os.PathLike | None = None, progress: Progress | None = None,
         space_repo_id: str | None = None, sdk: str = "gradio", base_model: str | None = None,
         run_dir: str | os.PathLike | None = None, card: str | None = None, system_prompt: str = "",
         title: str | None = None, license: str = "apache-2.0", endpoint: str | None = None,
         stage_dir: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Publish `source_dir` as `repo_id` (and a chat Space when `space`); returns the plan plus URLs.

    With `dry_run_dir`, everything that would be pushed is written there (model/, space/, plan.json)
    and nothing goes over the network. Safe to re-run: existing repos are reused, unchanged files are
    not uploaded again.
    """
    _check_hub(hub)
    if dry_run_dir is None and not token:
        raise StudioError(f"no {('Hugging Face' if hub == 'hf' else 'ModelScope')} token",
                          hint=f"set {TOKEN_ENV[hub]} (a write token from {TOKEN_PAGE[hub]}) or paste it in the "
                               "Publish page; or use --dry-run DIR to see what would be pushed")
    stage = Path(dry_run_dir) if dry_run_dir is not None else stage_dir
    plan = plan_push(hub, source_dir, repo_id, stage_dir=stage, private=private, space=space,
                     space_repo_id=space_repo_id, sdk=sdk, base_model=base_model, run_dir=run_dir, card=card,
                     system_prompt=system_prompt, title=title, license=license, endpoint=endpoint,
                     overwrite=overwrite)
    _say(progress, stage="planned", message=f"{len(plan['model_files'])} model files, "
                                            f"{plan['total_bytes'] / 1e6:.1f} MB, {len(plan['calls'])} API calls")
    if dry_run_dir is not None:
        atomic_write_json(stage / "plan.json", {**plan, "dry_run": True})
        return {**plan, "dry_run": True}
    pushed = _push_hf(plan, token, progress) if hub == "hf" else _push_modelscope(plan, token, progress)
    return {**plan, "dry_run": False, "pushed": pushed}
