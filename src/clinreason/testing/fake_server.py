"""A fake OpenAI-compatible server on real localhost sockets, with faults on demand.

Contract tests and benchmarks point the real HTTP backend at it, so they exercise the actual wire path
(connection pool, keep-alive, timeouts, half-sent bodies) instead of a mocked transport. It is a minimal
HTTP/1.1 server on :func:`asyncio.start_server` — stdlib only, keep-alive, no chunked requests — small
enough to read in one sitting and fast enough to keep up with a client running 64 requests at a time.

Run by hand or from a benchmark::

    python -m clinreason.testing.fake_server --port 8999 --latency 0.2 --error-500 0.2 --log requests.jsonl

Outages and storms for resilience tests: ``--down-for 60 --down-after 5 --down-mode refuse`` stops
listening (connection refused) five seconds after start, for a minute; ``--storm-429 10`` answers every
request 429 with Retry-After for ten seconds; ``--echo-headers-status 401`` answers every request with that
status and a body that echoes the request's headers, Authorization included, as some proxies do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from clinreason.llm.fake_backend import default_rationale, rough_token_count

#: the faults a request can be answered with, in the order the random draw considers them
FAULTS = ("error_500", "error_429", "timeout", "malformed", "truncated")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")

#: builds the answer to one chat request: the text of the reply, or a whole response body
Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


@dataclass
class FaultPlan:
    """Which requests go wrong, and how.

    ``scripted`` faults are used first, one per request, in order ("ok" = answer normally); after that each
    request draws once from a ``seed``-ed generator against the rates. ``down_until`` is a
    :func:`time.monotonic` instant before which every request fails as a dead endpoint would.
    """

    error_500: float = 0.0
    error_429: float = 0.0
    timeout: float = 0.0
    malformed: float = 0.0
    truncated: float = 0.0
    #: seconds sent in the Retry-After header of 429 (and of 503 while down)
    retry_after: float = 1.0
    down_until: float | None = None
    #: "close" drops the connection without a word; "503" answers Service Unavailable; "refuse" stops
    #: listening, so connecting fails (connection refused), until ``down_until``
    down_mode: str = "close"
    #: a :func:`time.monotonic` instant before which every chat request is answered 429 with Retry-After
    storm_429_until: float | None = None
    #: answer every chat request with this status and a body echoing the request's headers (None: off)
    echo_headers_status: int | None = None
    scripted: list[str] = field(default_factory=list)
    seed: int = 0
    #: how long a "timeout" request is held when the client does not hang up first
    hang: float = 300.0

    def __post_init__(self) -> None:
        rates = [getattr(self, name) for name in FAULTS]
        if any(rate < 0 or rate > 1 for rate in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and add up to at most 1, got {rates}")
        if self.down_mode not in ("close", "503", "refuse"):
            raise ValueError(f"down_mode must be 'close', '503' or 'refuse', not {self.down_mode!r}")
        unknown = [name for name in self.scripted if name not in (*FAULTS, "ok")]
        if unknown:
            raise ValueError(f"unknown scripted faults {unknown}; known: {', '.join(FAULTS)}, ok")


def chat_response(request: dict[str, Any], text: str, *, reasoning: str | None = None,
                  model: str = "fake-model") -> dict[str, Any]:
    """An OpenAI chat.completion body for ``text``, with plausible usage counts."""
    messages = request.get("messages") or []
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    prompt_tokens = sum(rough_token_count(str(m.get("content") or "")) for m in messages)
    completion_tokens = rough_token_count(text) + rough_token_count(reasoning or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model") or model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class FakeOpenAIServer:
    """Serves ``POST /v1/chat/completions`` (and ``GET /v1/models``) on 127.0.0.1."""

    def __init__(self, latency: float = 0.0, fault_plan: FaultPlan | None = None,
                 responder: Responder | None = None, port: int = 0, *, host: str = "127.0.0.1",
                 include_reasoning: bool = False, supports_response_format: bool = True,
                 log_path: str | Path | None = None, model: str = "fake-model"):
        self.latency = latency
        self.fault_plan = fault_plan or FaultPlan()
        self.responder = responder
        self.host = host
        self.port = port
        self.include_reasoning = include_reasoning
        self.supports_response_format = supports_response_format
        self.model = model
        self.log_path = Path(log_path) if log_path else None
        #: one dict per request, in arrival order; see :meth:`_new_record` for the keys
        self.requests: list[dict[str, Any]] = []
        self._pending_faults: deque[str] = deque(self.fault_plan.scripted)
        self._rng = random.Random(self.fault_plan.seed)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._log_file: IO[str] | None = None
        self._outage: asyncio.Task[None] | None = None
        #: (start, end) monotonic instants of each 'refuse' outage that has ended
        self.refused_windows: list[tuple[float, float]] = []
        #: a delayed outage (``go_down(after=...)``) of the close/503 kind begins at this monotonic instant
        self._down_from = 0.0
        self._last_headers: dict[str, str] = {}
        #: (requests, seconds): go down for `seconds` once `requests` chat requests were answered
        self.down_after_requests: tuple[int, float] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port,
                                                  backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.log_path is not None:
            self._log_file = self.log_path.open("a", encoding="utf-8")
        if self.fault_plan.down_mode == "refuse" and self.fault_plan.down_until is not None:
            self._outage = asyncio.create_task(self._refuse_until(self.fault_plan.down_until))

    async def _refuse_until(self, until: float, *, starting: float | None = None) -> None:
        """Stop listening from ``starting`` (now when None) until ``until``, then listen on the same port
        again: clients meanwhile get 'connection refused', as from a stopped process."""
        if starting is not None:
            await asyncio.sleep(max(0.0, starting - time.monotonic()))
        if self._server is None or time.monotonic() >= until:
            return
        self._server.close()
        for task in list(self._connections):  # a stopped process keeps no keep-alive connection either
            if task is not asyncio.current_task():
                task.cancel()
        began = time.monotonic()
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        self._server = await asyncio.start_server(self._serve_connection, self.host, self.port, backlog=1024,
                                                  reuse_address=True)
        self.refused_windows.append((began, time.monotonic()))

    async def stop(self) -> None:
        outage = self._outage
        if outage is not None and not outage.done():
            outage.cancel()
            await asyncio.gather(outage, return_exceptions=True)
        if self._server is None:
            return
        self._server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @classmethod
    @contextmanager
    def running_in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[FakeOpenAIServer]:
        """Run a server on its own event loop in a daemon thread, for synchronous tests and CLI runs."""
        server = cls(*args, **kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failures: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except (OSError, RuntimeError) as exc:  # e.g. the port is taken: reported to the caller below
                failures.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=serve, name="fake-openai-server", daemon=True)
        thread.start()
        ready.wait(10)
        if failures:
            raise failures[0]
        if server._server is None:
            raise RuntimeError("the fake server did not start within 10 s")
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    # -- controls for tests ------------------------------------------------------------------------------

    def inject(self, *faults: str) -> None:
        """Answer the next requests with these faults, in order ("ok" = answer normally)."""
        for name in faults:
            if name not in (*FAULTS, "ok"):
                raise ValueError(f"unknown fault {name!r}")
        self._pending_faults.extend(faults)

    def go_down(self, seconds: float, mode: str | None = None, *, after: float = 0.0) -> None:
        """Behave as a dead endpoint for ``seconds``, starting ``after`` seconds from now. Mode 'refuse'
        must be called on the server's own event loop (or through :meth:`go_down_threadsafe`)."""
        starting = time.monotonic() + after
        self.fault_plan.down_until = starting + seconds
        if mode is not None:
            self.fault_plan.down_mode = mode
        if self.fault_plan.down_mode == "refuse":
            self.fault_plan.down_until = None  # the listening socket does the refusing, not the handler
            self._outage = asyncio.get_running_loop().create_task(
                self._refuse_until(starting + seconds, starting=starting))
        else:
            self._down_from = starting

    def storm_429(self, seconds: float) -> None:
        """Answer every chat request 429 (with Retry-After) for the next ``seconds``."""
        self.fault_plan.storm_429_until = time.monotonic() + seconds

    def fault_counts(self) -> Counter[str]:
        return Counter(record["fault"] or "ok" for record in self.requests)

    def dump_log(self, path: str | Path) -> None:
        with Path(path).open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in list(self.requests))

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                try:
                    method, target, version = request_line.split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._send(writer, 411, {"error": {"message": "send a Content-Length"}})
                    return
                try:
                    length = int(headers.get("content-length") or 0)
                except ValueError:
                    await self._send(writer, 400, {"error": {"message": "bad Content-Length"}})
                    return
                body = await reader.readexactly(length)
                keep_alive = (version.upper() == "HTTP/1.1"
                              and headers.get("connection", "").lower() != "close")
                if not await self._handle(method, target, headers, body, reader, writer) or not keep_alive:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return False when the connection must be closed afterwards."""
        path = target.split("?", 1)[0]
        if path in ("/v1/models", "/models") and method == "GET":
            listing = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            await self._send(writer, 200, listing)
            return True
        if path == "/health":
            await self._send(writer, 200, {"status": "ok"})
            return True
        if path not in _CHAT_PATHS:
            await self._send(writer, 404, {"error": {"message": f"no route {path}"}})
            return True
        if method != "POST":
            await self._send(writer, 405, {"error": {"message": "use POST"}})
            return True
        try:
            request = json.loads(body or b"null")
        except ValueError as exc:
            await self._send(writer, 400, {"error": {"message": f"invalid JSON body: {exc}"}})
            return True
        if not isinstance(request, dict):
            await self._send(writer, 400, {"error": {"message": "the body must be a JSON object"}})
            return True
        record = self._new_record(method, path, headers, request)
        self._last_headers = headers  # only for the echo fault; never logged
        try:
            return await self._answer_chat(request, record, reader, writer)
        finally:
            self._finish(record)
            pending = self.down_after_requests
            if pending is not None and len(self.requests) >= pending[0]:
                self.down_after_requests = None
                self.go_down(pending[1])

    async def _answer_chat(self, request: dict[str, Any], record: dict[str, Any],
                           reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        plan = self.fault_plan
        now = time.monotonic()
        if (plan.down_until is not None and now < plan.down_until and plan.down_mode != "refuse"
                and now >= self._down_from):
            record["fault"] = "down"
            if plan.down_mode == "close":
                return False
            record["status"] = 503
            await self._send(writer, 503, {"error": {"message": "service unavailable"}},
                             headers={"Retry-After": _seconds(plan.retry_after)})
            return True
        if plan.storm_429_until is not None and now < plan.storm_429_until:
            record.update(fault="storm_429", status=429)
            await self._send(writer, 429, {"error": {"message": "rate limited (storm)", "type": "rate_limit"}},
                             headers={"Retry-After": _seconds(plan.retry_after)})
            return True
        if plan.echo_headers_status is not None:
            status = plan.echo_headers_status
            record.update(fault="echo_headers", status=status)
            await self._send(writer, status, {"error": {"message": "request refused; it was:",
                                                        "request_headers": self._last_headers}})
            return True
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if "response_format" in request and not self.supports_response_format:
            record["status"] = 400
            await self._send(writer, 400, {"error": {
                "message": "response_format is not supported by this server", "type": "invalid_request_error"}})
            return True

        fault = self._next_fault()
        record["fault"] = fault
        if fault == "timeout":
            # Hold the request until the client gives up and hangs up (or `hang` passes).
            try:
                await asyncio.wait_for(reader.read(1), plan.hang)
            except TimeoutError:
                pass
            return False
        if fault == "error_500":
            record["status"] = 500
            await self._send(writer, 500, {"error": {"message": "injected internal error",
                                                     "type": "server_error"}})
            return True
        if fault == "error_429":
            record["status"] = 429
            await self._send(writer, 429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                             headers={"Retry-After": _seconds(plan.retry_after)})
            return True
        if fault == "malformed":
            record["status"] = 200
            await self._send_raw(writer, 200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"con')
            return True

        try:
            payload = json.dumps(self._respond(request)).encode()
        except Exception as exc:  # noqa: BLE001 - a broken test responder must show up as an answer, not a hang
            record.update(status=500, fault="responder_error")
            await self._send(writer, 500, {"error": {"message": f"responder failed: {exc!r}"}})
            return True
        record["status"] = 200
        if fault == "truncated":
            await self._send_raw(writer, 200, payload[: len(payload) // 2],
                                 content_length=len(payload))
            return False
        await self._send_raw(writer, 200, payload)
        return True

    def _respond(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.responder is not None:
            produced = self.responder(request)
            if isinstance(produced, dict):
                return produced
            return chat_response(request, produced, model=self.model)
        messages = request.get("messages") or []
        reasoning = None
        if self.include_reasoning:
            reasoning = "The stem's findings point to one option; the others each contradict a finding."
        return chat_response(request, default_rationale(messages), reasoning=reasoning, model=self.model)

    def _next_fault(self) -> str | None:
        if self._pending_faults:
            name = self._pending_faults.popleft()
            return None if name == "ok" else name
        draw = self._rng.random()
        for name in FAULTS:
            draw -= getattr(self.fault_plan, name)
            if draw < 0:
                return name
        return None

    def _new_record(self, method: str, path: str, headers: dict[str, str],
                    request: dict[str, Any]) -> dict[str, Any]:
        """Log what a test asserts on; the Authorization header's value is never kept."""
        record = {
            "time": time.time(),
            "monotonic": time.monotonic(),
            "method": method,
            "path": path,
            "idempotency_key": headers.get("idempotency-key"),
            "authorized": "authorization" in headers,
            "model": request.get("model"),
            "messages": request.get("messages"),
            "response_format": "response_format" in request,
            "status": None,
            "fault": None,
        }
        self.requests.append(record)
        return record

    def _finish(self, record: dict[str, Any]) -> None:
        if self._log_file is not None:
            self._log_file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._log_file.flush()

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: dict[str, Any], *,
                    headers: dict[str, str] | None = None) -> None:
        await self._send_raw(writer, status, json.dumps(body).encode(), headers=headers)

    @staticmethod
    async def _send_raw(writer: asyncio.StreamWriter, status: int, body: bytes, *,
                        headers: dict[str, str] | None = None, content_length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 "Content-Type: application/json",
                 f"Content-Length: {len(body) if content_length is None else content_length}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- command line ----------------------------------------------------------------------------------------

def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m clinreason.testing.fake_server",
                                     description="A fake OpenAI-compatible server with injectable faults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    for name in FAULTS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0, dest=name,
                            help=f"share of requests answered with {name}")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of 429/503")
    parser.add_argument("--down-for", type=float, default=0.0, help="act dead for this long after start")
    parser.add_argument("--down-after", type=float, default=0.0,
                        help="start the --down-for outage this many seconds after start")
    parser.add_argument("--down-after-requests", type=int, default=0, metavar="N",
                        help="start the --down-for outage once N chat requests were answered (mid-run)")
    parser.add_argument("--down-mode", choices=("close", "503", "refuse"), default="close",
                        help="close: drop connections; 503: Service Unavailable; refuse: stop listening")
    parser.add_argument("--storm-429", type=float, default=0.0, metavar="SECONDS",
                        help="answer every request 429 with Retry-After for this long after start")
    parser.add_argument("--echo-headers-status", type=int, default=None, metavar="STATUS",
                        help="answer every request with STATUS and a body echoing the request headers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reasoning", action="store_true", help="add reasoning_content to answers")
    parser.add_argument("--no-response-format", action="store_true",
                        help="reject requests carrying response_format with 400")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per request here")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    started = time.monotonic()
    plan = FaultPlan(**{name: getattr(args, name) for name in FAULTS}, retry_after=args.retry_after,
                     down_mode=args.down_mode, seed=args.seed,
                     storm_429_until=started + args.storm_429 if args.storm_429 > 0 else None,
                     echo_headers_status=args.echo_headers_status)
    server = FakeOpenAIServer(latency=args.latency, fault_plan=plan, port=args.port, host=args.host,
                              include_reasoning=args.reasoning,
                              supports_response_format=not args.no_response_format, log_path=args.log)
    await server.start()
    if args.down_for > 0 and args.down_after_requests > 0:
        server.down_after_requests = (args.down_after_requests, args.down_for)
    elif args.down_for > 0:
        server.go_down(args.down_for, after=args.down_after)
    print(f"fake OpenAI server listening on {server.base_url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop()
    print(f"served {len(server.requests)} chat requests: {dict(server.fault_counts())}", flush=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve_forever(_parse_args(argv)))


if __name__ == "__main__":
    main()
