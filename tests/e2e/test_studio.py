"""`tunesmith studio DIR` as a subprocess over real run folders, through real HTTP: the Runs page, a run's
live curve (server-sent events while `tunesmith train` writes), Cancel and Resume through the job queue, the
comparison, and what it refuses: paths outside DIR (`..`, absolute, symlinks), forms without the CSRF token or
from another origin, a non-local bind without a token, clients without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMALL_LABELS, demo_files, demo_rows
from tests.e2e.test_cli import tunesmith

pytestmark = pytest.mark.slow


class Studio:
    def __init__(self, folder: Path, *flags: str):
        self.log = folder.parent / f"{folder.name}-studio.log"
        handle = self.log.open("w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
        command = [sys.executable, "-m", "tunesmith", "studio", str(folder), "--port", "0", *flags]
        self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            found = re.search(r"(http://[\d.]+:\d+/)(\?token=\S+)?", self.log.read_text())
            if found:
                self.url, self.token_link = found.group(1), found.group(0)
                break
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.1)
        else:
            raise AssertionError(self.log.read_text())
        for _ in range(100):
            try:
                httpx.get(self.url, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, follow_redirects=False)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)


def train_args(model: Path, files: dict[str, Path], out: Path, *extra: str) -> list[object]:
    return [
        "train", "--model", model, "--data", files["train"], "--validation", files["validation"],
        "--test", files["test"], "--method", "lora", "--out", out, "model.max_length=32", "train.batch_size=4",
        "train.log_every_steps=1", "evaluation.forgetting=false", "evaluation.bootstrap_resamples=100", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_bert_dir):
    """DIR with two finished runs (runs/a, runs/team/b) and a file that is not a run."""
    root = tmp_path_factory.mktemp("studio") / "runs"
    files = demo_files(root.parent, train=24, validation=12, test=12)
    proc = tunesmith(*train_args(tiny_bert_dir, files, root / "a", "train.epochs=1"))
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(root / "a", root / "team" / "b")  # a second finished run, as its folder records it
    (root / "notes.txt").write_text("not a run\n")
    return root


@pytest.fixture(scope="module")
def studio(folder):
    running = Studio(folder, "--upload-limit-mb", "2")
    yield running
    running.stop()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_runs_page_lists_every_run_with_status_and_gain(studio, folder):
    with studio.client() as client:
        page = client.get("/").text
        assert "2 of 2 runs" in page and "team/b" in page and 'href="/runs/a"' in page
        assert page.count('class="status-finished"') == 2
        report = json.loads((folder / "a" / "eval.json").read_text())
        metric = next(m for m in report["headline"] if "f1" in m)
        assert f"{report['tuned'][metric]:.3f}" in page
        assert "team/b" not in client.get("/", params={"q": "zzz"}).text
        assert "1 of 2 runs" in client.get("/", params={"q": "team"}).text
        assert client.get("/", params={"status": "running"}).text.count("status-finished") == 0

        run = client.get("/runs/team/b").text
        assert "Test set: base vs tuned" in run and 'data-events="/runs/team/b/events"' in run
        compared = client.get("/compare", params=[("run", "a"), ("run", "team/b")])
        assert compared.status_code == 200 and compared.text.count("<tr>") >= 3
        assert client.get("/static/studio.js").status_code == 200


def test_no_path_outside_the_folder_can_be_named(studio, folder, tmp_path):
    outside = folder.parent / "outside-run"
    if not outside.exists():
        outside.mkdir()
        (outside / "config.yaml").write_text((folder / "a" / "config.yaml").read_text())
    (folder / "link").symlink_to(outside, target_is_directory=True)
    with studio.client() as client:
        for path in (
            "/runs/../outside-run",
            "/runs/%2E%2E/outside-run",
            "/runs/a/../../outside-run",
            "/runs/%2Fetc",
            "/runs//etc/passwd",
            "/runs/link",
            "/runs/notes.txt",
            "/compare?run=a&run=../outside-run",
            "/runs/link/events",
            "/static/../app.py",
            "/static/%2E%2E/app.py",
        ):
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert "config.yaml" not in response.text and "root:" not in response.text


def test_forms_need_the_csrf_token(studio, folder):
    with studio.client() as client:
        assert client.post("/runs/a/resume").status_code == 403
        assert client.post("/runs/a/resume", data={"csrf": "guess"}).status_code == 403
        assert "CSRF" in client.post("/runs/a/resume", data={"csrf": ""}).text
    assert not (folder / ".studio" / "logs" / "1.log").exists()  # nothing was queued


def test_live_curve_then_cancel_and_resume(studio, folder, tiny_bert_dir):
    files = demo_files(folder.parent, train=200, validation=12, test=12)
    out = folder / "live"
    args = train_args(tiny_bert_dir, files, out, "train.epochs=3", "train.checkpoint_every_minutes=null")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "tunesmith", *map(str, args[:])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.1)
    seen = []
    with studio.client() as client, client.stream("GET", "/runs/live/events", timeout=120) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                record = json.loads(line[6:])
                seen.append(record)
                if sum(r["event"] == "train" for r in seen) == 20:
                    break
        assert trainer.poll() is None  # the curve grew while it trained
        page = client.get("/runs/live").text
        assert 'class="status-running"' in page and ">Cancel<" in page
        evil = {"Origin": "http://evil.example"}
        assert client.post("/runs/live/cancel", data={"csrf": csrf_of(page)}, headers=evil).status_code == 403
        assert client.post("/runs/live/cancel", data={"csrf": csrf_of(page)}).status_code == 303
        assert trainer.wait(timeout=60) == 143, trainer.stderr.read().decode()[-2000:]
        page = client.get("/runs/live").text
        assert 'class="status-interrupted"' in page and ">Resume<" in page
        assert client.post("/runs/live/resume", data={"csrf": csrf_of(page)}).status_code == 303
        deadline = time.time() + 240
        while time.time() < deadline and 'class="status-finished"' not in client.get("/runs/live").text:
            time.sleep(1)
        assert (out / "eval.json").is_file(), (folder / ".studio" / "logs" / "1.log").read_text()[-3000:]
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        streamed = []
        with client.stream("GET", "/runs/live/events") as again:
            for line in again.iter_lines():
                if line.startswith("data: "):
                    streamed.append(json.loads(line[6:]))
                if line.startswith("event: end"):
                    break
        assert streamed == rows  # every line, in order, the resumed run's included


def test_a_network_bind_needs_a_token_and_clients_must_give_it(folder, tmp_path):
    proc = tunesmith("studio", folder, "--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2 and "--token-file" in proc.stderr and "Traceback" not in proc.stderr
    token = tmp_path / "token"
    token.write_text("secret-token-0123456789\n")
    guarded = Studio(folder, "--token-file", str(token))
    try:
        with guarded.client() as client:
            assert client.get("/").status_code == 401
            assert (
                client.get("/", headers={"Authorization": "Bearer wrong-token-000000000"}).status_code == 401
            )
            login = client.get("/?token=secret-token-0123456789")
            assert login.status_code == 303 and "tunesmith_studio" in login.headers["set-cookie"]
            assert (
                "SameSite=strict" in login.headers["set-cookie"] and "HttpOnly" in login.headers["set-cookie"]
            )
            assert client.get("/").status_code == 200  # the cookie
    finally:
        guarded.stop()


def test_new_run_checks_the_upload_estimates_then_trains(studio, folder):
    rows = [f"{text.replace(',', ' ')},{label}" for text, label in demo_rows("train", SMALL_LABELS, 60)]
    train = "text,label\n" + "\n".join(rows + rows[:4]) + "\n"  # four rows twice: a known problem
    held = "text,label\n" + "\n".join(
        f"{t.replace(',', ' ')},{lab}" for t, lab in demo_rows("test", SMALL_LABELS, 15)
    )
    with studio.client() as client:
        form = client.get("/new").text
        assert (
            'type="file" name="train_upload"' in form and "<button" in form and 'id="train" disabled' in form
        )
        csrf = csrf_of(form)
        fields = {
            "csrf": csrf,
            "name": "fresh",
            "task": "classification",
            "model": "minilm",
            "method": "lora",
        }
        broken = client.post(
            "/new",
            data=fields,
            files={"train_upload": ("tickets.csv", "text,label\nno label here,\n" + train)},
        )
        assert (
            broken.status_code == 200
            and "tickets.csv line 2" in broken.text
            and 'id="train" disabled' in broken.text
        )
        checked = client.post(
            "/new",
            data=fields,
            files={"train_upload": ("../../evil.csv", train), "test_upload": ("held.csv", held + "\n")},
        )
        assert checked.status_code == 200, checked.text
        page = checked.text
        assert "duplicates" in page and 'class="warning"' in page  # the known problem, shown before Train
        assert "Estimate on this machine" in page and "<td>lora</td>" in page
        assert 'id="train" disabled' not in page and not (folder.parent / "evil.csv").exists()
        hidden = dict(
            re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.split('action="/new/train"')[1]
            )
        )
        assert hidden["train_file"].startswith(".studio/uploads/") and hidden["train_file"].endswith(
            "/evil.csv"
        )
        assert client.post("/new/train", data={**hidden, "csrf": "stale"}).status_code == 403
        assert client.post("/new/train", data=hidden).status_code == 303
        deadline = time.time() + 300
        while time.time() < deadline and 'class="status-finished"' not in client.get("/runs/fresh").text:
            time.sleep(1)
        page = client.get("/runs/fresh").text
        assert 'class="status-finished"' in page and "Test set: base vs tuned" in page
        big = client.post("/new", data=fields, files={"train_upload": ("big.csv", b"x" * (3 * 2**20))})
        assert big.status_code == 413


def test_try_answers_as_tunesmith_predict(studio, folder):
    texts = ["Manual pages for the network tools", "Development files for the XML library"]
    proc = tunesmith("predict", folder / "a", *texts, "--json")
    assert proc.returncode == 0, proc.stderr
    labels = [json.loads(line)["label"] for line in proc.stdout.splitlines()]
    with studio.client() as client:
        page = client.get("/runs/a").text
        assert 'href="/runs/a/try"' in page
        form = client.get("/runs/a/try").text
        answered = client.post("/runs/a/try", data={"csrf": csrf_of(form), "inputs": "\n".join(texts)})
        assert answered.status_code == 200, answered.text
        cells = re.findall(r'<td class="answer">([^<]*)</td>', answered.text)
        assert [cell.split("\t")[0] for cell in cells] == labels
        assert client.post("/runs/a/try", data={"inputs": texts[0]}).status_code == 403


def test_serve_and_watch_rolls_back_checks_drift_and_queues_a_retune(studio, folder):
    shutil.copytree(folder / "a", folder / "a" / "versions" / "v2", ignore=shutil.ignore_patterns("versions"))
    with studio.client() as client:
        page = client.get("/runs/a/serve").text
        assert "serving <strong>v1</strong> of v1, v2" in page and "No drift check yet." in page
        assert "No corrections sent" in page and not (folder / "a" / "requests.db").exists()
        csrf = csrf_of(page)
        assert client.post("/runs/a/rollback", data={"csrf": csrf, "version": "v9"}).status_code == 404
        assert client.post("/runs/a/rollback", data={"csrf": csrf, "version": "v2"}).status_code == 303
        assert json.loads((folder / "a" / "serving.json").read_text())["current"] == "v2"
        page = client.get("/runs/a/serve").text
        assert "serving <strong>v2</strong>" in page and "<td>studio</td>" in page
        assert client.post("/runs/a/monitor", data={"csrf": csrf}).status_code == 303
        assert client.post("/runs/a/retune", data={"csrf": csrf}).status_code == 303
        deadline = time.time() + 120
        while time.time() < deadline and "insufficient_data" not in client.get("/runs/a/serve").text:
            time.sleep(0.5)
        while time.time() < deadline and "retune: failed" not in client.get("/runs/a/serve").text:
            time.sleep(0.5)
        page = client.get("/runs/a/serve").text
        assert "insufficient_data" in page and "retune: failed" in page  # nothing to learn from yet
        logs = sorted((folder / ".studio" / "logs").glob("*.log"), key=lambda p: int(p.stem))
        assert "nothing to learn from" in logs[-1].read_text()
        assert 'class="status-finished"' in client.get("/runs/a").text
