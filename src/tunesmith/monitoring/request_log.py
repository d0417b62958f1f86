"""The request log: every served request (input, output, model version, latency, confidence) and every
correction sent back, in a database that `monitor` and `retune` read.

SQLite in WAL mode by default (RUN/requests.db: the run folder owns its traffic), any SQLAlchemy URL
(PostgreSQL) when configured. A response never waits for the database: rows go on a queue and one writer
thread inserts them in batches, one transaction per batch. On shutdown the queue is drained, so a clean stop
loses nothing; WAL keeps what was committed through a crash.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)

metadata = MetaData()
requests_table = Table(
    "requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created", Float, nullable=False, index=True),
    Column("run", String(1024), nullable=False, index=True),
    Column("model", String(256), nullable=False),
    Column("version", String(32), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text, nullable=False),
    Column("confidence", Float),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
)
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("created", Float, nullable=False),
    Column("label", String(256)),
    Column("answer", Text),
    Column("note", Text),
    Column("rating", String(8)),
)
ADDED_COLUMNS = {"feedback": {"rating": "VARCHAR(8)"}}
"""Columns added since a log could first be written: an older log gains them when opened (ALTER TABLE ADD)."""

_STOP = object()


def default_url(run_root: Path) -> str:
    return f"sqlite:///{Path(run_root).resolve() / 'requests.db'}"


class RequestLog:
    def __init__(self, url: str, batch_rows: int = 512):
        self.url = url
        self.engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        _add_new_columns(self.engine)
        self.batch_rows = batch_rows
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer = threading.Thread(target=self._write_forever, name="request-log-writer", daemon=True)
        self._writer.start()
        self.written = 0
        self.failed = 0

    # --- writing ---
    def record(self, row: dict[str, Any]) -> None:
        """Queue one request row (see `requests_table`); returns at once."""
        self._queue.put(row)

    def pending(self) -> int:
        return self._queue.qsize()

    def flush(self) -> None:
        """Wait until every queued row is in the database."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._writer.join()
        self.engine.dispose()

    def _write_forever(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            rows = [first]
            stop = False
            while len(rows) < self.batch_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                rows.append(item)
            self._insert(rows)
            for _ in range(len(rows) + stop):
                self._queue.task_done()
            if stop:
                return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        for attempt in range(5):  # a locked or briefly unreachable database: retry before giving up
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(requests_table), rows)
                self.written += len(rows)
                return
            except Exception as exc:  # noqa: BLE001 - the writer must outlive any database error
                if attempt == 4:
                    self.failed += len(rows)
                    print(f"tunesmith: request log: {len(rows)} rows not written: {exc}", file=sys.stderr)
                    return
                time.sleep(0.2 * 2**attempt)

    # --- feedback ---
    def add_feedback(
        self,
        request_id: str,
        label: str | None,
        answer: str | None,
        note: str | None,
        rating: str | None = None,
    ) -> int:
        """One piece of feedback on a logged request: the right label, a better answer, or a rating ("up" or
        "down")."""
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(feedback_table).values(
                    request_id=request_id,
                    created=time.time(),
                    label=label,
                    answer=answer,
                    note=note,
                    rating=rating,
                )
            )
            return int(result.inserted_primary_key[0])

    # --- reading ---
    def find(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(requests_table).where(requests_table.c.id == request_id)).first()
        return _decoded(row._mapping) if row is not None else None

    def requests(
        self, run: Path, since: float | None = None, endpoint: str | None = None
    ) -> list[dict[str, Any]]:
        """Logged requests of one run (all its versions), oldest first."""
        query = select(requests_table).where(requests_table.c.run == str(Path(run).resolve()))
        if since is not None:
            query = query.where(requests_table.c.created >= since)
        if endpoint is not None:
            query = query.where(requests_table.c.endpoint == endpoint)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(requests_table.c.created)).all()
        return [_decoded(r._mapping) for r in rows]

    def corrections(self, run: Path) -> list[dict[str, Any]]:
        """Each request of `run` that got feedback, with its latest correction (`correct_label` or
        `correct_answer`) and its latest `rating`, each None when it got none: a later one of a kind wins."""
        joined = requests_table.join(feedback_table, feedback_table.c.request_id == requests_table.c.id)
        query = (
            select(
                requests_table,
                feedback_table.c.label.label("correct_label"),
                feedback_table.c.answer.label("correct_answer"),
                feedback_table.c.rating.label("rating"),
                feedback_table.c.created.label("corrected"),
            )
            .select_from(joined)
            .where(requests_table.c.run == str(Path(run).resolve()))
            .order_by(feedback_table.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            row = _decoded(r._mapping)
            kept = latest.setdefault(row["id"], row)
            if row["correct_label"] is not None or row["correct_answer"] is not None:
                kept.update(correct_label=row["correct_label"], correct_answer=row["correct_answer"])
            if row["rating"] is not None:
                kept["rating"] = row["rating"]
            kept["corrected"] = row["corrected"]
        return list(latest.values())


def _add_new_columns(engine: Any) -> None:
    """ADDED_COLUMNS missing from a log an older tunesmith wrote."""
    inspector = inspect(engine)
    for table, columns in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        for name, sql_type in columns.items():
            if name not in present:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _decoded(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for key in ("input", "output"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def encode_row(
    *,
    request_id: str,
    run: Path,
    model: str,
    version: str,
    endpoint: str,
    input: Any,
    output: Any,
    latency_ms: float,
    confidence: float | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> dict[str, Any]:
    return {
        "id": request_id,
        "created": time.time(),
        "run": str(Path(run).resolve()),
        "model": model,
        "version": version,
        "endpoint": endpoint,
        "input": json.dumps(input, ensure_ascii=False),
        "output": json.dumps(output, ensure_ascii=False),
        "confidence": confidence,
        "latency_ms": latency_ms,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (monitor) never block the writer, and vice versa
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe with WAL
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_logs(urls: Iterable[str]) -> dict[str, RequestLog]:
    return {url: RequestLog(url) for url in dict.fromkeys(urls)}
