"""`headstart serve RUN|MODEL.onnx`: the model behind HTTP, with a small web page.

    POST /predict    images or texts in; per input the label and the probability of every
                     class, and the model version that answered
    POST /explain    why, as `headstart explain` shows it: an image's heat-map (PNG), a text's
                     words with their scores (needs the run's PyTorch model)
    GET  /health     alive; what the model reads; whether a key is needed; batches run
    GET  /metadata   classes, preprocessing, source run, the export's checks, the limits
    GET  /           the page (serve_page.py);  GET /docs  the OpenAPI docs

The default engine is ONNX Runtime over the run's exported model.onnx, and nothing on that
path imports PyTorch; `engine="torch"` runs the run's own model (serve_engines.py).
Concurrent requests share one model call (serve_batching.py); what a request may carry and
every 4xx it can earn are in serve_inputs.py. The server binds to 127.0.0.1 unless told
otherwise, and ends gracefully on SIGTERM: it stops accepting, answers what it holds, exits 0.
"""
from __future__ import annotations

import base64
import hmac
import os
import signal
import socket
import threading
from contextlib import asynccontextmanager, contextmanager
from importlib.util import find_spec
from pathlib import Path

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from headstart.deploy.serve_batching import MicroBatcher
from headstart.deploy.serve_engines import Prepared, TorchEngine, open_engine, run_directory_of
from headstart.deploy.serve_inputs import PredictJSON, Received, ServeError, ServeLimits, read_request
from headstart.deploy.serve_page import PAGE_HEADERS, page_html
from headstart.errors import HeadstartError

__all__ = ["create_app", "serve", "ServeLimits", "API_KEY_ENV"]

API_KEY_ENV = "HEADSTART_API_KEY"  # read by serve() when no key is passed: a key in argv shows in `ps`
GRACE_SECONDS = 30                 # how long a SIGTERM waits for requests in flight
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictJSON.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
}}}


def create_app(model_path: str | os.PathLike, *, api_key: str | None = None, limits: ServeLimits = ServeLimits(),
               engine: str = "onnxruntime", max_batch: int = 32, batch_window_ms: float = 5.0,
               threads: int | None = None) -> FastAPI:
    """The server's app over a run directory or an exported .onnx file. The model is loaded
    here, so a model that cannot be served fails before anything listens."""
    model = open_engine(model_path, engine, threads=threads, max_batch=max_batch)
    batcher = MicroBatcher(model.probabilities, max_batch=max_batch, window_s=batch_window_ms / 1000)
    explainer = _Explainer(model, Path(model_path))

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="headstart serve", lifespan=lifespan, version=model.version,
                  description=f"A headstart model ({model.name}) that reads {model.reads}s: "
                              f"{', '.join(model.classes)}.")
    app.state.engine, app.state.batcher = model, batcher
    app.add_middleware(_BodyLimit, max_bytes=limits.max_request_bytes)
    _answer_errors_as_json(app)
    authorised = [Depends(_key_check(api_key))]

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers=PAGE_HEADERS)

    @app.get("/health", summary="Alive, what the model reads, whether an API key is needed")
    def health() -> dict:
        return {"status": "ok", "model_version": model.version, "engine": model.name, "reads": model.reads,
                "api_key_required": api_key is not None, "explain": explainer.available()[0],
                "batches_run": batcher.batches_run, "inputs_run": batcher.inputs_run}

    @app.get("/metadata", dependencies=authorised, summary="Classes, preprocessing, source run, export checks")
    def metadata() -> dict:
        available, why_not = explainer.available()
        return {"model_version": model.version, "reads": model.reads, "classes": model.classes, **model.describe(),
                "explain": {"available": available, "why_not": why_not}, "limits": limits.as_dict(),
                "batching": {"max_batch": max_batch, "batch_window_ms": batch_window_ms}}

    @app.post("/predict", dependencies=authorised, openapi_extra=_BODY_DOC,
              summary="Label images (multipart files or base64 JSON) or texts (JSON), one or a batch")
    async def predict(request: Request):
        ticket = batcher.ticket()  # the batcher may wait for this request while it is read
        try:
            received = await read_request(request, model.reads, limits, limits.max_items)
            given, prepared = await run_in_threadpool(_prepare, model, received)
            probabilities = (await batcher.submit(prepared.payload, len(prepared.usable), ticket)
                             if prepared.usable else None)
        finally:
            ticket.close()
        rows = {given[i]: row for i, row in zip(prepared.usable, probabilities if probabilities is not None else [])}
        answers = [_prediction(name, rows.get(i), received.errors.get(i), model.classes)
                   for i, name in enumerate(received.names)]
        body = {"model_version": model.version, "engine": model.name, "predictions": answers}
        if not rows:
            return JSONResponse({"error": "none of the inputs could be read", **body}, status_code=422)
        return body

    @app.post("/explain", dependencies=authorised, openapi_extra=_BODY_DOC,
              summary="Why: an image's heat-map (PNG, base64) or a text's words with their scores")
    async def explain(request: Request):
        explaining = await explainer.engine()
        received = await read_request(request, model.reads, limits, limits.max_explain_items)
        given = [i for i in range(len(received.values)) if i not in received.errors]
        refused = [{"name": received.names[i], "error": e} for i, e in received.errors.items()]
        if not given:
            raise ServeError(422, "none of the inputs could be read: " + "; ".join(received.errors.values()))
        try:
            result = await run_in_threadpool(explaining.explain, [received.values[i] for i in given],
                                             [received.names[i] for i in given])
        except HeadstartError as e:
            raise ServeError(422, e.message, e.hint) from e
        result["unreadable"] = refused + result["unreadable"]
        return _explanation(result, explaining, wants_png="image/png" in request.headers.get("accept", ""))

    return app


