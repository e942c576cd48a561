"""A tiny in-memory stand-in for the Hub's HTTP API on 127.0.0.1, enough for push_to_hub and from_pretrained.

Answers repo creation, YAML validation, preupload (always "regular" uploads), ndjson commits with base64 files,
HEAD/GET of files by revision, and model info / file trees. Unknown routes get 404 and are recorded in `unknown`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

MAX_BODY = 64 * 2**20  # refuse anything larger: the test models are tiny


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.unknown: list[str] = []
        self.lock = threading.Lock()

    def commit(self, repo: str, files: dict[str, bytes]) -> str:
        with self.lock:
            self.repos.setdefault(repo, {}).update(files)
            digest = hashlib.sha1(repr(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in self.repos[repo].items())).encode())
            self.commits[repo] = digest.hexdigest()
            return self.commits[repo]


def _handler(state: HubState):
    class Handler(BaseHTTPRequestHandler):
        timeout = 30

        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length) if length else b""

        def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _missing(self, code: str = "RepoNotFound") -> None:
            self._json({"error": code}, 404, {"X-Error-Code": code, "X-Error-Message": code})

        def _info(self, repo: str) -> dict:
            files = state.repos.get(repo, {})
            return {
                "id": repo, "modelId": repo, "sha": state.commits.get(repo, "0" * 40), "private": False,
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())],
            }

        def do_POST(self) -> None:
            path = unquote(urlparse(self.path).path)
            body = self._body()
            if path == "/api/repos/create":
                request = json.loads(body or b"{}")
                repo = "/".join(filter(None, [request.get("organization"), request["name"]]))
                state.repos.setdefault(repo, {})
                return self._json({"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
            if path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            m = re.fullmatch(r"/api/models/(.+)/preupload/([^/]+)", path)
            if m:
                files = json.loads(body)["files"]
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                             for f in files], "commitOid": state.commits.get(m.group(1), "0" * 40)})
            m = re.fullmatch(r"/api/models/(.+)/commit/([^/]+)", path)
            if m:
                files = {}
                for line in body.decode().splitlines():
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] not in ("header", "deletedFile", "deletedFolder"):
                        state.unknown.append(f"commit item {item['key']}")
                oid = state.commit(m.group(1), files)
                return self._json({"commitUrl": f"http://{self.headers['Host']}/{m.group(1)}/commit/{oid}",
                                   "commitOid": oid, "pullRequestUrl": None})
            state.unknown.append(f"POST {path}")
            self._missing()

        def _resolve(self) -> bool:
            path = unquote(urlparse(self.path).path)
            m = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
            if not m:
                return False
            repo, _, name = m.groups()
            if repo not in state.repos:
                self._missing("RepoNotFound")
                return True
            data = state.repos[repo].get(name)
            if data is None:
                self._missing("EntryNotFound")
                return True
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", state.commits.get(repo, "0" * 40))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(data)
            return True

        def do_HEAD(self) -> None:
            if not self._resolve():
                state.unknown.append(f"HEAD {self.path}")
                self._missing()

        def do_GET(self) -> None:
            if self._resolve():
                return
            path = unquote(urlparse(self.path).path)
            if path == "/api/agent-harnesses":  # huggingface_hub 2.x fetches this registry; an empty one
                return self._json({"standardEnvVars": [], "harnesses": {}})
            m = re.fullmatch(r"/api/models/(.+?)(?:/revision/([^/]+))?", path)
            if m and "/tree/" not in path:
                return self._json(self._info(m.group(1))) if m.group(1) in state.repos else self._missing()
            m = re.fullmatch(r"/api/models/(.+?)/tree/([^/]+)(?:/(.*))?", path)
            if m and m.group(1) in state.repos:
                files = state.repos[m.group(1)]
                return self._json([{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                   for n, d in sorted(files.items())])
            state.unknown.append(f"GET {path}")
            self._missing()

    return Handler


class LoopbackHub:
    """`with LoopbackHub() as hub:` serves on `hub.endpoint` from a daemon thread until the block ends."""

    def __init__(self) -> None:
        self.state = HubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LoopbackHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
