"""headstart serve: every endpoint and every limit through FastAPI's test client, the same
answers as the onnxruntime predictor, micro-batching, no torch on the default path, a real
uvicorn on loopback that ends cleanly on SIGTERM, and the page in headless Chromium."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from headstart.deploy.onnx_predict import predict_inputs as onnx_predict_inputs
from headstart.deploy.serve import create_app
from headstart.deploy.serve_batching import MicroBatcher
from headstart.deploy.serve_inputs import ServeLimits
from headstart.errors import HeadstartError

from conftest import tiny_image_folder
from tiny_runs import fit_image_probe, fit_minilm_probe, quick_deploy_rows, write_text_csv

SRC = str(Path(__file__).resolve().parents[1] / "src")
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


# --------------------------------------------------------------------------- tiny exported runs

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return tiny_image_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def image_run(image_folder, tmp_path_factory):
    import headstart

    out = fit_image_probe(image_folder, tmp_path_factory.mktemp("runs") / "image")
    with quick_deploy_rows():  # the serve tests never read the deploy table
        headstart.export(out)
    return out


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    import headstart

    folder = tmp_path_factory.mktemp("texts")
    out = fit_minilm_probe(write_text_csv(folder / "texts.csv"), folder / "run")
    with quick_deploy_rows():
        headstart.export(out)
    return out


@pytest.fixture(scope="module")
def images(image_folder) -> list[Path]:
    return [sorted((image_folder / name).iterdir())[0] for name in ("red", "green", "blue")]


@pytest.fixture(scope="module")
def image_client(image_run):
    with TestClient(create_app(image_run)) as client:
        yield client


def _files(paths) -> list:
    return [("file", (p.name, p.read_bytes(), "image/png")) for p in paths]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")  # compresses to almost nothing
    return buffer.getvalue()


def _rows(predictions) -> list[tuple]:
    return [(p["label"], round(p["probability"], 4)) for p in predictions]


# --------------------------------------------------------------------------- /predict

def test_predict_images_as_files_or_base64_answers_as_the_onnx_predictor_does(image_client, image_run, images):
    expected = [(p.label, round(p.probability, 4)) for p in onnx_predict_inputs(image_run, [str(p) for p in images])]
    as_files = image_client.post("/predict", files=_files(images))
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
    as_json = image_client.post("/predict", json={"images": [encoded[0], "data:image/png;base64," + encoded[1],
                                                             encoded[2]]})
    assert as_files.status_code == as_json.status_code == 200
    assert _rows(as_files.json()["predictions"]) == _rows(as_json.json()["predictions"]) == expected
    answer = as_files.json()
    first = answer["predictions"][0]
    classes = json.loads((image_run / "model.json").read_text())["classes"]
    assert first["input"] == images[0].name and first["error"] is None
    assert list(first["probabilities"]) == classes
    assert sum(first["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert first["probabilities"][first["label"]] == first["probability"]
    assert answer["model_version"] == image_client.get("/health").json()["model_version"] != ""
    assert len(answer["model_version"]) == 16 and answer["engine"] == "onnxruntime"


def test_an_unreadable_image_is_its_own_error_and_all_unreadable_is_422(image_client, images):
    mixed = image_client.post("/predict", files=_files(images[:1]) + [("file", ("notes.png", b"not an image", "x"))])
    assert mixed.status_code == 200
    good, bad = mixed.json()["predictions"]
    assert good["label"] == "red" and bad["label"] is None and bad["error"].startswith("unreadable image")
    none = image_client.post("/predict", files=[("file", ("a.png", b"junk", "image/png"))])
    assert none.status_code == 422 and none.json()["error"] == "none of the inputs could be read"


def test_predict_texts_answers_as_the_onnx_predictor_does(text_run):
    texts = ["goal match team striker", "rain storm forecast", "bank shares market", "   "]
    expected = onnx_predict_inputs(text_run, texts[:3])
    with TestClient(create_app(text_run)) as client:
        answer = client.post("/predict", json={"texts": texts})
        assert client.get("/health").json()["reads"] == "text"
        files = client.post("/predict", files=[("file", ("t.txt", b"goal", "text/plain"))])
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    assert _rows(predictions[:3]) == [(p.label, round(p.probability, 4)) for p in expected]
    assert predictions[3]["error"] == "empty text" and predictions[3]["label"] is None
    assert files.status_code == 415 and "texts" in files.json()["hint"]


# --------------------------------------------------------------------------- limits

@pytest.fixture(scope="module")
def tight_client(image_run):
    limits = ServeLimits(max_request_mb=0.2, max_items=2, max_pixels=1_000_000, max_text_chars=10)
    with TestClient(create_app(image_run, limits=limits)) as client:
        yield client


def test_the_request_size_limit_is_413_declared_or_streamed(tight_client):
    big = b"x" * 300_000
    declared = tight_client.post("/predict", content=big, headers={"content-type": "application/json"})
    streamed = tight_client.post("/predict", content=iter([big[:150_000], big[150_000:]]),
                                 headers={"content-type": "application/json"})  # chunked: no length to trust
    for response in (declared, streamed):
        assert response.status_code == 413 and "0.2 MB" in response.json()["error"]


def test_a_decompression_bomb_is_refused_from_its_header(tight_client):
    bomb = _png(2000, 2000)  # 4 MP in a few kB
    assert len(bomb) < 50_000
    response = tight_client.post("/predict", files=[("file", ("bomb.png", bomb, "image/png"))])
    assert response.status_code == 413
    assert "2000 x 2000 = 4,000,000 pixels" in response.json()["error"] and "1,000,000" in response.json()["error"]
    assert tight_client.post("/predict", files=[("file", ("ok.png", _png(900, 900), "image/png"))]).status_code == 200


@pytest.mark.parametrize("send", [
    lambda c, png: c.post("/predict", files=[("file", (f"{i}.png", png, "image/png")) for i in range(3)]),
    lambda c, png: c.post("/predict", json={"images": [base64.b64encode(png).decode()] * 3}),
], ids=["files", "json"])
def test_more_inputs_than_a_request_may_hold_is_413(tight_client, send):
    response = send(tight_client, _png(8, 8))
    assert response.status_code == 413 and "at most 2" in response.json()["error"]


@pytest.mark.parametrize("kwargs, status, message", [
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "does not read text/plain"),
    ({"content": b"hello"}, 415, "without a content type"),
    ({"json": {"images": [], "threshold": 0.5}}, 422, "unknown field 'threshold'"),
    ({"files": [("path", ("a.png", b"x", "image/png"))]}, 422, "unknown field 'path'"),
    ({"data": {"file": "/etc/passwd"}, "files": [("file", ("a.png", b"x", "image/png"))]}, 422,
     "the field 'file' holds text, not a file"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
    ({"json": ["a list"]}, 422, "must be a JSON object"),
    ({"json": {"images": ["@@@"]}}, 422, "images[0] is not base64"),
    ({"json": {"texts": ["a text"]}}, 422, "this model reads images, and the body has texts"),
    ({"json": {"images": []}}, 422, "nothing to predict"),
], ids=["content-type", "no-content-type", "json-field", "multipart-field", "path-in-a-form-field", "bad-json",
        "not-object", "not-base64", "wrong-modality", "empty"])
def test_malformed_requests_get_clear_4xx_json(image_client, kwargs, status, message):
    response = image_client.post("/predict", **kwargs)
    assert response.status_code == status and message in response.json()["error"], response.json()
    assert "hint" in response.json()


def test_text_length_is_limited(text_run):
    with TestClient(create_app(text_run, limits=ServeLimits(max_text_chars=10))) as client:
        too_long = client.post("/predict", json={"texts": ["short", "x" * 11]})
        fine = client.post("/predict", json={"texts": ["goal match"]})
    assert too_long.status_code == 413 and "texts[1] has 11 characters" in too_long.json()["error"]
    assert fine.status_code == 200


def test_nothing_in_a_request_names_a_file_on_the_server(image_client, images):
    # a path where image bytes belong is refused as not base64 -- never opened
    response = image_client.post("/predict", json={"images": [str(images[0])]})
    assert response.status_code == 422 and "not base64" in response.json()["error"]
    # an upload's file name is only echoed: the bytes sent are what is read
    sneaky = image_client.post("/predict", files=[("file", (str(images[0]), b"junk", "image/png"))])
    assert sneaky.status_code == 422 and sneaky.json()["predictions"][0]["input"] == str(images[0])


# --------------------------------------------------------------------------- keys

def test_a_wrong_or_missing_api_key_is_401_compared_in_constant_time(image_run, images, monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    with TestClient(create_app(image_run, api_key="s3cret")) as client:
        missing = client.post("/predict", files=_files(images[:1]))
        wrong = client.post("/predict", files=_files(images[:1]), headers={"X-API-Key": "guess"})
        metadata = client.get("/metadata")
        by_header = client.post("/predict", files=_files(images[:1]), headers={"X-API-Key": "s3cret"})
        by_bearer = client.post("/predict", files=_files(images[:1]), headers={"Authorization": "Bearer s3cret"})
        health = client.get("/health")
    assert missing.status_code == wrong.status_code == metadata.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer" and "needs an API key" in missing.json()["error"]
    assert wrong.json()["error"] == "the API key is wrong"
    assert by_header.status_code == by_bearer.status_code == 200
    assert (b"guess", b"s3cret") in compared
    assert health.status_code == 200 and health.json()["api_key_required"] is True


# --------------------------------------------------------------------------- health, metadata, docs, page

def test_health_metadata_docs_and_page(image_client, image_run):
    health = image_client.get("/health").json()
    assert health["status"] == "ok" and health["reads"] == "image" and health["explain"] is True
    meta = image_client.get("/metadata").json()
    model = json.loads((image_run / "model.json").read_text())
    exported = json.loads((image_run / "model.onnx.json").read_text())
    assert meta["classes"] == model["classes"] and meta["preprocessing"] == model["backbone"]["preprocessing"]
    assert Path(meta["source_run"]) == image_run.absolute() and meta["export"]["checks"] == exported["checks"]
    assert meta["precision"] == "fp32" and meta["model_version"] == health["model_version"]
    assert meta["limits"]["max_items"] == ServeLimits().max_items and meta["explain"]["available"] is True
    paths = image_client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/explain", "/health", "/metadata"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]
    assert image_client.get("/docs").status_code == 200
    page = image_client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text and 'type="file"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # no external asset: works offline


# --------------------------------------------------------------------------- /explain

@pytest.mark.slow  # loads the run's PyTorch model to explain (over 10 s on 2 cores)
def test_explain_an_image_as_json_or_png(image_client, images):
    answer = image_client.post("/explain", files=_files(images[:1]))
    assert answer.status_code == 200, answer.json()
    item = answer.json()["items"][0]
    assert answer.json()["method"] == "gradcam" and item["predicted"] == "red" and item["name"] == images[0].name
    picture = base64.b64decode(item["explanations"][0]["png_base64"])
    assert Image.open(io.BytesIO(picture)).format == "PNG"
    raw = image_client.post("/explain", files=_files(images[:1]), headers={"Accept": "image/png"})
    assert raw.headers["content-type"] == "image/png" and raw.content == picture


def test_explain_without_the_run_is_501_and_says_why(image_run, images, tmp_path):
    shutil.copy(image_run / "model.onnx", tmp_path / "model.onnx")
    with TestClient(create_app(tmp_path / "model.onnx")) as client:
        response = client.post("/explain", files=_files(images[:1]))
        assert client.get("/health").json()["explain"] is False
        assert client.post("/predict", files=_files(images[:1])).status_code == 200
    assert response.status_code == 501 and "without its run" in response.json()["error"]


@pytest.mark.slow  # loads the run's PyTorch model to explain (over 10 s on 2 cores)
def test_the_torch_engine_answers_as_onnx_does_and_explains_texts(text_run):
    texts = ["goal match team striker", "rain storm forecast"]
    with TestClient(create_app(text_run)) as onnx_client:
        onnx = onnx_client.post("/predict", json={"texts": texts}).json()
    with TestClient(create_app(text_run, engine="torch")) as client:
        torch_answer = client.post("/predict", json={"texts": texts}).json()
        explained = client.post("/explain", json={"texts": texts[:1]}).json()
    assert torch_answer["engine"] == "torch" and torch_answer["model_version"] != onnx["model_version"]
    assert [p["label"] for p in torch_answer["predictions"]] == [p["label"] for p in onnx["predictions"]]
    for mine, theirs in zip(torch_answer["predictions"], onnx["predictions"]):
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-3)
    entry = explained["items"][0]["explanations"][0]
    assert entry["class"] == "sport" and entry["segments"] and set(entry["top_words"]) & {"goal", "match", "team"}


def test_a_model_that_cannot_be_served_fails_before_anything_listens(image_run, tmp_path):
    with pytest.raises(HeadstartError, match="is not a headstart run"):
        create_app(tmp_path)
    (tmp_path / "model.txt").write_text("not a model")
    with pytest.raises(HeadstartError, match="neither a run directory nor an .onnx file"):
        create_app(tmp_path / "model.txt")
    with pytest.raises(HeadstartError, match="not a run directory"):
        create_app(image_run / "model.onnx", engine="torch")


def test_a_failing_model_call_is_a_500_json_and_the_server_goes_on(image_run, images):
    app = create_app(image_run)
    with TestClient(app, raise_server_exceptions=False) as client:
        working = app.state.batcher.run

        def broken(payloads):
            raise RuntimeError("out of memory")

        app.state.batcher.run = broken
        failed = client.post("/predict", files=_files(images[:1]))
        app.state.batcher.run = working
        recovered = client.post("/predict", files=_files(images[:1]))
    assert failed.status_code == 500 and "out of memory" not in failed.text  # the log says why, not the client
    assert failed.json()["error"].startswith("the server failed")
    assert recovered.status_code == 200 and recovered.json()["predictions"][0]["label"] == "red"


def test_an_unknown_engine_is_refused_with_the_choices(image_run):
    with pytest.raises(HeadstartError, match="unknown serving engine 'onnx'") as caught:
        create_app(image_run, engine="onnx")
    assert "onnxruntime" in caught.value.hint


# --------------------------------------------------------------------------- micro-batching

def test_concurrent_requests_share_batches_up_to_the_cap():
    seen = []

    def run(payloads):
        seen.append([p for p in payloads])
        time.sleep(0.05)  # while the model runs, the others queue up
        return [p * 10 for p in payloads]

    async def go():
        batcher = MicroBatcher(run, max_batch=4, window_s=0.05)
        tickets = [batcher.ticket() for _ in range(10)]
        answers = await asyncio.gather(*(batcher.submit(i, 1, t) for i, t in zip(range(10), tickets)))
        await batcher.stop()
        return answers, batcher

    answers, batcher = asyncio.run(go())
    assert answers == [i * 10 for i in range(10)]  # each request gets its own answer back
    assert all(len(batch) <= 4 for batch in seen) and len(seen) <= 4 and max(map(len, seen)) == 4
    assert batcher.batches_run == len(seen) and batcher.inputs_run == 10


def test_a_lone_request_never_waits_for_the_window():
    async def go():
        batcher = MicroBatcher(lambda payloads: payloads, max_batch=8, window_s=30)
        started = time.perf_counter()
        answer = await batcher.submit("x", 1, batcher.ticket())
        await batcher.stop()
        return answer, time.perf_counter() - started

    answer, seconds = asyncio.run(go())
    assert answer == "x" and seconds < 5  # nobody else is being read: no reason to wait 30 s


def test_the_app_batches_concurrent_requests_and_answers_each_its_own(image_run, images):
    app = create_app(image_run, batch_window_ms=50)
    single = {}

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            for i, p in enumerate(images):
                single[i] = (await client.post("/predict", files=_files([p]))).json()["predictions"][0]
            sends = [client.post("/predict", files=_files([images[i % 3]])) for i in range(12)]
            return await asyncio.gather(*sends)

    answers = asyncio.run(go())
    for i, response in enumerate(answers):
        got = response.json()["predictions"][0]
        want = single[i % 3]
        assert (got["label"], got["probability"]) == (want["label"], pytest.approx(want["probability"], abs=1e-5))
    assert max(app.state.batcher.batches) > 1  # at least one model call answered several requests


# --------------------------------------------------------------------------- no torch, real server

def test_the_default_path_never_imports_torch(image_run, text_run, images):
    code = ("import sys, json\nfrom fastapi.testclient import TestClient\n"
            "from headstart.deploy.serve import create_app\n"
            "out = []\n"
            "with TestClient(create_app(sys.argv[1])) as c:\n"
            "    image = open(sys.argv[3], 'rb').read()\n"
            "    out.append(c.post('/predict', files=[('file', ('a.png', image))]).status_code)\n"
            "with TestClient(create_app(sys.argv[2])) as c:\n"
            "    out.append(c.post('/predict', json={'texts': ['goal match']}).status_code)\n"
            "    out.append(c.get('/metadata').status_code)\n"
            "print(json.dumps([out, 'torch' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(image_run), str(text_run), str(images[0])],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[200, 200, 200], False]


class _Server:
    """`headstart serve RUN --port 0` in a subprocess on 127.0.0.1, through the command line (with
    torch made unimportable: the CLI must not need it either)."""

    def __init__(self, run: Path, *, env: dict | None = None):
        code = ("import sys\nsys.modules['torch'] = None\n"
                "from headstart.cli import main\nsys.exit(main(['serve', sys.argv[1], '--port', '0']))")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": SRC, **(env or {})})
        watchdog = threading.Timer(180, self.process.kill)  # a server that never says where it listens
        watchdog.start()
        line = self.process.stdout.readline()
        watchdog.cancel()
        if "http://" not in line:
            self.process.kill()
            raise AssertionError(f"the server did not start: {line}{self.process.stderr.read()}")
        self.url = line.split(" at ")[1].split()[0].rstrip("/")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, self.process.stderr.read()


def test_a_real_server_on_loopback_answers_and_ends_cleanly_on_sigterm(image_run, images):
    server = _Server(image_run, env={"HEADSTART_API_KEY": "from-the-environment"})
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, timeout=60) as client:
            health = client.get("/health").json()
            refused = client.post("/predict", files=_files(images[:1]))
            answer = client.post("/predict", files=_files(images[:1]), headers={"X-API-Key": "from-the-environment"})
    finally:
        code, log = server.stop()
    assert health["status"] == "ok" and health["explain"] is False  # torch is unimportable in that process
    assert health["api_key_required"] is True and refused.status_code == 401  # the key came from HEADSTART_API_KEY
    assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "red"
    assert code == 0, log
    assert "Shutting down" in log and "Finished server process" in log


def test_a_busy_port_is_a_plain_error(image_run):
    from headstart.deploy.serve import _listen

    taken = _listen("127.0.0.1", 0)
    try:
        with pytest.raises(HeadstartError, match="cannot listen on 127.0.0.1"):
            _listen("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


# --------------------------------------------------------------------------- the page in Chromium

class _Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    commands on fd 3, answers on fd 4, each JSON message ended by a NUL), so no extra package."""

    def __init__(self, profile: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=900,900"]
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.process = subprocess.Popen(["bash", "-c", script, CHROMIUM, *args], pass_fds=(to_browser, from_browser),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise AssertionError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer["result"]
        raise AssertionError(f"{method}: no answer in {timeout} s")

    def open(self, url: str) -> None:
        """A new tab at `url`, which later commands drive (the browser can open several in turn)."""
        self.session = None  # a tab is made by the browser, not by the tab open before it
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.navigate", {"url": url})

    def screenshot(self, path: Path) -> Path:
        picture = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(picture))
        return path

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"waited {timeout} s for {expression}")

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None,
                                    reason="no Chromium found (chromium, chromium-browser or google-chrome on PATH)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module's page tests (each opens its own tab)."""
    chromium = _Chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield chromium
    chromium.close()