def _explanation(result: dict, explaining, *, wants_png: bool):
    """explain_items' result as JSON (each heat-map as base64 PNG), or the one heat-map itself
    when the client asked for image/png."""
    entries = [entry for item in result["items"] for entry in item["explanations"]]
    pictures = [entry["png"] for entry in entries if "png" in entry]
    if wants_png and len(pictures) == 1:
        return Response(pictures[0], media_type="image/png", headers={"X-Model-Version": explaining.version})
    for entry in entries:
        if "png" in entry:
            entry["png_base64"] = base64.b64encode(entry.pop("png")).decode("ascii")
    return {"model_version": explaining.version, "engine": explaining.name, "method": result["method"],
            "method_summary": result.get("method_summary"), "items": result["items"],
            "unreadable": result["unreadable"]}


def _prepare(model, received: Received) -> tuple[list[int], Prepared]:
    """The engine's reading of the inputs not already refused; `given` maps its rows back."""
    given = [i for i in range(len(received.values)) if i not in received.errors]
    prepared = model.prepare([received.values[i] for i in given])
    for j, error in prepared.errors.items():
        received.errors[given[j]] = error
    return given, prepared


def _prediction(name: str, row, error: str | None, classes: list[str]) -> dict:
    if row is None:
        return {"input": name, "label": None, "probability": None, "probabilities": None,
                "error": error or "not answered"}
    best = int(row.argmax())
    return {"input": name, "label": classes[best], "probability": round(float(row[best]), 6),
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row)}, "error": None}


class _Explainer:
    """Explanations need the run's PyTorch model: the torch engine's own, or (for the ONNX
    engine) one loaded on the first /explain when the run directory is at hand."""

    def __init__(self, model, model_path: Path):
        self._engine = model if isinstance(model, TorchEngine) else None
        self._run_dir = run_directory_of(model_path) if self._engine is None else model.run_dir
        self._lock = threading.Lock()
        self._failed: str | None = None

    def available(self) -> tuple[bool, str | None]:
        if self._engine is not None:
            return True, None
        if self._failed:
            return False, self._failed
        if self._run_dir is None:
            return False, ("this server was given an exported model without its run: explanations need the "
                           "run's PyTorch model (serve the run directory the model was exported from)")
        if find_spec("torch") is None:  # asks without importing it
            return False, "PyTorch is not installed here, and explanations need the run's PyTorch model"
        return True, None

    async def engine(self) -> TorchEngine:
        available, why_not = self.available()
        if not available:
            raise ServeError(501, f"explanations are not available: {why_not}")
        if self._engine is None:
            await run_in_threadpool(self._load)
        if self._engine is None:
            raise ServeError(501, f"explanations are not available: {self._failed}")
        return self._engine

    def _load(self) -> None:
        with self._lock:  # one load, however many requests ask at once
            if self._engine is None and not self._failed:
                try:
                    self._engine = TorchEngine(self._run_dir)
                except HeadstartError as e:
                    self._failed = e.message


