"""Hostile and malformed requests for the server (tests/e2e/test_serve.py): encodings, sizes, types, nesting,
paths, headers, methods and slow clients. Each is a raw HTTP/1.1 request, so headers that no polite client
sends (a lying Content-Length, bytes that are not ASCII) can be sent as they are; each names the statuses a
correct server may answer with (None: it may close the connection without an answer)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from tests.e2e.served import API_KEY

OK = {200}
INVALID = {422}


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes = b""
    method: str = "POST"
    path: str = "/v1/classify"
    headers: dict[str, bytes] = field(default_factory=dict)
    expected: frozenset[int | None] = frozenset(INVALID)
    pause_s: float = 0.0
    """Sent in pieces this far apart (a slow client)."""

    def request(self, host: str) -> list[bytes]:
        """The request as the pieces to send."""
        headers = {
            "Host": host.encode(),
            "Authorization": f"Bearer {API_KEY}".encode(),
            "Content-Type": b"application/json",
            "Content-Length": str(len(self.body)).encode(),
            "Connection": b"close",
            **self.headers,
        }
        head = f"{self.method} {self.path} HTTP/1.1\r\n".encode("latin-1")
        head += b"".join(k.encode() + b": " + v + b"\r\n" for k, v in headers.items() if v is not None)
        raw = head + b"\r\n" + self.body
        if not self.pause_s:
            return [raw]
        return [raw[i : i + 8] for i in range(0, len(raw), 8)]


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _classify(value: object) -> bytes:
    return _json({"model": "tickets", "input": value})


def _chat(messages: object) -> bytes:
    return _json({"model": "bot", "messages": messages})


SURROGATE = '"a\\udcff b"'  # a valid JSON escape of text that is not valid Unicode

CASES = [
    # encodings
    Hostile("lone surrogate in input", b'{"model": "tickets", "input": ' + SURROGATE.encode() + b"}"),
    Hostile(
        "lone surrogate in a list", b'{"model": "tickets", "input": ["fine", ' + SURROGATE.encode() + b"]}"
    ),
    Hostile("lone surrogate in the model name", b'{"model": "tick\\ud800ets", "input": "x"}'),
    Hostile(
        "lone surrogate in a chat message",
        b'{"model": "bot", "messages": [{"role": "user", "content": ' + SURROGATE.encode() + b"}]}",
        path="/v1/chat/completions",
    ),
    Hostile(
        "lone surrogate in a content part",
        b'{"model": "bot", "messages": [{"role": "user", "content": [{"type": "text", "text": '
        + SURROGATE.encode()
        + b"}]}]}",
        path="/v1/chat/completions",
    ),
    Hostile(
        "lone surrogate in feedback",
        b'{"id": "x", "label": ' + SURROGATE.encode() + b"}",
        path="/v1/feedback",
    ),
    Hostile(
        "latin-1 bytes", '{"model": "tickets", "input": "café"}'.encode("latin-1"), expected=frozenset({400})
    ),
    Hostile(
        "utf-16 body", '{"model": "tickets", "input": "x y"}'.encode("utf-16"), expected=frozenset({200, 400})
    ),
    Hostile(
        "utf-8 byte order mark", b"\xef\xbb\xbf" + _classify("a package"), expected=frozenset({200, 400})
    ),
    Hostile("NUL character in text", _classify("lib\u0000c documentation"), expected=frozenset(OK)),
    Hostile(
        "emoji, right-to-left and combining marks", _classify("📦 מנהל e\u0301 ﷽"), expected=frozenset(OK)
    ),
    Hostile("only control characters", _classify("\u0001\u0002\u0003"), expected=frozenset({200, 422})),
    # sizes
    Hostile("text over max_input_chars", _classify("x" * 20_001), expected=frozenset({413})),
    Hostile("too many inputs", _classify(["x"] * 257), expected=frozenset({413})),
    Hostile("12 MB body", _classify("x" * 12_000_000), expected=frozenset({413})),
    Hostile("empty body", b"", expected=frozenset(INVALID)),
    Hostile("Content-Length shorter than the body", _classify("a text"), headers={"Content-Length": b"10"}),
    Hostile(
        "Content-Length that is not a number",
        _classify("x"),
        headers={"Content-Length": b"ten"},
        expected=frozenset({400, None}),
    ),
    Hostile(
        "negative Content-Length",
        _classify("x"),
        headers={"Content-Length": b"-1"},
        expected=frozenset({400, None}),
    ),
    Hostile(
        "top_k of a million",
        _json({"model": "tickets", "input": "x", "top_k": 1_000_000}),
        expected=frozenset(OK),
    ),
    # types
    Hostile("input is a number", _classify(42)),
    Hostile("input is null", _classify(None)),
    Hostile("input is an object", _classify({"text": "x"})),
    Hostile("input is a nested list", _classify([["x"]])),
    Hostile("input is a boolean", _classify(True)),
    Hostile("model is a number", _json({"model": 5, "input": "x"})),
    Hostile("top_k is a string", _json({"model": "tickets", "input": "x", "top_k": "2"})),
    Hostile("top_k is a float", _json({"model": "tickets", "input": "x", "top_k": 1.5})),
    Hostile("top_k is NaN", b'{"model": "tickets", "input": "x", "top_k": NaN}'),
    Hostile(
        "top_k has 5,000 digits",
        b'{"model": "tickets", "input": "x", "top_k": ' + b"9" * 5000 + b"}",
        expected=frozenset({400, 422}),
    ),
    Hostile("body is a list", _json(["tickets", "x"])),
    Hostile("body is a string", _json("x")),
    Hostile("body is null", b"null"),
    Hostile("unknown field", _json({"model": "tickets", "input": "x", "inputs": "y"})),
    Hostile("chat messages is a string", _chat("hi"), path="/v1/chat/completions"),
    Hostile("chat role unknown", _chat([{"role": "robot", "content": "hi"}]), path="/v1/chat/completions"),
    Hostile(
        "chat max_tokens negative",
        _json({"model": "bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}),
        path="/v1/chat/completions",
    ),
    Hostile(
        "feedback with label and answer", _json({"id": "x", "label": "a", "answer": "b"}), path="/v1/feedback"
    ),
    # nesting
    Hostile(
        "arrays nested 100,000 deep",
        b'{"model": "tickets", "input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        expected=frozenset({400, 422}),
    ),
    Hostile(
        "objects nested 10,000 deep",
        b'{"model": "tickets", "input": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001,
        expected=frozenset({400, 422}),
    ),
    Hostile("truncated JSON", _classify("a text")[:-3]),
    # paths
    Hostile("path traversal", method="GET", path="/../../etc/passwd", expected=frozenset({404, 400, None})),
    Hostile(
        "encoded traversal in a model name",
        method="GET",
        path="/v1/models/..%2f..%2fetc%2fpasswd",
        expected=frozenset({404}),
    ),
    Hostile("NUL in a path", method="GET", path="/v1/models/%00", expected=frozenset({404})),
    Hostile("an 8,000-character path", method="GET", path="/" + "a" * 8000, expected=frozenset({404})),
    Hostile("trailing slash", _classify("x"), path="/v1/classify/", expected=frozenset({307, 404})),
    Hostile("unknown endpoint", _classify("x"), path="/v1/audio/speech", expected=frozenset({404})),
    Hostile("embeddings of a classifier", _classify("x"), path="/v1/embeddings", expected=frozenset({400})),
    # headers
    Hostile("no Authorization", _classify("x"), headers={"Authorization": None}, expected=frozenset({401})),
    Hostile("empty bearer", _classify("x"), headers={"Authorization": b"Bearer "}, expected=frozenset({401})),
    Hostile(
        "non-ASCII key",
        _classify("x"),
        headers={"Authorization": b"Bearer \xff\xfe\xc3\xa9"},
        expected=frozenset({401}),
    ),
    Hostile(
        "text/plain content type",
        _classify("a text"),
        headers={"Content-Type": b"text/plain"},
        expected=frozenset({200, 422}),
    ),
    Hostile(
        "chunked body",
        b"5\r\nhello\r\n0\r\n\r\n",
        headers={"Content-Length": None, "Transfer-Encoding": b"chunked"},
        expected=frozenset({411}),
    ),
    Hostile(
        "100 KB header",
        _classify("x"),
        headers={"X-Junk": b"j" * 100_000},
        expected=frozenset({200, 400, 431, None}),
    ),
    # methods
    Hostile("PUT classify", _classify("x"), method="PUT", expected=frozenset({405})),
    Hostile("GET classify", method="GET", expected=frozenset({405})),
    Hostile("DELETE models", method="DELETE", path="/v1/models", expected=frozenset({405})),
    Hostile("OPTIONS classify", method="OPTIONS", expected=frozenset({405})),
    Hostile("made-up method", method="BREW", expected=frozenset({405, 400, None})),
    # slow clients
    Hostile(
        "slow client, good request",
        _classify("Development headers for a library"),
        pause_s=0.02,
        expected=frozenset(OK),
    ),
    Hostile("slow client, bad request", _classify(42), pause_s=0.02),
]


async def send_raw(host: str, port: int, case: Hostile) -> int | None:
    """The status the server answers `case` with; None when it closes the connection without one."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for piece in case.request(f"{host}:{port}"):
            writer.write(piece)
            await writer.drain()
            if case.pause_s:
                await asyncio.sleep(case.pause_s)
        status = await asyncio.wait_for(reader.readline(), 60)
    except (ConnectionError, OSError):
        return None
    finally:
        writer.close()
    parts = status.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


async def idle_connection(host: str, port: int, seconds: float) -> None:
    """A client that connects and sends nothing, then goes away."""
    _, writer = await asyncio.open_connection(host, port)
    await asyncio.sleep(seconds)
    writer.close()
