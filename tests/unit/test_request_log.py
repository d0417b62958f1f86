"""The request log on a real SQLite file: concurrent writers lose nothing, WAL is on, a reopened log keeps
every row, and the latest correction of a request wins."""

from __future__ import annotations

import sqlite3
import threading

from tunesmith.monitoring.request_log import RequestLog, default_url, encode_row


def row(run, i: int, endpoint: str = "classify") -> dict:
    return encode_row(
        request_id=f"req-{i}",
        run=run,
        model="tickets",
        version="v1",
        endpoint=endpoint,
        input=f"text {i} ünïcode",
        output={"label": "a"},
        latency_ms=1.0,
        confidence=0.5,
    )


def test_concurrent_writers_lose_nothing_and_a_reopened_log_keeps_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    log = RequestLog(default_url(run))
    threads = [
        threading.Thread(target=lambda t=t: [log.record(row(run, t * 1000 + i)) for i in range(250)])
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()  # drains the queue
    with sqlite3.connect(run / "requests.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone() == (2000, 2000)
    reopened = RequestLog(default_url(run))
    rows = reopened.requests(run)
    assert len(rows) == 2000 and rows[0]["input"].endswith("ünïcode")
    assert [r["created"] for r in rows] == sorted(r["created"] for r in rows)
    assert reopened.requests(tmp_path / "another-run") == []
    reopened.close()


def test_corrections_join_their_request_and_the_latest_wins(tmp_path):
    log = RequestLog(default_url(tmp_path))
    for i in range(3):
        log.record(row(tmp_path, i))
    log.flush()
    log.add_feedback("req-1", "b", None, "first try")
    log.add_feedback("req-1", "c", None, None)
    log.add_feedback("req-2", "a", None, None)
    found = {r["id"]: r["correct_label"] for r in log.corrections(tmp_path)}
    assert found == {"req-1": "c", "req-2": "a"}
    assert log.find("req-0")["output"] == {"label": "a"} and log.find("nope") is None
    log.close()


def test_a_rating_and_an_answer_for_one_request_are_both_kept_each_latest_of_its_kind(tmp_path):
    log = RequestLog(default_url(tmp_path))
    for i in range(3):
        log.record(row(tmp_path, i, endpoint="chat"))
    log.flush()
    log.add_feedback("req-0", None, "a better answer", None)
    log.add_feedback("req-0", None, None, None, rating="down")
    log.add_feedback("req-1", None, None, None, rating="down")
    log.add_feedback("req-1", None, None, None, rating="up")  # changed their mind
    found = {r["id"]: (r["correct_answer"], r["rating"]) for r in log.corrections(tmp_path)}
    assert found == {"req-0": ("a better answer", "down"), "req-1": (None, "up")}
    log.close()


def test_a_log_an_older_version_wrote_gains_the_rating_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "requests.db"
    with sqlite3.connect(path) as db:  # the feedback table as it was before ratings
        db.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL, created FLOAT "
            "NOT NULL, label VARCHAR(256), answer TEXT, note TEXT)"
        )
        db.execute("INSERT INTO feedback (request_id, created, label) VALUES ('req-0', 1.0, 'b')")
    log = RequestLog(default_url(tmp_path))
    log.record(row(tmp_path, 0))
    log.flush()
    log.add_feedback("req-0", None, None, None, rating="up")
    (found,) = log.corrections(tmp_path)
    assert (found["correct_label"], found["rating"]) == ("b", "up")
    log.close()
