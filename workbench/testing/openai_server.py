"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks: fixed latency,
scripted faults, and the Batch API's files and batches endpoints.

It answers the documented shapes of `/v1/completions`, `/v1/chat/completions`, `/v1/files`,
`/v1/batches` and `/v1/files/{id}/content` with deterministic text (a function of the request's
seed and the choice), so a test can check that each sample is stored exactly once. Faults are
scripted per request, in order: `ok` (a normal reply), `429` (with Retry-After: `retry_after_s`,
which may be huge), `500`, `malformed` (a 200 whose body is not JSON), the wrong-shape 200s
`text_object` (the text is a JSON object), `logprob_string` (a logprob is not a number) and
`usage_string` (usage is a string), `slow` (no reply before the client's timeout), `hang` (the
connection is accepted and never answered, until the server shuts down), `drop` (the connection
closes without a reply), `short` (fewer choices than `n`), `401` (a wrong key, echoed back in part
as `key[:8]...key[-4:]` whatever the key looks like, and in full) and `400` (a request the server
refuses).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("ok", "429", "500", "malformed", "text_object", "logprob_string", "usage_string", "slow", "hang",
          "drop", "short", "401", "400")
# Valid JSON of the wrong shape, as a buggy server or proxy might send it.
WRONG_SHAPES = ("text_object", "logprob_string", "usage_string")
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


@dataclass
class ServerState:
    """What the server was told to do and what it saw."""

    latency_s: float = 0.0
    slow_s: float = 5.0
    retry_after_s: float = 0.2
    max_choices: int | None = None  # at most this many choices per reply (llama.cpp ignores `n`: 1)
    faults: list[str] = field(default_factory=list)  # consumed one per generation request
    requests: list[dict[str, Any]] = field(default_factory=list)  # bodies of generation requests
    headers: list[dict[str, str]] = field(default_factory=list)
    keep_requests: bool = True  # a benchmark's server keeps no bodies (memory stays flat)
    in_flight: int = 0
    max_in_flight: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)  # set at shutdown: `hang` ends

    def next_fault(self) -> str | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None


def fake_text(seed: Any, choice: int, max_tokens: int) -> list[str]:
    """The deterministic tokens a request with this seed returns for a choice."""
    digest = hashlib.sha256(f"{seed}:{choice}".encode()).digest()
    count = max(1, min(max_tokens, 3 + digest[0] % 4))
    return [" " + WORDS[digest[i + 1] % len(WORDS)] for i in range(count)]


