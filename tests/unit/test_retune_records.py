"""What retune writes reads back as the same examples, and a logged request plus its correction becomes a
training example the task accepts (chat, classification and preference)."""

from __future__ import annotations

import json

from tunesmith.config import build_config
from tunesmith.tasks import build_task


def task_for(name: str, **params):
    config = build_config({"task": {"name": name, **params}})
    return build_task(config.task, config.model)


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_chat_records_round_trip_and_a_correction_becomes_the_answer(tmp_path):
    task = task_for("chat", **task_for("chat").record_params)
    logged = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is apt?"}]
    assert task.traffic_text(logged) == "What is apt?"
    corrected = task.corrected_record(logged, None, "The Debian package manager.")
    original = task.read(write(tmp_path / "a.jsonl", [corrected]), "auto")[0]
    again = task.read(write(tmp_path / "b.jsonl", [task.record(original)]), "auto")[0]
    assert original.messages == again.messages
    assert task.references(original) == ["The Debian package manager."]
    assert task.view(original).input == "What is apt?"


def test_classification_records_keep_the_configured_columns(tmp_path):
    task = task_for("classification", text_column="body", label_column="queue")
    record = task.corrected_record("card charged twice", "billing", None)
    assert record == {"body": "card charged twice", "queue": "billing"}
    example = task.read(write(tmp_path / "c.jsonl", [record]), "auto")[0]
    assert (example.text, example.label) == ("card charged twice", "billing")
    assert task.record(example) == record


def test_preference_records_round_trip_and_a_correction_is_preferred_over_the_logged_answer(tmp_path):
    logged = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is apt?"}]
    task = task_for("preference", **task_for("preference").record_params)
    assert task.traffic_text(logged) == "What is apt?"
    pair = task.corrected_record(logged, None, "The Debian package manager.", "A fruit.")
    assert pair == {"prompt": logged, "chosen": "The Debian package manager.", "rejected": "A fruit."}
    assert task.corrected_record(logged, None, "A fruit.", " A fruit.") is None  # no better answer: no pair
    original = task.read(write(tmp_path / "p.jsonl", [pair]), "auto")[0]
    assert task.record(original) == pair and task.view(original).input == task.traffic_text(logged)

    kto = task_for("preference", loss="kto", **task.record_params)
    good = kto.corrected_record(logged, None, "The Debian package manager.", "A fruit.")
    assert good == {"prompt": logged, "completion": "The Debian package manager.", "label": True}
    again = kto.read(write(tmp_path / "k.jsonl", [good]), "auto")[0]
    assert again.desirable is True and kto.record(again) == good


def test_feedback_on_chat_answers_becomes_dpo_pairs_and_kto_labels():
    from tunesmith.monitoring.feedback_records import preference_records, split_records

    prompt = [{"role": "user", "content": "What is htop?"}]

    def logged(i, answer=None, rating=None, endpoint="chat"):
        return {
            "id": f"r{i}",
            "endpoint": endpoint,
            "input": prompt,
            "output": "A text editor.",
            "correct_answer": answer,
            "correct_label": None,
            "rating": rating,
        }

    feedback = [
        logged(0, answer="An interactive process viewer."),
        logged(1, rating="up"),
        logged(2, rating="down"),
        logged(3, answer="A text editor."),  # the correction repeats the answer: no preference in it
        logged(4, answer="x", endpoint="classify"),
    ]
    assert preference_records(feedback, "dpo") == [
        ("r0", {"prompt": prompt, "chosen": "An interactive process viewer.", "rejected": "A text editor."})
    ]
    kto = [(request, r["completion"], r["label"]) for request, r in preference_records(feedback, "kto")]
    assert kto == [
        ("r0", "An interactive process viewer.", True),
        ("r0", "A text editor.", False),
        ("r1", "A text editor.", True),
        ("r2", "A text editor.", False),
    ]
    many = [(f"r{i}", {"n": i}) for i in range(40)]
    train, test = split_records(many, 0.2, "dpo")
    again, _ = split_records(many + [("r99", {"n": 99})], 0.2, "dpo")  # a grown log: held-out stays held out
    assert 0 < len(test) < 20 and not [r for r in test if r in again]
