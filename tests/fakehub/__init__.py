"""A local fake of the Hugging Face Hub and ModelScope HTTP endpoints our publish code reaches.

Standard library only: `http.server` in a thread on 127.0.0.1 and a random port. Every request is
recorded (method, path, headers, body) so tests can check where a token travelled, and every
committed file is kept in memory so tests can check paths and bytes.

    with FakeHub(token="hf_secret") as hub:
        os.environ["HF_ENDPOINT"] = hub.url      # or HfApi(endpoint=hub.url)
        ...
        hub.files("model", "alice/tiny")          # {path_in_repo: bytes}

Hugging Face endpoints (huggingface_hub 2.4): POST /api/repos/create, POST /api/validate-yaml,
POST /api/{type}s/{id}/preupload/{rev}, POST /{prefix}{id}.git/info/lfs/objects/batch (basic
transfer; blobs are PUT to /_lfs/{oid}), POST /api/{type}s/{id}/commit/{rev} (NDJSON),
GET /api/{type}s/{id}. Large or binary files are answered "lfs" (real LFS round trip) unless
`lfs=False`; hf_xet cannot be faked, so tests that exercise LFS set HF_HUB_DISABLE_XET.

ModelScope endpoints (modelscope 1.40.2 / modelscope_hub): POST /api/v1/models (create),
POST /openapi/v1/studios (create a studio), GET /api/v1/{type}s/{id}, POST
/api/v1/repos/{type}s/{id}/info/lfs/objects/batch, PUT /_lfs/{oid}, POST
/api/v1/repos/{type}s/{id}/commit/{rev} (JSON actions), the repo tree listing, studio deploy.

`fail={"create": 403}` makes the named step answer that status, to test the advice we print.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model", ".onnx", ".h5", ".msgpack")


class FakeHub:
    def __init__(self, token: str | None = None, *, lfs: bool = True, fail: dict[str, int] | None = None):
        self.token = token
        self.lfs = lfs
        self.fail = dict(fail or {})
        self.requests: list[dict] = []
        self.repos: dict[tuple[str, str], dict] = {}  # (type, id) -> {"meta": {...}, "files": {path: bytes}}
        self.blobs: dict[str, bytes] = {}
        self.commits: list[dict] = []
        self.deployed: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ queries for tests
    def files(self, repo_type: str, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)]["files"])

    def meta(self, repo_type: str, repo_id: str) -> dict:
        return dict(self.repos[(repo_type, repo_id)]["meta"])

    def where_is(self, secret: str) -> list[str]:
        """Every place (method path: part) a string appeared in the recorded requests."""
        hits = []
        for r in self.requests:
            where = f"{r['method']} {r['path']}"
            if secret in r["path"]:
                hits.append(f"{where}: url")
            for k, v in r["headers"].items():
                if secret in v:
                    hits.append(f"{where}: header {k}")
            if secret.encode() in r["body"]:
                hits.append(f"{where}: body")
        return hits

    def _repo(self, repo_type: str, repo_id: str) -> dict | None:
        return self.repos.get((repo_type, repo_id))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *a) -> None:  # keep pytest output clean
        pass

    # ------------------------------------------------------------------ plumbing
    def _read(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _send(self, status: int, obj=None, headers: dict | None = None) -> None:
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        want = self.fake.token
        if want is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {want}"

    def _handle(self, method: str) -> None:
        body = self._read()
        url = urlparse(self.path)
        rec = {"method": method, "path": self.path, "headers": dict(self.headers.items()), "body": body}
        with self.fake._lock:
            self.fake.requests.append(rec)
        try:
            self._route(method, unquote(url.path), parse_qs(url.query), body)
        except Exception as e:  # a bug in the fake must show up in the test, not hang the client
            self._send(500, {"error": f"fake hub: {type(e).__name__}: {e}"})

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_HEAD(self):  # noqa: N802
        self._handle("HEAD")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")

    # ------------------------------------------------------------------ routes
    def _fail(self, step: str) -> bool:
        code = self.fake.fail.get(step)
        if code:
            msg = {401: "Invalid credentials", 403: "You don't have the rights to create this repo",
                   404: "Repository not found", 409: "You already created this repo"}.get(code, "error")
            self._send(code, {"error": msg, "Message": msg, "Code": code})
            return True
        return False

    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        f = self.fake
        # blob uploads (both hubs): the URL is ours, handed out by the batch endpoints
        if method == "PUT" and path.startswith("/_lfs/"):
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return self._send(400, {"error": "sha256 mismatch"})
            f.blobs[oid] = body
            return self._send(200, {"Code": 200})

        if not self._authorized():
            return self._send(401, {"error": "Invalid credentials in Authorization header", "Code": 401,
                                    "Message": "Invalid credentials"})

        if path.startswith("/api/v1/") or path.startswith("/openapi/v1/"):
            return self._route_ms(method, path, query, body)
        return self._route_hf(method, path, query, body)

    # -------------------------------------------------------------- Hugging Face
    def _route_hf(self, method: str, path: str, query: dict, body: bytes) -> None:
        f = self.fake
        if method == "POST" and path == "/api/repos/create":
            if self._fail("create"):
                return
            p = json.loads(body)
            rtype = p.get("type") or "model"
            rid = f"{p['organization']}/{p['name']}" if p.get("organization") else p["name"]
            if (rtype, rid) in f.repos:
                return self._send(409, {"error": "You already created this model repo", "url": self._hf_url(rtype, rid)})
            f.repos[(rtype, rid)] = {"meta": p, "files": {}}
            return self._send(200, {"url": self._hf_url(rtype, rid), "name": rid})
        if method == "POST" and path == "/api/validate-yaml":
            return self._send(200, {"errors": [], "warnings": []})
        if method == "GET" and path == "/api/whoami-v2":
            return self._send(200, {"name": "tester", "type": "user", "orgs": []})

        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+?)/preupload/([^/]+)", path)
        if method == "POST" and m:
            rtype, rid = m.group(1), m.group(2)
            if f._repo(rtype, rid) is None:
                return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            out = []
            for item in json.loads(body)["files"]:
                lfs = f.lfs and (item["path"].endswith(_LFS_SUFFIXES) or item["size"] > 1_000_000)
                out.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
            return self._send(200, {"files": out, "commitOid": "0" * 40})

        m = re.fullmatch(r"/(?:(datasets|spaces)/)?(.+?)\.git/info/lfs/objects/batch", path)
        if method == "POST" and m:
            p = json.loads(body)
            objs = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                     "actions": {"upload": {"href": f"{f.url}/_lfs/{o['oid']}"}}} for o in p["objects"]]
            return self._send(200, {"transfer": "basic", "objects": objs})

        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+?)/commit/([^/]+)", path)
        if method == "POST" and m:
            if self._fail("commit"):
                return
            rtype, rid = m.group(1), m.group(2)
            repo = f._repo(rtype, rid)
            if repo is None:
                return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            lines = [json.loads(ln) for ln in body.decode().splitlines() if ln.strip()]
            changed = []
            for ln in lines:
                v = ln.get("value", {})
                if ln["key"] == "file":
                    repo["files"][v["path"]] = base64.b64decode(v["content"])
                    changed.append(v["path"])
                elif ln["key"] == "lfsFile":
                    if v["oid"] not in f.blobs:
                        return self._send(422, {"error": f"LFS object {v['oid']} was never uploaded"})
                    repo["files"][v["path"]] = f.blobs[v["oid"]]
                    changed.append(v["path"])
                elif ln["key"] == "deletedFile":
                    repo["files"].pop(v["path"], None)
            oid = hashlib.sha1(json.dumps(changed).encode()).hexdigest()
            f.commits.append({"hub": "hf", "type": rtype, "repo": rid, "paths": changed})
            return self._send(200, {"commitUrl": f"{self._hf_url(rtype, rid)}/commit/{oid}", "commitOid": oid,
                                    "pullRequestUrl": None})

        m = re.fullmatch(r"/api/(model|dataset|space)s/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
        if method == "GET" and m:
            repo = f._repo(m.group(1), m.group(2))
            if repo is None:
                return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return self._send(200, {"id": m.group(2), "sha": "0" * 40, "private": False,
                                    "siblings": [{"rfilename": p} for p in repo["files"]]})
        return self._send(404, {"error": f"fake hub: no route for {method} {path}"})

    def _hf_url(self, rtype: str, rid: str) -> str:
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[rtype]
        return f"{self.fake.url}/{prefix}{rid}"

    # -------------------------------------------------------------- ModelScope
    def _ms_ok(self, data, status: int = 200) -> None:
        self._send(status, {"Code": 200, "Success": True, "Message": "success", "Data": data, "RequestId": "fake"})

    def _route_ms(self, method: str, path: str, query: dict, body: bytes) -> None:
        f = self.fake
        if method == "POST" and path in ("/api/v1/models", "/openapi/v1/studios"):
            if self._fail("create"):
                return
            p = json.loads(body or b"{}")
            if path == "/api/v1/models":
                rtype, rid = "model", f"{p['Path']}/{p['Name']}"
            else:
                rtype, rid = "studio", f"{p['owner']}/{p['repo_name']}"
            if (rtype, rid) in f.repos:
                return self._send(409, {"Code": 10010101004, "Success": False, "Message": "repo already exists"})
            f.repos[(rtype, rid)] = {"meta": p, "files": {}}
            if rtype == "studio":
                owner, name = rid.split("/")
                return self._send(200, {"success": True, "data": {"owner": owner, "repo_name": name, "id": rid}})
            return self._ms_ok({"Path": p["Path"], "Name": p["Name"]})

        m = re.fullmatch(r"/api/v1/repos/(model|dataset|studio)s/(.+?)/info/lfs/objects/batch", path)
        if method == "POST" and m:
            p = json.loads(body)
            objs = []
            for o in p["objects"]:
                oid = o["oid"]
                up = {} if oid in f.blobs else {"upload": {"href": f"{f.url}/_lfs/{oid}"}}
                objs.append({"oid": oid, "size": o.get("size"), "actions": up})
            return self._ms_ok({"objects": objs})

        m = re.fullmatch(r"/api/v1/repos/(model|dataset|studio)s/(.+?)/commit/([^/]+)", path)
        if method == "POST" and m:
            if self._fail("commit"):
                return
            rtype, rid = m.group(1), m.group(2)
            repo = f._repo(rtype, rid)
            if repo is None:
                return self._send(404, {"Code": 404, "Success": False, "Message": "repo not found"})
            p = json.loads(body)
            changed = []
            for a in p["actions"]:
                if a.get("action") == "delete":
                    repo["files"].pop(a["path"], None)
                    continue
                if a.get("type") == "lfs":
                    oid = a.get("sha256")
                    if oid not in f.blobs:
                        return self._send(422, {"Code": 422, "Success": False, "Message": f"blob {oid} missing"})
                    repo["files"][a["path"]] = f.blobs[oid]
                else:
                    repo["files"][a["path"]] = base64.b64decode(a.get("content") or "")
                changed.append(a["path"])
            f.commits.append({"hub": "modelscope", "type": rtype, "repo": rid, "paths": changed})
            return self._ms_ok({"CommitId": hashlib.sha1(json.dumps(changed).encode()).hexdigest()})

        m = re.fullmatch(r"/openapi/v1/studios/([^/]+)/([^/]+)/(deploy|start|restart)", path)
        if method in ("POST", "PUT") and m:
            f.deployed.append(f"{m.group(1)}/{m.group(2)}")
            return self._send(200, {"success": True, "data": {"status": "Deploying"}})

        m = re.fullmatch(r"/api/v1/(model|dataset|studio)s/([^/]+/[^/]+)", path)
        if method == "GET" and m:
            repo = f._repo(m.group(1), m.group(2))
            if repo is None:
                return self._send(404, {"Code": 404, "Success": False, "Message": "not found"})
            return self._ms_ok({"Path": m.group(2).split("/")[0], "Name": m.group(2).split("/")[1]})

        m = re.fullmatch(r"/api/v1/(?:repos/)?(model|dataset|studio)s/(.+?)/repo/files", path)
        if method == "GET" and m:
            repo = f._repo(m.group(1), m.group(2))
            files = [] if repo is None else [{"Path": p, "Name": p, "Type": "blob", "Size": len(b)}
                                             for p, b in repo["files"].items()]
            return self._ms_ok({"Files": files})
        return self._send(404, {"Code": 404, "Success": False, "Message": f"fake hub: no route for {method} {path}"})


def fake_model_dir(path, *, weights_bytes: int = 1_500_000, adapter_base: str | None = None):
    """A folder shaped like a merged model (or, with `adapter_base`, a PEFT adapter): no real weights.

    Enough for card, staging and push tests, which never load the model; the weights file is large
    enough (> 1 MB) that the fake hub answers "lfs" for it.
    """
    import os
    from pathlib import Path

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    blob = os.urandom(weights_bytes)
    if adapter_base is not None:
        (p / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": adapter_base,
                                                           "peft_type": "LORA", "r": 8}))
        (p / "adapter_model.safetensors").write_bytes(blob)
    else:
        (p / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
        (p / "model.safetensors").write_bytes(blob)
        (p / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
        (p / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
        (p / "generation_config.json").write_text(json.dumps({"eos_token_id": [2]}))
    # training leftovers that must not be published
    (p / "trainer_state.json").write_text("{}")
    (p / "rng_state.pth").write_bytes(b"x")
    return p