# --------------------------------------------------------------------------- errors, keys, sizes

def _answer_errors_as_json(app: FastAPI) -> None:
    """Every refusal as {"error", "hint"?}: the shape a HeadstartError has on the command line."""

    @app.exception_handler(ServeError)
    async def refused(request, error: ServeError):
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        return JSONResponse({"error": "the request is not valid", "details": error.errors()}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request, error: Exception):  # a bug: the traceback goes to the server's log, not the client
        return JSONResponse({"error": "the server failed on this request; its log says why"}, status_code=500)


def _key_check(api_key: str | None):
    """The dependency that guards the model's endpoints when a key is set: the X-API-Key header
    or `Authorization: Bearer KEY`, compared in constant time."""
    header, bearer = APIKeyHeader(name="X-API-Key", auto_error=False), HTTPBearer(auto_error=False)
    expected = api_key.encode() if api_key is not None else None

    async def check(key: str | None = Security(header), credentials=Security(bearer)) -> None:
        if expected is None:
            return
        given = key or (credentials.credentials if credentials is not None else None)
        if not given:
            raise ServeError(401, "this server needs an API key",
                             hint="send it as the X-API-Key header, or as Authorization: Bearer KEY")
        if not hmac.compare_digest(given.encode(), expected):
            raise ServeError(401, "the API key is wrong")

    return check


class _BodyLimit:
    """ASGI middleware: a body larger than `max_bytes` is refused with 413 before the app reads
    it, whether the client declared its length or streams it in chunks."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # after the body, the app only waits for a disconnect
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        error = ServeError(413, f"the request is larger than this server takes ({self.max_bytes / 1e6:g} MB)",
                           hint="send fewer or smaller inputs per request")
        await JSONResponse(error.body(), status_code=413)({"type": "http"}, None, send)


# --------------------------------------------------------------------------- running it

def serve(run_or_model: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, engine: str = "onnxruntime",
          api_key: str | None = None, *, limits: ServeLimits = ServeLimits(), max_batch: int = 32,
          batch_window_ms: float = 5.0, threads: int | None = None, log_level: str = "info",
          access_log: bool = False) -> int:
    """Serve until SIGTERM or Ctrl-C, then shut down gracefully (requests in flight are
    answered) and return 0. `port=0` picks a free port; the address is printed either way."""
    import uvicorn

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    app = create_app(run_or_model, api_key=api_key, limits=limits, engine=engine, max_batch=max_batch,
                     batch_window_ms=batch_window_ms, threads=threads)
    listener = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    model = app.state.engine
    print(f"headstart serve: {run_or_model} ({model.name}, model version {model.version}, reads {model.reads}s) "
          f"at http://{shown}:{listener.getsockname()[1]}/  (API docs: /docs)", flush=True)
    if host not in _LOOPBACK and api_key is None:
        print(f"warning: listening on {host} beyond this machine with no API key (set --api-key or "
              f"{API_KEY_ENV})", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=access_log,
                                           timeout_graceful_shutdown=GRACE_SECONDS))
    with _signals_end_serving():
        server.run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is a plain error, not a server's exit."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise HeadstartError(f"cannot listen on {host}: {e.strerror}", hint="pass --host 127.0.0.1, or an address "
                             "of this machine") from e
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(2048)
    except OSError as e:
        listener.close()
        raise HeadstartError(f"cannot listen on {host}:{port}: {e.strerror}",
                             hint="choose another --port (0 picks a free one), or stop what uses this one") from e
    return listener


@contextmanager
def _signals_end_serving():
    """uvicorn shuts down gracefully on SIGTERM and SIGINT and then raises the signal again
    with the handler it found; a no-op handler for that moment makes the end an exit 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
