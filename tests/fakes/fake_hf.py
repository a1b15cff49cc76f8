"""A loopback fake of the Hugging Face Hub (huggingface_hub 2.x): create_repo + upload_folder, and the
downloads hf_hub_download / snapshot_download make.

The client must run with HF_ENDPOINT=<fake.url> (read at import: use a subprocess, or pass
HfApi(endpoint=...)) and HF_HUB_DISABLE_XET=1, so uploads are plain commits instead of Xet CAS
transfers (docs/kaggle.md, "What the kit relies on"). Every file is answered `uploadMode: regular`,
so its bytes arrive
base64-encoded inside the NDJSON commit; LFS is never asked for.

    with FakeHub() as hub:
        ...; hub.repos["me/model"]["files"]   # {path: bytes} after the last commit
        oid = hub.put("me/model", {"a/step_1": b"..."}, private=True)   # a commit, without the client

Downloads: HEAD/GET /{repo}/resolve/{rev}/{path} (ETag, X-Repo-Commit, Content-Length),
GET /api/models/{repo}/revision/{rev} and /api/models/{repo}/tree/{rev}. A revision is "main", a
commit oid or a name in repo["refs"]; every commit's files are kept, so an old revision still
answers. Errors carry the Hub's X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound). A
private repo answers 401 to any read without `Authorization: Bearer <hub.token>`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class FakeHub:
    def __init__(self, user: str = "tester", token: str = "hf_test_token"):
        self.user, self.token = user, token
        # "owner/name" -> {"type", "private", "files", "commits", "history": {oid: files},
        #                  "refs": {name: oid}}
        self.repos: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # Authorization header of each request
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, tmp, base: dict, token: str | None = "hf_test_token") -> dict:
        from pathlib import Path

        home = Path(tmp) / "hf-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in base.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"
               and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
        env.update(HF_ENDPOINT=self.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="0", NO_PROXY="127.0.0.1,localhost",
                   no_proxy="127.0.0.1,localhost")
        if token:
            env["HF_TOKEN"] = token
        return env

    def put(self, repo_id: str, files: dict[str, bytes], private: bool = False) -> str:
        """Commit `files` to a model repo (created if new) without going through the client; the oid."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, _new_repo("model", private))
            lines = [json.dumps({"key": "header", "value": {"summary": f"put {sorted(files)}"}})]
            lines += [json.dumps({"key": "file", "value": {"path": k, "encoding": "base64",
                                                           "content": base64.b64encode(v).decode()}})
                      for k, v in files.items()]
            status, out = self._commit(repo_id, repo, "\n".join(lines).encode())
        assert status == 200, out
        return out["commitOid"]

    def route(self, method: str, path: str, body: bytes, auth: str | None = None) -> tuple:
        """(status, payload) or (status, payload, headers); payload: JSON-able, or bytes sent as is."""
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":  # /{owner}/{name}/resolve/{rev}/{path...}
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), auth)
        if path == "/api/whoami-v2":
            return 200, {"type": "user", "name": self.user, "auth": {"type": "access_token"}, "orgs": []}
        if path == "/api/repos/create" and method == "POST":
            req = json.loads(body)
            repo_id = f"{req.get('organization') or self.user}/{req['name']}"
            url = f"{self.url}/{repo_id}"
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": url}
            self.repos[repo_id] = _new_repo(req.get("type") or "model",
                                            req.get("private", req.get("visibility") == "private"))
            return 200, {"url": url, "name": repo_id}
        if path == "/api/validate-yaml" and method == "POST":
            problems = check_card(json.loads(body).get("content", ""))
            return (400 if problems else 200), {"errors": [{"message": m} for m in problems], "warnings": []}
        # /api/{type}s/{owner}/{name}/{action}/{rev...}
        if len(parts) >= 5 and parts[0] == "api" and parts[1] in ("models", "datasets", "spaces"):
            repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
            repo = self.repos.get(repo_id)
            if repo is None:
                return 404, {"error": f"Repository {repo_id} not found"}, {"X-Error-Code": "RepoNotFound"}
            if action in ("revision", "tree"):
                denied = self._denied(repo, auth)
                if denied:
                    return denied
                oid = self._rev(repo, parts[5] if len(parts) > 5 else "main")
                if oid is None:
                    return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
                files = repo["history"].get(oid, {})
                if action == "tree":
                    return 200, [{"type": "file", "path": p, "size": len(b), "oid": _etag(b)}
                                 for p, b in sorted(files.items())]
                return 200, {"id": repo_id, "sha": oid, "private": repo["private"],
                             "siblings": [{"rfilename": p} for p in files]}
            if action == "preupload":
                files = json.loads(body).get("files", [])
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files], "commitOid": self._head(repo)}
            if action == "commit":
                return self._commit(repo_id, repo, body)
            if action == "paths-info":
                return 200, []
        return 404, {"error": f"fake hub has no {method} {path}"}

    @staticmethod
    def _head(repo: dict) -> str:
        return repo["commits"][-1] if repo["commits"] else "0" * 40

    @staticmethod
    def _rev(repo: dict, rev: str) -> str | None:
        """The commit oid a revision names (main, an oid, a ref), or None."""
        if rev == "main":
            return FakeHub._head(repo)
        return rev if rev in repo["history"] else repo["refs"].get(rev)

    def _denied(self, repo: dict, auth: str | None) -> tuple | None:
        if repo["private"] and auth != f"Bearer {self.token}":
            return 401, {"error": "Invalid username or password."}, {
                "X-Error-Code": "RepoNotFound", "X-Error-Message": "Invalid username or password."}
        return None

    def _resolve(self, repo_id: str, rev: str, path: str, auth: str | None) -> tuple:
        repo = self.repos.get(repo_id)
        if repo is None or repo["type"] != "model":
            return 401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        denied = self._denied(repo, auth)
        if denied:
            return denied
        oid = self._rev(repo, rev)
        if oid is None:
            return 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"}
        data = repo["history"].get(oid, {}).get(path)
        if data is None:
            return 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": oid}
        return 200, data, {"ETag": f'"{_etag(data)}"', "X-Repo-Commit": oid,
                           "Content-Type": "application/octet-stream"}

    def _commit(self, repo_id: str, repo: dict, body: bytes) -> tuple[int, object]:
        header, added = None, {}
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            if item["key"] == "header":
                header = item["value"]
            elif item["key"] == "file":
                v = item["value"]
                data = v["content"].encode()
                added[v["path"]] = base64.b64decode(data) if v.get("encoding") == "base64" else data
            elif item["key"] == "deletedFile":
                repo["files"].pop(item["value"]["path"], None)
            else:  # lfsFile and the rest: this fake never asks for LFS
                return 400, {"error": f"unexpected commit operation {item['key']}"}
        oid = hashlib.sha1(json.dumps([header, sorted(added)]).encode()
                           + bytes(len(repo["commits"]))).hexdigest()
        repo["files"].update(added)
        repo["commits"].append(oid)
        repo["history"][oid] = dict(repo["files"])
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                     "commitMessage": (header or {}).get("summary")}


