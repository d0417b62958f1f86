"""`tunesmith studio DIR`: a local web app over the run folders in DIR (FastAPI, as the server).

    GET  /                         Runs: every run with task, model, method, status, metric and gain; filter, sort
    GET  /runs/{name}              Run: live curves while it trains, then its report's sections; Cancel, Resume
    GET  /runs/{name}/events       the run's metrics.jsonl as server-sent events, line by line as it is written
    POST /runs/{name}/cancel       SIGTERM to its training (it checkpoints, then stops)
    POST /runs/{name}/resume       queue `tunesmith train --out RUN --resume`
    GET  /compare?run=A&run=B      `tunesmith compare` for the ticked runs
    GET|POST /runs/{name}/try      answer lines as `tunesmith predict` (a chat run: a conversation, as `chat`)
    GET  /runs/{name}/serve        which version serves, drift, corrections; POST rollback, monitor, retune
    GET|POST /new, POST /new/train the data check and estimates of a draft run, then its `tunesmith train`
    GET  /static/...               the stylesheet and the script, from the package

Jobs (train, resume, monitor, retune) run one at a time from a queue kept in SQLite (studio/jobs.py), each
tunesmith command in its own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile as StarletteUpload

from tunesmith.errors import UserError
from tunesmith.inference import load_run
from tunesmith.recipes.compare import compare_runs, comparison_body
from tunesmith.recipes.predict import predictions
from tunesmith.reporting.run_report import report_sections
from tunesmith.runs import LOCK, RunFolder, writing
from tunesmith.studio.conversation import read_conversation, with_message
from tunesmith.studio.deployment_view import serve_view
from tunesmith.studio.jobs import JobQueue
from tunesmith.studio.new_run import SPLITS, Checked, Draft, check_draft, choices, save_upload, train_args
from tunesmith.studio.pages import (
    chat_page,
    compare_page,
    message_page,
    new_run_page,
    run_page,
    runs_page,
    serve_page,
    try_page,
)
from tunesmith.studio.run_index import RunIndex, RunRow, holder_alive
from tunesmith.studio.security import COOKIE, NotFound, inside, new_csrf, same_secret
from tunesmith.tracking.run_tracking import record_serving
from tunesmith.versions import Deployment

STATIC = Path(__file__).parent / "static"
TRY_INPUTS = 50
"""Most input lines the Try page answers at once."""
TOP = 3
"""Ranked labels shown per text (as `tunesmith predict --top 3`)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""On every answer: only this origin's script, styles (the report's inline ones), images (its PNGs as data:
URIs) and forms; no framing by another site (clickjacking)."""
TAIL_SECONDS = 0.25
"""How often an open event stream looks for new lines in metrics.jsonl (a stat; no client polling)."""


@dataclass
class StudioSettings:
    host: str = "127.0.0.1"
    """Where it listens; any address but the loopback needs `token`."""
    port: int = 7860
    token: str | None = None
    """Required from every client when set (bearer header, or once as ?token= which sets a cookie)."""
    upload_limit_mb: int = 200
    """Largest request body (the New run page's uploads together); larger ones get 413 before they are read."""


class Studio:
    """What the routes share: the folder, its runs, the job queue and this process's CSRF token."""

    def __init__(self, root: Path, settings: StudioSettings):
        self.root = Path(root).resolve()
        self.settings = settings
        self.index = RunIndex(self.root)
        self.queue = JobQueue(self.root)
        self.csrf = new_csrf()
        self._sections: dict[str, tuple[tuple[int, ...], str]] = {}
        self._loaded: tuple[tuple[str, int], Any] | None = None
        self._loading = threading.Lock()

    def run(self, name: str) -> RunFolder:
        """The run folder `name` names; one that a queued or starting job will create counts too."""
        run = RunFolder(inside(self.root, name))
        if not run.is_run() and not self.queue.jobs(states=("queued", "running"), run=name):
            raise NotFound(f"{name!r}: no run folder of that name under {self.root}")
        return run

    def sections(self, name: str, run: RunFolder) -> str:
        """The report's sections of a run, rendered again only when one of its files changed (the curves are
        drawn with matplotlib: too slow to redo on every visit)."""
        if not run.is_run():
            return '<p class="muted">Waiting for the job to start: the data check and the base model come first.</p>'
        stamp = tuple(_mtime(p) for p in (run.summary, run.eval, run.metrics, run.data_check, run.config))
        cached = self._sections.get(name)
        if cached is None or cached[0] != stamp:
            cached = (stamp, report_sections(run))
            self._sections[name] = cached
        return cached[1]

    def trained(self, name: str) -> Any:
        """The run loaded as `predict` and `chat` load it; it stays loaded until another run is tried or its
        model changes."""
        run = self.run(name)
        run.require_run()
        stamp = (name, _mtime(run.model / "tunesmith.json"))
        with self._loading:
            if self._loaded is None or self._loaded[0] != stamp:
                self._loaded = None  # the old model goes before the new one loads
                self._loaded = (stamp, load_run(run.root))
            return self._loaded[1]

    def answers(self, name: str, lines: list[str]) -> list[tuple[str, str]]:
        """What the run says for each input line, by `tunesmith predict`'s own code (predictions and the
        task's prediction line)."""
        trained = self.trained(name)
        rows = predictions(trained, lines, None, None)
        return [(line, trained.task.prediction_line(row, TOP)) for line, row in zip(lines, rows, strict=True)]

    def reply(self, name: str, turns: list[dict[str, str]]) -> str:
        """The chat run's next reply to the conversation, by `tunesmith chat`'s own code."""
        trained = self.trained(name)
        return trained.task.answer(trained.model, turns, trained.pad_id)

    def row(self, name: str) -> RunRow:
        """The run's row; a job's run whose folder `train` has not written yet is "queued"."""
        found = next((r for r in self.rows() if r.name == name), None)
        if found is not None:
            return found
        job = self.queue.last_job(name)
        what = dict(zip(job.args[1::2], job.args[2::2], strict=False)) if job is not None else {}
        return RunRow(
            name, what.get("--task", "?"), what.get("--model", "default"), what.get("--method", "?"), "queued",
            *(None,) * 6, "tuned", 0.0,
        )  # fmt: skip

    def rows(self) -> list[RunRow]:
        failed = {j.run for j in self.queue.jobs(states=("failed", "died"))}
        return self.index.rows(failed)


def build_studio(root: Path, settings: StudioSettings) -> FastAPI:
    studio = Studio(root, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        studio.queue.close()

    app = FastAPI(
        title="tunesmith studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.middleware("http")(_guard(studio))
    _serving(app, studio)  # before _pages: /runs/{name}/serve is not a run named "name/serve"
    _pages(app, studio)
    _actions(app, studio)
    _new_run(app, studio)
    return app


def _guard(
    studio: Studio,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The token (when set) on every request; a POST must carry the CSRF token and come from this origin."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await checked(request, call_next)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def checked(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        token = studio.settings.token
        if token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
            query = request.query_params.get("token")
            if same_secret(query, token):
                target = request.url.path
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                return response
            if not (same_secret(given, token) or same_secret(request.cookies.get(COOKIE), token)):
                return _html(
                    message_page("token needed", "open the link the studio printed (with ?token=)", 401), 401
                )
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                return _html(message_page("refused", "a form from another site", 403), 403)
            size = request.headers.get("content-length")
            if size is None or not size.isdigit():
                return _html(message_page("refused", "a form without its length", 411), 411)
            if int(size) > studio.settings.upload_limit_mb * 2**20:
                limit = f"the files together are over {studio.settings.upload_limit_mb} MB"
                return _html(message_page("too large", limit, 413), 413)
        try:
            return await call_next(request)
        except Refused as exc:
            return _html(message_page("refused", str(exc), 403), 403)
        except NotFound as exc:
            return _html(message_page("not found", str(exc), 404), 404)
        # any other refusal: e.g. a rollback while `tunesmith retune` writes the run, an unknown version
        except UserError as exc:
            return _html(message_page("could not do that", str(exc), 409), 409)

    return guard


class Refused(Exception):
    """A form without this process's CSRF token."""


async def checked_form(request: Request, studio: Studio) -> Any:
    """The POSTed form, refused (403) unless it carries the CSRF token the studio's pages embed."""
    form = await request.form(max_files=len(SPLITS), max_fields=32)
    if not same_secret(str(form.get("csrf") or "") or None, studio.csrf):
        raise Refused("the form's CSRF token is missing or stale; reload the page")
    return form


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _pages(app: FastAPI, studio: Studio) -> None:
    @app.get("/")
    async def runs(request: Request) -> HTMLResponse:
        query = {k: v for k, v in request.query_params.items() if k in ("q", "status", "sort")}
        every = await asyncio.to_thread(studio.rows)
        shown = _filtered(every, query)
        queue = studio.queue.jobs(states=("queued", "running"))
        return _html(runs_page(shown, queue, query, len(every)))

    @app.get("/compare")
    async def compare(request: Request) -> HTMLResponse:
        names = request.query_params.getlist("run")
        if len(names) < 2:
            return _html(
                compare_page("<h1>Compare</h1><p>Tick two or more finished runs on the Runs page.</p>")
            )
        rows = compare_runs([studio.run(n).root for n in names])
        for row, name in zip(rows, names, strict=True):
            row["run"] = name
        return _html(compare_page(comparison_body(rows)))

    @app.get("/runs/{name:path}/try")
    async def try_form(name: str) -> HTMLResponse:
        trained = await asyncio.to_thread(studio.trained, name)
        if trained.task.converses:
            return _html(chat_page(studio.row(name), [], studio.csrf))
        return _html(try_page(studio.row(name), "", [], studio.csrf))

    @app.post("/runs/{name:path}/try")
    async def try_run(name: str, request: Request) -> HTMLResponse:
        form = await checked_form(request, studio)
        if "conversation" in form:
            return await _chat_turn(studio, name, form)
        text = str(form.get("inputs") or "")
        lines = [line for line in text.splitlines() if line.strip()][:TRY_INPUTS]
        try:
            answers = await asyncio.to_thread(studio.answers, name, lines)
        except UserError as exc:
            return _html(try_page(studio.row(name), text, [], studio.csrf, str(exc)), 422)
        return _html(try_page(studio.row(name), text, answers, studio.csrf))

    @app.get("/runs/{name:path}/events")
    async def events(name: str) -> StreamingResponse:
        run = studio.run(name)
        return StreamingResponse(
            _tail(studio, run, name), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get("/runs/{name:path}")
    async def run(name: str) -> HTMLResponse:
        folder = studio.run(name)
        row = studio.row(name)
        sections = await asyncio.to_thread(studio.sections, name, folder)
        metric = _validation_metric(folder)
        return _html(run_page(row, sections, studio.queue.last_job(name), studio.csrf, metric))


async def _chat_turn(studio: Studio, name: str, form: Any) -> HTMLResponse:
    """One turn of the Try page's conversation: the user's message, then the run's reply (or Start over)."""
    studio.run(name)
    row = studio.row(name)
    try:
        turns = read_conversation(str(form.get("conversation") or ""))
        if form.get("action") == "reset":
            return _html(chat_page(row, [], studio.csrf))
        message = str(form.get("message") or "")
        if not message.strip():
            return _html(chat_page(row, turns, studio.csrf, "write a message first"), 422)
        turns = with_message(turns, str(form.get("system") or ""), message)
        reply = await asyncio.to_thread(studio.reply, name, turns)
    except UserError as exc:
        return _html(chat_page(row, [], studio.csrf, str(exc)), 422)
    return _html(chat_page(row, [*turns, {"role": "assistant", "content": reply}], studio.csrf))


def _actions(app: FastAPI, studio: Studio) -> None:
    @app.post("/runs/{name:path}/cancel")
    async def cancel(name: str, request: Request) -> Response:
        await checked_form(request, studio)
        run = studio.run(name)
        job = next(iter(studio.queue.jobs(states=("running",), run=name)), None)
        if job is not None:
            studio.queue.cancel(job.id)
        elif holder_alive(run.root / LOCK):  # started elsewhere (`tunesmith train`): the same signal
            os.kill(int(json.loads((run.root / LOCK).read_text())["pid"]), signal.SIGTERM)
        return RedirectResponse(f"/runs/{name}", status_code=303)

    @app.post("/runs/{name:path}/resume")
    async def resume(name: str, request: Request) -> Response:
        await checked_form(request, studio)
        run = studio.run(name)
        studio.queue.submit(name, ["train", "--out", str(run.root), "--resume"])
        return RedirectResponse(f"/runs/{name}", status_code=303)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _serving(app: FastAPI, studio: Studio) -> None:
    @app.get("/runs/{name:path}/serve")
    async def serve(name: str) -> HTMLResponse:
        run = studio.run(name)
        view = await asyncio.to_thread(serve_view, run.root)
        jobs = [j for j in studio.queue.jobs(run=name) if j.args[:1] != ["train"]]
        return _html(serve_page(studio.row(name), view, jobs, studio.csrf))

    @app.post("/runs/{name:path}/retune")
    async def retune(name: str, request: Request) -> Response:
        await checked_form(request, studio)
        studio.queue.submit(name, ["retune", str(studio.run(name).root)])
        return RedirectResponse(f"/runs/{name}/serve", status_code=303)

    @app.post("/runs/{name:path}/monitor")
    async def check_drift(name: str, request: Request) -> Response:
        await checked_form(request, studio)
        studio.queue.submit(name, ["monitor", str(studio.run(name).root)])
        return RedirectResponse(f"/runs/{name}/serve", status_code=303)

    @app.post("/runs/{name:path}/rollback")
    async def rollback(name: str, request: Request) -> Response:
        """Serve another version at once, as `tunesmith rollback --to` does (a running server swaps it in)."""
        form = await checked_form(request, studio)
        run = studio.run(name)
        await asyncio.to_thread(serve_version, run.root, str(form.get("version") or ""))
        return RedirectResponse(f"/runs/{name}/serve", status_code=303)


def serve_version(root: Path, version: str) -> None:
    deployment = Deployment(root)
    with writing(root, command=f"tunesmith studio: serve {version}"):
        deployment.serve(version, reason="studio")
    record_serving(deployment, lambda text: print(f"tunesmith studio: {text}", flush=True))


def _new_run(app: FastAPI, studio: Studio) -> None:
    limit = studio.settings.upload_limit_mb

    @app.get("/new")
    async def new() -> HTMLResponse:
        return _html(new_run_page(Draft(), choices(studio.root), None, studio.csrf, limit))

    @app.post("/new")
    async def check(request: Request) -> HTMLResponse:
        form = await checked_form(request, studio)
        draft = Draft.of(form)
        for split in SPLITS:
            upload = form.get(f"{split}_upload")
            if isinstance(upload, StarletteUpload) and upload.filename:
                draft.files[split] = save_upload(studio.root, upload.filename, await upload.read())
        checked = await asyncio.to_thread(check_draft, studio.root, draft)
        return _html(new_run_page(draft, choices(studio.root), checked, studio.csrf, limit))

    @app.post("/new/train")
    async def train(request: Request) -> Response:
        draft = Draft.of(await checked_form(request, studio))
        try:
            args = train_args(studio.root, draft)
        except UserError as exc:
            checked = Checked(error=str(exc))
            return _html(new_run_page(draft, choices(studio.root), checked, studio.csrf, limit), 422)
        studio.queue.submit(draft.name, ["train", *args])
        return RedirectResponse(f"/runs/{draft.name}", status_code=303)


def _validation_metric(run: RunFolder) -> str:
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8")) or {}
        return str((config.get("train") or {}).get("metric") or "loss")
    except (OSError, yaml.YAMLError):
        return "loss"


def _filtered(rows: list[RunRow], query: dict[str, str]) -> list[RunRow]:
    text = query.get("q", "").lower().strip()
    if text:
        rows = [r for r in rows if any(text in v.lower() for v in (r.name, r.task, r.model, r.method))]
    if query.get("status"):
        rows = [r for r in rows if r.status == query["status"]]
    sort = query.get("sort", "")
    if sort == "name":
        rows = sorted(rows, key=lambda r: r.name)
    elif sort in ("tuned", "gain"):
        rows = sorted(rows, key=lambda r: (getattr(r, sort) is None, -(getattr(r, sort) or 0.0)))
    return rows


async def _tail(studio: Studio, run: RunFolder, name: str) -> AsyncIterator[str]:
    """Every line of metrics.jsonl as an event, then each new one as it is written; `reset` when a resume
    cut the file back; `end` (with the status) once the run is not running and nothing is queued for it."""
    position = 0
    yield "retry: 2000\n\n"
    while True:
        size = run.metrics.stat().st_size if run.metrics.is_file() else 0
        if size < position:
            position = 0
            yield "event: reset\ndata: {}\n\n"
        if size > position:
            with run.metrics.open("rb") as handle:
                handle.seek(position)
                chunk = handle.read(size - position)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            position += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                if line.strip():
                    yield f"data: {line}\n\n"
        running = holder_alive(run.root / LOCK) or bool(
            studio.queue.jobs(states=("queued", "running"), run=name)
        )
        if not running and size == position:
            yield f"event: end\ndata: {studio.row(name).status}\n\n"
            return
        await asyncio.sleep(TAIL_SECONDS)
