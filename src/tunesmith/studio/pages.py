"""The studio's pages, rendered on the server from what the run folders recorded (every text escaped), with
the stylesheet and the one script served from the package."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from tunesmith.reporting.html import STYLE, Cell, table
from tunesmith.studio.jobs import Job
from tunesmith.studio.run_index import STATUSES, RunRow

SORTS = {"name": "name", "tuned": "best metric", "gain": "gain over base"}
"""Sort orders besides the default, newest first."""


def page(title: str, body: str, active: str = "") -> str:
    links = [("/", "Runs", "runs"), ("/new", "New run", "new"), ("/compare", "Compare", "compare")]
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if key == active else ""}>{text}</a>'
        for href, text, key in links
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/studio.css"><script src="/static/studio.js" defer></script>'
        f'</head><body><header><nav aria-label="studio"><span class="brand">tunesmith studio</span>{nav}</nav>'
        f"</header><main>\n{body}\n</main></body></html>\n"
    )


def run_href(name: str) -> str:
    return "/runs/" + quote(name)


def _number(value: float | None, sign: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def runs_page(rows: Sequence[RunRow], queue: Sequence[Job], query: dict[str, str], total: int) -> str:
    """Every run: task, model, method, status, its headline metric and gain over base; filter, sort, tick
    runs to compare."""
    body = [f'<h1>Runs</h1><p class="muted">{len(rows)} of {total} runs</p>', _filters(query)]
    if queue:
        items = "".join(f"<li>job {j.id}: {escape(j.run)} ({escape(j.state)})</li>" for j in queue)
        body.append(f"<h2>Queue</h2><ul>{items}</ul>")
    head = [
        "compare",
        "run",
        "task",
        "model",
        "method",
        "status",
        "metric",
        "base",
        "tuned",
        "gain",
        "95% interval",
    ]
    lines = []
    for r in rows:
        box = f'<input type="checkbox" name="run" value="{escape(r.name)}" aria-label="compare {escape(r.name)}">'
        interval = f"[{r.gain_low:+.3f}, {r.gain_high:+.3f}]" if r.gain_low is not None else ""
        cells = [
            box,
            f'<a href="{run_href(r.name)}">{escape(r.name)}</a>',
            escape(r.task),
            escape(r.model),
            escape(r.method),
            f'<span class="status-{r.status}">{r.status}</span>',
            escape(r.metric or ""),
            _number(r.base),
            _number(r.tuned),
            _number(r.gain, sign=True),
            interval,
        ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f'<th scope="col">{h}</th>' for h in head)
    grid = f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    body.append(
        f'<form id="compare-form" action="/compare" method="get">{grid}'
        '<button type="submit">Compare the ticked runs</button></form>'
    )
    return page("tunesmith studio: runs", "\n".join(body), active="runs")


def _filters(query: dict[str, str]) -> str:
    def options(values: Sequence[str], chosen: str, every: str) -> str:
        found = [f'<option value="">{every}</option>']
        for v, text in values:
            selected = " selected" if v == chosen else ""
            found.append(f'<option value="{escape(v)}"{selected}>{escape(text)}</option>')
        return "".join(found)

    statuses = options([(s, s) for s in STATUSES], query.get("status", ""), "any status")
    sorts = options(list(SORTS.items()), query.get("sort", ""), "newest")
    text = escape(query.get("q", ""))
    return (
        '<form class="filters" method="get" action="/">'
        f'<label>name, task, model or method<input type="search" name="q" value="{text}"></label>'
        f'<label>status<select name="status">{statuses}</select></label>'
        f'<label>sort by<select name="sort">{sorts}</select></label>'
        '<button type="submit">Show</button></form>'
    )


def run_page(row: RunRow, sections: str, job: Job | None, csrf: str, metric: str) -> str:
    """One run: live curves while it trains (server-sent events), then its report's sections; Cancel while it
    runs, Resume once it stopped with a checkpoint."""
    href = run_href(row.name)
    status = job.state if job is not None and job.state == "queued" else row.status
    actions = ""
    if status == "running":
        actions = _post(f"{href}/cancel", "Cancel", csrf)
    elif status == "finished":
        actions = f'<a href="{href}/try">Try it</a> <a href="{href}/serve">Serve and watch</a>'
    elif status in ("interrupted", "failed") and row.status == "interrupted":
        actions = _post(f"{href}/resume", "Resume", csrf)
    live = (
        f'<section class="live" data-events="{href}/events" data-metric="{escape(metric)}" '
        f'data-status="{status}"><h2>Training curves</h2><div class="charts">'
        '<figure><svg class="chart loss" role="img" aria-label="training loss by step"></svg>'
        "<figcaption>training loss by optimizer step</figcaption></figure>"
        f'<figure><svg class="chart metric" role="img" aria-label="validation {escape(metric)} by step"></svg>'
        f"<figcaption>validation {escape(metric)} by optimizer step</figcaption></figure></div>"
        '<p class="live-status muted" aria-live="polite"></p></section>'
    )
    head = (
        f"<h1>{escape(row.name)}</h1>"
        f"<p>{escape(row.task)} with {escape(row.method)} on {escape(row.model)}: "
        f'<strong class="status-{status}">{status}</strong> {actions}</p>'
    )
    return page(f"tunesmith studio: {row.name}", head + live + sections)


def _post(action: str, label: str, csrf: str) -> str:
    return (
        f'<form class="inline" method="post" action="{action}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">{label}</button></form>'
    )


def compare_page(body: str) -> str:
    return page("tunesmith studio: compare", body, active="compare")


def message_page(title: str, message: str, status: int) -> str:
    return page(
        f"tunesmith studio: {title}", f'<h1>{escape(title)}</h1><p class="error">{escape(message)}</p>'
    )


__all__ = ["Cell", "table", "page", "runs_page", "run_page", "compare_page", "message_page"]


def new_run_page(draft: Any, offered: dict[str, list[str]], checked: Any, csrf: str, limit_mb: int) -> str:
    """The form (name, task, model, method, a file per split picked or uploaded), then the data check's
    table and warnings, the estimates, and the Train button (enabled once the check passed)."""

    def select(name: str, values: list[str], chosen: str, label: str, blank: str = "") -> str:
        found = [f'<option value="">{escape(blank)}</option>'] if blank else []
        for v in values:
            found.append(
                f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>'
            )
        return f'<label>{label}<select name="{name}">{"".join(found)}</select></label>'

    fields = [
        f'<label>run name (a folder under the studio\'s)<input name="name" required value="{escape(draft.name)}"></label>',
        select("task", offered["task"], draft.task, "task"),
        select("model", offered["model"], draft.model, "model", blank="the task's default"),
        select("method", offered["method"], draft.method, "method"),
    ]
    for split in ("train", "validation", "test"):
        fields.append(
            f"<fieldset><legend>{split} data</legend>"
            + select(
                f"{split}_file", offered["file"], draft.files.get(split, ""), "a file in the folder", "none"
            )
            + f'<label>or upload one (up to {limit_mb} MB)<input type="file" name="{split}_upload"></label></fieldset>'
        )
    fields.append(
        '<label for="overrides">overrides, one per line, as <code>tunesmith train</code> takes them '
        "(train.epochs=2, method.rank=16)</label>"
        f'<textarea id="overrides" name="overrides" rows="3" cols="60">{escape(chr(10).join(draft.overrides))}</textarea>'
    )
    form = (
        '<form class="new-run" method="post" action="/new" enctype="multipart/form-data">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">{"".join(fields)}'
        '<button type="submit">Check the data</button></form>'
    )
    return page(
        "tunesmith studio: new run", "<h1>New run</h1>" + form + _checked(draft, checked, csrf), "new"
    )


def _checked(draft: Any, checked: Any, csrf: str) -> str:
    if checked is None:
        return '<p class="muted">The data check runs first; Train is enabled once it passes.</p>' + _train(
            draft, csrf, False
        )
    parts = ['<section class="check"><h2>Data check</h2>']
    if checked.error:
        parts.append(f'<p class="error" role="alert">{escape(checked.error)}</p>')
    report = checked.report
    if report is not None:
        rows = [[split, f["examples"], f["errors"], f["path"]] for split, f in report["files"].items()]
        parts.append(table(["split", "examples", "errors", "file"], rows))
        for finding in [*report["errors"], *report["warnings"]]:
            parts.append(_finding(finding))
        if not report["warnings"] and not report["errors"]:
            parts.append('<p class="good">no errors, no warnings</p>')
    if checked.estimates:
        rows = [
            [
                e.method,
                f"{e.trainable_parameters:,}",
                f"{e.peak_bytes / 2**20:,.0f} MiB",
                f"{e.epoch_seconds:.0f} s",
            ]
            for e in checked.estimates
        ]
        parts.append(
            '<h2>Estimate on this machine</h2><p class="muted">the chosen method, then those a run over its memory budget falls back to; each measured in a fresh process</p>'
            + table(["method", "trainable", "peak memory", "per epoch"], rows)
        )
    for name, why in checked.skipped.items():
        parts.append(f'<p class="muted">{escape(name)}: {escape(why)}</p>')
    parts.append("</section>")
    return "".join(parts) + _train(draft, csrf, checked.trainable)


def _finding(finding: dict[str, Any]) -> str:
    """An error (its message starts with the file and line) or a warning, with where it occurs."""
    error = finding["level"] == "error"
    css, role = ("error", ' role="alert"') if error else ("warning", "")
    where = finding["where"] if finding["count"] > 1 or not error else []
    places = "".join(f"<li>{escape(w)}</li>" for w in where)
    kind = "" if error else f"{escape(finding['kind'])}: "
    return f'<div class="{css}"{role}><p>{kind}{escape(finding["message"])}</p>{f"<ul>{places}</ul>" if places else ""}</div>'


def _train(draft: Any, csrf: str, enabled: bool) -> str:
    hidden = {
        "csrf": csrf,
        "name": draft.name,
        "task": draft.task,
        "model": draft.model,
        "method": draft.method,
    }
    hidden |= {f"{split}_file": path for split, path in draft.files.items()}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in hidden.items())
    inputs += "".join(f'<input type="hidden" name="override" value="{escape(o)}">' for o in draft.overrides)
    disabled = "" if enabled else " disabled"
    return f'<form method="post" action="/new/train">{inputs}<button type="submit" id="train"{disabled}>Train</button></form>'


def try_page(row: RunRow, text: str, answers: Sequence[tuple[str, str]], csrf: str, error: str = "") -> str:
    """A text box (one input per line, as `tunesmith predict` reads them) and what the run says for each,
    in `predict`'s own words."""
    href = run_href(row.name)
    form = (
        f'<form method="post" action="{href}/try"><input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<label for="inputs">one input per line (a text, a document to summarise, or TEXT, a tab, PAIR for pairs)</label>'
        f'<textarea id="inputs" name="inputs" rows="6" cols="90">{escape(text)}</textarea>'
        '<p><button type="submit">Try</button></p></form>'
    )
    parts = [f'<h1>Try {escape(row.name)}</h1><p><a href="{href}">back to the run</a></p>', form]
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    if answers:
        rows = "".join(
            f'<tr><td>{escape(i)}</td><td class="answer">{escape(a)}</td></tr>' for i, a in answers
        )
        parts.append(
            '<table class="answers"><thead><tr><th scope="col">input</th><th scope="col">answer</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    return page(f"tunesmith studio: try {row.name}", "".join(parts))


def chat_page(row: RunRow, messages: Sequence[dict[str, str]], csrf: str, error: str = "") -> str:
    """A conversation with a chat run, as `tunesmith chat` holds it: each message a user turn, the reply
    written by the run's model from the whole conversation in its chat template; Start over clears it."""
    href = run_href(row.name)
    turns = "".join(
        f'<li class="turn {escape(m["role"])}"><span class="role">{escape(m["role"])}</span> '
        f'<span class="content">{escape(m["content"])}</span></li>'
        for m in messages
    )
    said = f'<ol class="chat" aria-label="conversation">{turns}</ol>' if turns else ""
    started = bool(messages)
    system = "" if started else '<label>system message (optional)<input name="system" size="80"></label>'
    form = (
        f'<form method="post" action="{href}/try"><input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<input type="hidden" name="conversation" value="{escape(json.dumps(list(messages)))}">{system}'
        '<label for="message">your message</label>'
        '<textarea id="message" name="message" rows="3" cols="90" required></textarea>'
        '<p><button type="submit" name="action" value="send">Send</button> '
        '<button type="submit" name="action" value="reset" formnovalidate>Start over</button></p></form>'
    )
    parts = [f'<h1>Chat with {escape(row.name)}</h1><p><a href="{href}">back to the run</a></p>', said, form]
    if error:
        parts.append(f'<p class="error" role="alert">{escape(error)}</p>')
    return page(f"tunesmith studio: chat with {row.name}", "".join(parts))


def serve_page(row: RunRow, view: Any, jobs: Sequence[Job], csrf: str) -> str:
    """Which version serves and the changes so far, a rollback form, the drift status with a button that
    runs `tunesmith monitor`, the corrections users sent, and Retune."""
    href = run_href(row.name)
    parts = [f'<h1>Serve and watch {escape(row.name)}</h1><p><a href="{href}">back to the run</a></p>']
    if view.problem:
        parts.append(f'<p class="error" role="alert">{escape(view.problem)}</p>')
    serving = f"<p>serving <strong>{escape(view.current)}</strong> of {escape(', '.join(view.versions))}</p>"
    options = "".join(
        f'<option value="{escape(v)}"{" selected" if v == view.current else ""}>{escape(v)}</option>'
        for v in view.versions
    )
    rollback = (
        f'<form method="post" action="{href}/rollback"><input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<label>serve version <select name="version">{options}</select></label> '
        '<button type="submit">Serve it</button></form>'
    )
    history = [[h.get("version"), h.get("from"), h.get("reason"), _when(h.get("at"))] for h in view.history]
    parts += ["<h2>Versions</h2>", serving, rollback]
    if history:
        parts.append(table(["now serving", "was", "why", "when"], history[::-1]))
    parts.append("<h2>Drift</h2>")
    if view.drift is None:
        parts.append('<p class="muted">No drift check yet.</p>')
    else:
        status = view.drift.get("status", "?")
        parts.append(
            f'<p>last check: <strong class="drift-{escape(status)}">{escape(status)}</strong> on '
            f"{view.drift.get('requests', 0)} requests to {escape(str(view.drift.get('version')))}, {_when(view.drift.get('created'))}</p>"
        )
        parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in view.drift_lines) + "</ul>")
    parts.append(_post(f"{href}/monitor", "Check drift now", csrf))
    parts.append(f"<h2>Corrections ({view.corrections_total})</h2>")
    if view.corrections:
        rows = [
            [
                str(c.get("id", ""))[:12],
                _short(c.get("input")),
                _short(c.get("output")),
                _short(c.get("correct_label") or c.get("correct_answer")),
                c.get("rating") or "",
            ]
            for c in view.corrections
        ]
        parts.append(table(["request", "input", "served", "correction", "rating"], rows))
    else:
        parts.append('<p class="muted">No corrections sent to /v1/feedback yet.</p>')
    parts.append(_post(f"{href}/retune", "Retune from the corrections", csrf))
    if jobs:
        items = "".join(f"<li>{escape(' '.join(j.args[:1]))}: {escape(j.state)}</li>" for j in jobs[-5:])
        parts.append(f"<h2>Jobs</h2><ul>{items}</ul>")
    return page(f"tunesmith studio: serve {row.name}", "".join(parts))


def _short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(seconds: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(seconds))) if seconds else ""