class _ServerInThread:
    """The app under uvicorn on 127.0.0.1 in a thread of this process: the page tests are about
    the page, so they need no process of their own (the loopback test above runs `headstart serve`
    in one); torch is already imported here for /explain."""

    def __init__(self, run: Path):
        import uvicorn

        from headstart.deploy.serve import _listen

        listener = _listen("127.0.0.1", 0)
        self.server = uvicorn.Server(uvicorn.Config(create_app(run), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [listener]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.mark.slow  # loads the run's PyTorch model to explain (over 10 s on 2 cores)
@NEEDS_CHROMIUM
def test_the_page_in_headless_chromium_shows_the_label_and_the_explanation_of_a_chosen_file(image_run, images,
                                                                                            browser, tmp_path):
    server = _ServerInThread(image_run)
    try:
        browser.open(server.url + "/")
        browser.wait_for("!document.getElementById('imageCard').hidden")  # the page asked /health what to show
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        node = browser.send("DOM.querySelector", {"nodeId": root, "selector": "input[type=file]"})["nodeId"]
        browser.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(images[1])]})
        label = browser.wait_for("document.getElementById('label').textContent")
        bars = browser.evaluate("document.querySelectorAll('#bars .bar').length")
        error = browser.evaluate("document.getElementById('error').textContent")
        browser.evaluate("document.getElementById('why').click()")  # the server loads the run's torch model
        heat_map = browser.wait_for("(document.querySelector('#explanation img') || {}).naturalWidth", timeout=180)
        shot = browser.screenshot(tmp_path / "serve-page.png")
    finally:
        server.stop()
    print(f"\nscreenshot of the page: {shot}")
    assert label == "green" and bars == 3 and error == "" and heat_map > 64
    assert Image.open(shot).size[0] > 0


@pytest.mark.slow  # loads the run's PyTorch model to explain (over 10 s on 2 cores)
@NEEDS_CHROMIUM
def test_the_page_of_a_text_model_labels_a_pasted_text_and_highlights_its_words(text_run, browser, tmp_path):
    server = _ServerInThread(text_run)
    try:
        browser.open(server.url + "/")
        browser.wait_for("!document.getElementById('textCard').hidden")
        file_hidden = browser.evaluate("document.getElementById('imageCard').hidden")
        browser.evaluate("document.getElementById('text').value = 'goal match team striker league';"
                         "document.getElementById('send').click()")
        label = browser.wait_for("document.getElementById('label').textContent")
        browser.evaluate("document.getElementById('why').click()")
        words = browser.wait_for("[...document.querySelectorAll('#explanation .word')].map(w => w.textContent)",
                                 timeout=180)
        shot = browser.screenshot(tmp_path / "serve-page-text.png")
    finally:
        server.stop()
    print(f"\nscreenshot of the page: {shot}")
    assert file_hidden and label == "sport"
    assert {"goal", "match", "team"} <= {w.strip() for w in words}
