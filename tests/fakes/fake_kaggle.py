"""A loopback fake of the Kaggle API that the real `kaggle` 2.2.5 CLI talks to.

The CLI has no endpoint variable: KAGGLE_API_ENVIRONMENT=LOCALHOST sends it to http://localhost/api/v1/…
and HTTP_PROXY=http://127.0.0.1:<port> makes `requests` hand those absolute-form requests to this
server, which routes on the path (docs/kaggle.md, "What the kit relies on"). `FakeKaggle.env(tmp)`
returns that
environment with a fresh HOME/TMPDIR/KAGGLE_CONFIG_DIR, so resumable-upload state never leaks.

    with FakeKaggle() as fake:
        subprocess.run([kaggle, "datasets", "status", "me/some-data"], env=fake.env(tmp_path))
        fake.datasets["me/some-data"]   # versions, each {file name: uploaded bytes}
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

API = "/api/v1/"


class FakeKaggle:
    def __init__(self, username: str = "tester"):
        self.username = username
        self.datasets: dict[str, list[dict]] = {}  # "owner/slug" -> versions: {"files", "notes", "meta"}
        self.kernels: dict[str, list[dict]] = {}  # "owner/slug" -> SaveKernel request bodies
        self.submissions: list[dict] = []  # CreateCodeSubmission request bodies; ref = 1001 + index
        # what GetSubmission answers for a ref (ApiSubmission fields); default PENDING, no scores
        self.scoring: dict[int, dict] = {}
        # how many GetSubmission answers for a ref stay PENDING before `scoring` applies (a long scoring)
        self.pending_polls: dict[int, int] = {}
        # CreateCodeSubmission's `message`: the client prints it as is, but what the real server puts
        # there for a code submission is not documented, so by default the fake sends none
        self.submit_message: str | None = None
        self.blobs: dict[str, dict] = {}  # upload token -> {"name", "length", "data"}
        self.calls: list[tuple[str, str]] = []  # (HTTP method, API method or path)
        self.faults: dict[str, str] = {}  # API method -> "http500" | "error-body" (| "no-ref": submit)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakeKaggle:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, tmp, base: dict | None = None) -> dict:
        """Environment for a CLI subprocess: this fake, fake legacy credentials, throwaway dirs."""
        import os
        from pathlib import Path

        tmp = Path(tmp)
        dirs = {k: tmp / k.lower() for k in ("HOME", "TMPDIR", "KAGGLE_CONFIG_DIR")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in (base or os.environ).items()
               if not k.startswith(("KAGGLE_", "HF_")) and k.lower() not in ("no_proxy", "http_proxy",
                                                                                "https_proxy", "all_proxy")}
        env.update({k: str(v) for k, v in dirs.items()})
        env.update({"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "KAGGLE_USERNAME": self.username,
                    "KAGGLE_KEY": "fake-key-for-a-loopback-server", "HTTP_PROXY": self.url,
                    "http_proxy": self.url, "NO_PROXY": "", "no_proxy": ""})
        return env

    def methods(self) -> list[str]:
        return [m for _, m in self.calls]

    # ---- API methods: request body (camelCase JSON) -> (status, response body) ----

    def handle(self, method: str, body: dict) -> tuple[int, dict]:
        fault = self.faults.pop(method, None)
        if fault == "http500":
            return 500, {"code": 500, "message": "fake internal error"}
        if method == "security.OAuthService/IntrospectToken":
            return 200, {"active": True, "username": self.username}
        if method == "datasets.DatasetApiService/GetDatasetStatus":
            ref = f"{body.get('ownerSlug')}/{body.get('datasetSlug')}"
            if ref not in self.datasets:
                return 404, {"code": 404, "message": f"Dataset {ref} not found"}
            return 200, {"status": "READY"}
        if method == "blobs.BlobApiService/StartBlobUpload":
            token = f"blob{len(self.blobs) + 1}"
            self.blobs[token] = {"name": body.get("name"), "length": int(body.get("contentLength", 0)),
                                 "data": None}  # bytes once a PUT completes it
            return 200, {"token": token, "createUrl": f"{self.url}/upload/{token}"}
        if method in ("datasets.DatasetApiService/CreateDataset",
                      "datasets.DatasetApiService/CreateDatasetVersion"):
            create = method.endswith("CreateDataset")
            ref = f"{body.get('ownerSlug')}/{body.get('slug') if create else body.get('datasetSlug')}"
            if fault == "error-body":
                return 200, {"status": "Error", "error": "fake server-side failure", "invalidTags": []}
            if create == (ref in self.datasets):
                why = "already in use" if create else "not found"
                return 200, {"status": "Error", "error": f"dataset {ref} {why}", "invalidTags": []}
            files = (body if create else body.get("body", {})).get("files", [])
            missing = [f["token"] for f in files if self.blobs.get(f["token"], {}).get("data") is None
                       or len(self.blobs[f["token"]]["data"]) != self.blobs[f["token"]]["length"]]
            if missing:
                return 200, {"status": "Error", "error": f"unknown blobs {missing}", "invalidTags": []}
            self.datasets.setdefault(ref, []).append({
                "files": {self.blobs[f["token"]]["name"]: self.blobs[f["token"]]["data"] for f in files},
                "notes": None if create else body.get("body", {}).get("versionNotes"),
                "meta": {k: v for k, v in body.items() if k != "files"}})
            return 200, {"ref": f"/datasets/{ref}", "url": f"https://www.kaggle.com/datasets/{ref}",
                         "status": "Ok", "error": None, "invalidTags": []}
        if method == "kernels.KernelsApiService/SaveKernel":
            if fault == "error-body":
                return 200, {"error": "fake kernel push failure"}
            ref = body.get("slug")
            self.kernels.setdefault(ref, []).append(body)
            bad = [d for d in body.get("datasetDataSources", []) if d not in self.datasets]
            return 200, {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}",
                         "versionNumber": len(self.kernels[ref]), "error": None, "invalidTags": [],
                         "invalidDatasetSources": bad, "invalidCompetitionSources": [],
                         "invalidKernelSources": [], "invalidModelSources": []}
        if method == "competitions.CompetitionApiService/CreateCodeSubmission":
            ref = f"{body.get('kernelOwner')}/{body.get('kernelSlug')}"
            version = int(body.get("kernelVersion", 0))
            if version < 1 or version > len(self.kernels.get(ref, [])):
                return 404, {"code": 404, "message": f"kernel {ref} version {version} not found"}
            if fault == "no-ref":  # a 200 that names no submission
                return 200, {}
            self.submissions.append(body)
            reply = {"ref": 1000 + len(self.submissions)}  # ApiCreateCodeSubmissionResponse: message, ref
            return 200, reply if self.submit_message is None else {**reply, "message": self.submit_message}
        # `competitions submission REF`, --wait
        if method == "competitions.CompetitionApiService/GetSubmission":
            ref = int(body.get("ref", 0))
            if not 1001 <= ref <= 1000 + len(self.submissions):
                return 404, {"code": 404, "message": f"submission {ref} not found"}
            b = self.submissions[ref - 1001]
            if self.pending_polls.get(ref, 0) > 0:
                self.pending_polls[ref] -= 1
                return 200, {"ref": ref, "fileName": b.get("fileName"), "status": "PENDING"}
            return 200, {"ref": ref, "fileName": b.get("fileName"), "date": "2026-11-27T12:00:00Z",
                         "description": b.get("submissionDescription"), "status": "PENDING",
                         **self.scoring.get(ref, {})}
        if method == "competitions.CompetitionApiService/ListSubmissions":  # newest first, as Kaggle lists
            mine = [(i, b) for i, b in enumerate(self.submissions)
                    if b.get("competitionName") == body.get("competitionName")]
            return 200, {"submissions": [
                {"ref": 1001 + i, "fileName": b.get("fileName"), "date": "2026-11-27T12:00:00Z",
                 "description": b.get("submissionDescription"), "status": "PENDING"}
                for i, b in reversed(mine)]}
        if method == "competitions.CompetitionApiService/GetSubmissionLimits":
            return 200, {"numAllowedNow": 5 - len(self.submissions)}
        return 404, {"code": 404, "message": f"fake Kaggle has no {method}"}

    def put(self, token: str, headers, data: bytes) -> tuple[int, dict]:
        """GCS-style resumable PUT -> (status, extra headers). A `bytes */N` probe with no body (the CLI
        resuming a stale upload) gets 404, so the CLI starts over."""
        blob = self.blobs.get(token)
        rng = headers.get("Content-Range", "")
        if blob is None or (rng.startswith("bytes */") and not data):
            return 404, {}
        start = int(rng.split()[1].split("-")[0]) if rng.startswith("bytes ") and "*" not in rng else 0
        blob["data"] = (blob["data"] or b"")[:start] + data
        if len(blob["data"]) >= blob["length"]:
            return 200, {}
        return 308, {"Range": f"bytes=0-{len(blob['data']) - 1}"}


def _handler(fake: FakeKaggle):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            path = urlsplit(self.path).path  # absolute-form via the proxy, or origin-form
            raw = self._body()
            method = path[len(API):] if path.startswith(API) else path
            with fake._lock:
                fake.calls.append(("POST", method))
                body = json.loads(raw or b"{}")
                status, payload = fake.handle(method, body)
            self._reply(status, payload)

        def do_PUT(self):
            path = urlsplit(self.path).path
            data = self._body()
            with fake._lock:
                fake.calls.append(("PUT", path))
                token = path.rsplit("/", 1)[-1] if path.startswith("/upload/") else ""
                status, headers = fake.put(token, self.headers, data)
            self._reply(status, {}, headers)

        def do_GET(self):
            with fake._lock:
                fake.calls.append(("GET", urlsplit(self.path).path))
            self._reply(404, {"code": 404, "message": "not found"})

    return Handler
