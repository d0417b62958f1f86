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
from tests.e2e.browser import axe_violations, chromium, console_problems, needs_axe, needs_chromium
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
        script = client.get("/static/studio.js")
        assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"
        policy = client.get("/").headers["content-security-policy"]  # this origin's script only, no framing
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


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


def test_new_run_shows_file_line_errors_and_refuses_what_it_must(studio, folder):
    """The form's refusals over plain HTTP (the journey in Chromium below checks, estimates and trains)."""
    rows = [f"{text.replace(',', ' ')},{label}" for text, label in demo_rows("train", SMALL_LABELS, 20)]
    with studio.client() as client:
        form = client.get("/new").text
        assert (
            'type="file" name="train_upload"' in form and "<button" in form and 'id="train" disabled' in form
        )
        fields = {"csrf": csrf_of(form), "name": "fresh", "task": "classification", "model": "minilm"}
        broken = client.post(
            "/new",
            data=fields,
            files={"train_upload": ("../../evil.csv", "text,label\nno label here,\n" + "\n".join(rows))},
        )
        page = broken.text
        assert broken.status_code == 200 and "evil.csv line 2" in page and 'id="train" disabled' in page
        assert not (folder.parent / "evil.csv").exists() and not (folder.parent.parent / "evil.csv").exists()
        hidden = dict(
            re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.split('action="/new/train"')[1]
            )
        )
        assert re.fullmatch(r"\.studio/uploads/[0-9a-f]{12}/evil\.csv", hidden["train_file"])
        for override, why in (
            ("output_dir=/tmp/elsewhere", "under train."),
            ("train.init_from=/etc", "paths or addresses"),
            ("train.mlflow_uri=http://evil.example", "paths or addresses"),
            ("train.epochs", "KEY=VALUE"),
        ):
            refused = client.post(
                "/new", data={**fields, "train_file": hidden["train_file"], "overrides": override}
            )
            assert why in refused.text and 'id="train" disabled' in refused.text, override
        assert client.post("/new/train", data={**hidden, "csrf": "stale"}).status_code == 403
        big = client.post("/new", data=fields, files={"train_upload": ("big.csv", b"x" * (3 * 2**20))})
        assert big.status_code == 413
    assert not (folder / "fresh").exists()


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
        missing = client.post("/runs/a/rollback", data={"csrf": csrf, "version": "v9"})
        assert missing.status_code == 409 and "v9" in missing.text
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


@needs_chromium
@needs_axe
def test_the_whole_journey_in_chromium(studio, folder, tmp_path):
    """Upload a CSV with a known problem -> the warning shows -> Train -> the curve gains points while it
    trains -> the run finishes -> base vs tuned -> Try gives `tunesmith predict`'s labels -> compare two runs.
    On every page: axe-core finds no violation and the console stays clean; each page's screenshot is kept."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    rows = [f"{text.replace(',', ' ')},{label}" for text, label in demo_rows("train", SMALL_LABELS, 120)]
    upload = tmp_path / "tickets.csv"
    upload.write_text("text,label\n" + "\n".join(rows + rows[:5]) + "\n")  # five rows twice: the problem
    held = tmp_path / "held.csv"
    held.write_text("text,label\n" + "\n".join(
        f"{t.replace(',', ' ')},{lab}" for t, lab in demo_rows("test", SMALL_LABELS, 30)) + "\n")  # fmt: skip
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = chromium(tmp_path / "profile", "1280,1600")
    wait = WebDriverWait(driver, 60, poll_frequency=0.1)

    def checked(name: str) -> None:
        """The page now open: no accessibility violation, nothing in the console, its screenshot."""
        assert axe_violations(driver) == [], name
        assert console_problems(driver) == [], name
        driver.save_screenshot(str(shots / f"{name}.png"))

    try:
        driver.get(studio.url)
        checked("runs")
        driver.find_element(By.LINK_TEXT, "New run").click()
        driver.find_element(By.NAME, "name").send_keys("journey")
        Select(driver.find_element(By.NAME, "model")).select_by_value("minilm")
        driver.find_element(By.NAME, "train_upload").send_keys(str(upload))
        driver.find_element(By.NAME, "test_upload").send_keys(str(held))
        overrides = (
            "train.epochs=2", "train.batch_size=8", "train.log_every_steps=1", "model.max_length=32",
            "evaluation.forgetting=false", "evaluation.bootstrap_resamples=100",
        )  # fmt: skip
        driver.find_element(By.NAME, "overrides").send_keys("\n".join(overrides))
        assert not driver.find_element(By.ID, "train").is_enabled()
        driver.find_element(By.CSS_SELECTOR, "form.new-run button").click()
        WebDriverWait(driver, 240).until(lambda d: d.find_elements(By.CSS_SELECTOR, "section.check"))
        warning = driver.find_element(By.CSS_SELECTOR, "section.check .warning").text
        assert "duplicate" in warning and "tickets.csv" in warning  # the known problem, before Train
        assert "Estimate on this machine" in driver.page_source
        checked("new-run-checked")
        driver.find_element(By.ID, "train").click()

        wait.until(lambda d: d.current_url.endswith("/runs/journey"))
        seen = []  # the loss curve's point count, read while the run trains
        deadline = time.time() + 300
        while time.time() < deadline and "Test set: base vs tuned" not in driver.page_source:
            try:
                points = driver.execute_script("return document.querySelectorAll('svg.loss .point').length")
            except Exception:  # the page reloading once the run ended
                points = None
            if points and (not seen or points != seen[-1]):
                seen.append(points)
            time.sleep(0.2)
        assert len(seen) >= 3 and seen == sorted(seen), seen  # it grew, live, before the report came
        assert (folder / "journey" / "eval.json").is_file()
        assert driver.find_element(By.CSS_SELECTOR, "strong.status-finished").text == "finished"
        assert "Test set: base vs tuned" in driver.page_source and "95% interval" in driver.page_source
        checked("run-finished")

        texts = ["Manual pages for the network tools", "Development files for the XML library"]
        proc = tunesmith("predict", folder / "journey", *texts, "--json")
        assert proc.returncode == 0, proc.stderr
        labels = [json.loads(line)["label"] for line in proc.stdout.splitlines()]
        driver.find_element(By.LINK_TEXT, "Try it").click()
        driver.find_element(By.ID, "inputs").send_keys("\n".join(texts))
        driver.find_element(By.CSS_SELECTOR, "main form button").click()
        answers = WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "td.answer"))
        assert [a.text.split()[0] for a in answers] == labels
        checked("try")
        driver.get(studio.url + "runs/journey/serve")
        assert "serving v1" in driver.find_element(By.TAG_NAME, "main").text
        checked("serve")

        driver.get(studio.url)
        driver.find_element(By.CSS_SELECTOR, 'input[value="journey"]').click()
        driver.find_element(By.CSS_SELECTOR, 'input[value="a"]').click()
        driver.find_element(By.CSS_SELECTOR, "#compare-form button").click()
        wait.until(lambda d: "/compare?" in d.current_url)
        table = driver.find_element(By.CSS_SELECTOR, "main table").text
        assert "journey" in table and "a" in table.split()
        checked("compare")
    finally:
        driver.quit()
    assert sorted(p.name for p in shots.iterdir()) == [
        f"{n}.png" for n in ("compare", "new-run-checked", "run-finished", "runs", "serve", "try")
    ]
