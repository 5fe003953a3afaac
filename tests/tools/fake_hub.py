#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub's download API, for tests (no outside network).

    fake_hub.py SPEC.json PORT_FILE LOG_FILE

SPEC: {"token": "..." (optional: then requests need "Authorization: Bearer <token>"),
       "repos": {"org/name": {"commit": "<40 hex>", "refs": ["main", ...],
                              "files": {"path": {"text": "...", "lfs": bool, "served": "..." (optional:
                                        bytes actually sent, to imitate corruption)}}}}}
Serves, as huggingface.co does:
  GET /api/models/{repo}/revision/{rev}[?blobs=true] -> {"id", "sha", "siblings": [{"rfilename",
      "blobId" (git blob sha1), "size", "lfs": {"sha256", "size", "pointerSize"} for LFS files}]}
  GET /{repo}/resolve/{rev}/{path} -> the bytes, with X-Repo-Commit, ETag (the blob sha1, or for LFS
      files the sha256, which is also in X-Linked-Etag with X-Linked-Size), honouring "Range: bytes=N-".
The chosen port is written to PORT_FILE; each request is logged to LOG_FILE as
"GET <path> range=<Range> auth=<Authorization>".
"""

import hashlib
import http.server
import json
import sys
import urllib.parse


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def main() -> None:
    spec_path, port_file, log_file = sys.argv[1:4]
    with open(spec_path) as f:
        spec = json.load(f)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def send_json(self, status, payload, extra=None):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with open(log_file, "a") as log:
                log.write(f"GET {self.path} range={self.headers.get('Range', '')} "
                          f"auth={self.headers.get('Authorization', '')}\n")
            token = spec.get("token")
            if token and self.headers.get("Authorization") != f"Bearer {token}":
                return self.send_json(401, {"error": "Invalid credentials"})
            path = urllib.parse.urlparse(self.path).path
            parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
            if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "revision":
                return self.model_info(parts[2] + "/" + parts[3], parts[5])
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]))
            self.send_json(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})

        def find(self, repo_id, revision):
            repo = spec["repos"].get(repo_id)
            if repo is None:
                self.send_json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return None
            if revision != repo["commit"] and revision not in repo["refs"]:
                self.send_json(404, {"error": f"Invalid rev id: {revision}"}, {"X-Error-Code": "RevisionNotFound"})
                return None
            return repo

        def model_info(self, repo_id, revision):
            repo = self.find(repo_id, revision)
            if repo is None:
                return
            siblings = []
            for name, f in repo["files"].items():
                data = f["text"].encode()
                sibling = {"rfilename": name, "blobId": git_blob_sha1(data), "size": len(data)}
                if f.get("lfs"):
                    sibling["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                siblings.append(sibling)
            self.send_json(200, {"id": repo_id, "sha": repo["commit"], "siblings": siblings})

        def resolve(self, repo_id, revision, name):
            repo = self.find(repo_id, revision)
            if repo is None:
                return
            f = repo["files"].get(name)
            if f is None:
                return self.send_json(404, {"error": "Entry not found"},
                                      {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo["commit"]})
            data = f["text"].encode()
            served = f.get("served", f["text"]).encode()
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes=") and ranged.endswith("-"):
                start = int(ranged[len("bytes="):-1])
                if start >= len(served):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(served)}")
                    self.end_headers()
                    return
            body = served[start:]
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", repo["commit"])
            if f.get("lfs"):
                sha256 = hashlib.sha256(data).hexdigest()
                self.send_header("ETag", f'"{sha256}"')
                self.send_header("X-Linked-Etag", f'"{sha256}"')
                self.send_header("X-Linked-Size", str(len(data)))
            else:
                self.send_header("ETag", f'"{git_blob_sha1(data)}"')
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(served) - 1}/{len(served)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