def completion_reply(path: str, body: dict[str, Any], n_choices: int) -> dict[str, Any]:
    """A completions or chat-completions reply in the documented shape, with logprobs when asked."""
    max_tokens = int(body.get("max_tokens") or 16)
    prompt = body.get("prompt") if path.endswith("/completions") and "chat" not in path else body.get("messages")
    prompt_tokens = max(1, len(json.dumps(prompt)) // 4)
    choices, completion_tokens = [], 0
    for i in range(n_choices):
        tokens = fake_text(body.get("seed"), i, max_tokens)
        completion_tokens += len(tokens)
        finish = "length" if len(tokens) == max_tokens else "stop"
        logprobs = [-0.1 * (j + 1) for j in range(len(tokens))]
        if "chat" in path:
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": "".join(tokens)},
                                      "finish_reason": finish}
            if body.get("logprobs"):
                k = int(body.get("top_logprobs") or 0)
                choice["logprobs"] = {"content": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode()),
                     "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}][:k]}
                    for t, lp in zip(tokens, logprobs)]}
        else:
            choice = {"index": i, "text": "".join(tokens), "finish_reason": finish, "logprobs": None}
            if body.get("logprobs"):
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": logprobs,
                                      "top_logprobs": [{t: lp} for t, lp in zip(tokens, logprobs)],
                                      "text_offset": list(range(len(tokens)))}
        choices.append(choice)
    return {
        "id": f"cmpl-{hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]}",
        "object": "chat.completion" if "chat" in path else "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "fake-model"),
        "system_fingerprint": "fake-server",
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def wrong_shape_reply(path: str, body: dict[str, Any], fault: str) -> dict[str, Any]:
    """A normal reply with one field of the wrong JSON type (see WRONG_SHAPES)."""
    reply = completion_reply(path, {**body, "logprobs": body.get("logprobs") or 1}, int(body.get("n") or 1))
    choice = reply["choices"][0]
    if fault == "text_object":
        if "message" in choice:
            choice["message"]["content"] = {"text": choice["message"]["content"]}
        else:
            choice["text"] = {"text": choice["text"]}
    elif fault == "logprob_string":
        if "message" in choice:
            choice["logprobs"]["content"][0]["logprob"] = "not a number"
        else:
            choice["logprobs"]["token_logprobs"][0] = "not a number"
    else:
        reply["usage"] = "lots of tokens"
    return reply


class _Handler(BaseHTTPRequestHandler):
    server: "FakeOpenAIServer"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds ~40 ms
    # to every reply, which would swamp the latency the benchmark sets.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the recorded requests instead

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?")[0]
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        elif path.startswith("/v1/batches/"):
            batch = state.batches.get(path.rsplit("/", 1)[1])
            if batch is None:
                self._send_json(404, {"error": {"message": "no such batch", "type": "invalid_request_error"}})
                return
            self._advance_batch(batch)
            self._send_json(200, batch["public"])
        elif path.startswith("/v1/files/") and path.endswith("/content"):
            file_id = path.split("/")[3]
            data = state.files.get(file_id)
            if data is None:
                self._send_json(404, {"error": {"message": "no such file"}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._send_json(404, {"error": {"message": f"unknown path {path}"}})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/v1/completions", "/v1/chat/completions"):
            self._generate(path)
        elif path == "/v1/files":
            self._upload()
        elif path == "/v1/batches":
            self._create_batch()
        else:
            self._body()
            self._send_json(404, {"error": {"message": f"unknown path {path}"}})

    def _generate(self, path: str) -> None:
        state = self.server.state
        body = json.loads(self._body())
        with state.lock:
            if state.keep_requests:
                state.requests.append(body)
                state.headers.append({k.lower(): v for k, v in self.headers.items()})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            fault = state.next_fault()
            if state.latency_s:
                time.sleep(state.latency_s)
            if fault == "429":
                self._send_json(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                {"Retry-After": f"{state.retry_after_s:g}"})
            elif fault == "401":
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                self._send_json(401, {"error": {"message": f"Incorrect API key provided: {given[:8]}...{given[-4:]}. "
                                                           f"Full key sent: {given}", "type": "invalid_request_error",
                                                "code": "invalid_api_key"}})
            elif fault == "400":
                self._send_json(400, {"error": {"message": "Unrecognized request argument supplied: top_k",
                                                "type": "invalid_request_error"}})
            elif fault == "500":
                self._send_json(500, {"error": {"message": "The server had an error", "type": "server_error"}})
            elif fault == "malformed":
                data = b'{"id": "cmpl-broken", "choices": [{"text": "unterminated'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif fault in WRONG_SHAPES:
                self._send_json(200, wrong_shape_reply(path, body, fault))
            elif fault == "hang":
                state.closing.wait()  # the connection stays open and silent until the server stops
                self.close_connection = True
            elif fault == "slow":
                time.sleep(state.slow_s)
                self._send_json(200, completion_reply(path, body, int(body.get("n") or 1)))
            elif fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                n = min(int(body.get("n") or 1), state.max_choices or 10**6)
                self._send_json(200, completion_reply(path, body, max(1, n - 1) if fault == "short" else n))
        finally:
            with state.lock:
                state.in_flight -= 1

    def _upload(self) -> None:
        state = self.server.state
        raw = self._body()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
        content = b""
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                content = part.get_payload(decode=True) or b""
        file_id = f"file-{hashlib.sha256(content).hexdigest()[:16]}"
        state.files[file_id] = content
        self._send_json(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                              "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})

    def _create_batch(self) -> None:
        state = self.server.state
        body = json.loads(self._body())
        batch_id = f"batch_{len(state.batches) + 1:04d}"
        lines = [json.loads(line) for line in state.files[body["input_file_id"]].decode().splitlines() if line]
        public = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        }
        state.batches[batch_id] = {"public": public, "polls": 0, "lines": lines}
        self._send_json(200, public)

    def _advance_batch(self, batch: dict[str, Any]) -> None:
        """validating -> in_progress -> completed over successive polls, like a real (slow) batch."""
        batch["polls"] += 1
        public = batch["public"]
        if batch["polls"] == 1:
            public["status"] = "in_progress"
        elif public["status"] == "in_progress":
            out = []
            for line in batch["lines"]:
                reply = completion_reply(line["url"], line["body"], int(line["body"].get("n") or 1))
                out.append(json.dumps({"id": f"batch_req_{line['custom_id']}", "custom_id": line["custom_id"],
                                       "response": {"status_code": 200, "request_id": "req", "body": reply},
                                       "error": None}))
            file_id = f"file-out-{public['id']}"
            self.server.state.files[file_id] = ("\n".join(out) + "\n").encode()
            public.update(status="completed", output_file_id=file_id, completed_at=int(time.time()),
                          request_counts={"total": len(out), "completed": len(out), "failed": 0})


class FakeOpenAIServer(ThreadingHTTPServer):
    """Serve on 127.0.0.1 on a free port in a daemon thread; use as a context manager."""

    daemon_threads = True
    # The listen backlog: socketserver's default of 5 refuses connections when a client opens 64 at
    # once (the raw SDK then sees APIConnectionError); a benchmark at concurrency 256 must measure
    # the client. Each connection gets its own thread (ThreadingHTTPServer), kept alive across requests.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) closes its socket mid-reply: expected, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def __init__(self, latency_s: float = 0.0, faults: list[str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = ServerState(latency_s=latency_s, faults=list(faults or []))
        unknown = set(self.state.faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self._thread = threading.Thread(target=self.serve_forever, name="fake-openai", daemon=True)

    @property
    def base_url(self) -> str:
        """The address to put in a registry entry."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.closing.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    """Serve until stdin closes (benchmarks run the server in its own process, so it never competes
    with the client for the GIL): prints the base URL on its first line."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-s", type=float, default=0.0)
    args = parser.parse_args()
    with FakeOpenAIServer(latency_s=args.latency_s) as server:
        server.state.keep_requests = False
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