def _new_repo(kind: str, private: bool) -> dict:
    return {"type": kind, "private": bool(private), "files": {}, "commits": [], "history": {}, "refs": {}}


def _etag(data: bytes) -> str:
    """git's blob id, as the Hub gives for a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_card(readme: str) -> list[str]:
    """The Hub's README metadata check, reduced to what a model-index needs."""
    import yaml

    if not readme.startswith("---\n"):
        return ["no YAML front matter"]
    try:
        meta = yaml.safe_load(readme.split("\n---", 1)[0][4:])
    except yaml.YAMLError as e:
        return [f"YAML: {e}"]
    problems = [] if isinstance(meta, dict) else ["front matter is not a mapping"]
    for entry in (meta or {}).get("model-index", []) if not problems else []:
        for res in entry.get("results", []):
            if not res.get("task", {}).get("type") or not res.get("dataset", {}).get("type"):
                problems.append("model-index result without task.type / dataset.type")
            for m in res.get("metrics", []):
                if "type" not in m or not isinstance(m.get("value"), (int, float, str)):
                    problems.append(f"bad metric {m}")
    return problems


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _serve(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                import gzip

                body = gzip.decompress(body)
            with hub._lock:
                hub.calls.append((method, path))
                hub.auth.append(self.headers.get("Authorization"))
                status, payload, *extra = hub.route(method, path, body, self.headers.get("Authorization"))
            headers = {"Content-Type": "application/json", **(extra[0] if extra else {})}
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_HEAD(self):
            self._serve("HEAD")

    return Handler
