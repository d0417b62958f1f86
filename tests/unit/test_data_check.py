"""`tunesmith check`, in process: one broken file per error kind (exit 2, the exact line), every error of a
file in one pass, and the warnings counted on constructed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.cli import main


def check(capsys, *args: object) -> tuple[int, str]:
    """Run `tunesmith check ARGS`; its exit code and everything it printed."""
    code = 0
    try:
        main(["check", *map(str, args)])
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def report(capsys, *args: object) -> dict:
    code, out = check(capsys, *args, "--json")
    data = json.loads(out)
    assert code == (0 if data["ok"] else 2)
    return data


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def jsonl(folder: Path, name: str, rows: list) -> Path:
    return write(folder, name, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + messages}


GOOD = "text,label\nthe first example text,a\nanother example text,b\n"

CLASSIFICATION_ERRORS = [
    ("d.csv", GOOD.encode() + "caf\xe9 au lait,a\n".encode("latin-1"), "d.csv line 4: not valid UTF-8"),
    (
        "d.csv",
        GOOD + '"never closed,a\nmore text,b\n',
        "d.csv line 4: a quoted field opened on this line is never closed",
    ),
    ("d.csv", GOOD + "too,many,fields\n", "d.csv line 4: 3 fields, but the header has 2"),
    (
        "d.csv",
        "body,label\nsome text,a\n",
        'd.csv: missing column "text" (columns found: body, label); to read other columns, add the override '
        "task.text_column=body",
    ),
    ("d.csv", GOOD + '"   ",a\n', 'd.csv line 4: empty text in "text"'),
    ("d.csv", GOOD + "some more text,\n", "d.csv line 4: empty label"),
    ("d.csv", "text,label\n", "d.csv: no usable rows"),
    ("d.csv", "text,label\none text,a\ntwo texts,a\n", 'd.csv: every example has the label "a"'),
    (
        "d.jsonl",
        '{"text": "fine text", "label": "a"}\n{"text": "oops", "label": }\n',
        "d.jsonl line 2: not valid JSON",
    ),
    (
        "d.jsonl",
        '{"text": "fine text", "label": "a"}\n["a list"]\n',
        "d.jsonl line 2: expected a JSON object, got list",
    ),
    ("d.jsonl", '{"text": 42, "label": "a"}\n', 'd.jsonl line 1: text in "text" is not a string (got int)'),
    (
        "d.jsonl",
        '{"text": "fine text", "label": true}\n',
        "d.jsonl line 1: label must be a string or an integer",
    ),
    ("d.txt", "anything", "d.txt: unknown file type '.txt'"),
]


@pytest.mark.parametrize(("name", "content", "message"), CLASSIFICATION_ERRORS)
def test_each_classification_error_exits_2_with_its_line(
    capsys, tmp_path, tiny_bert_dir, name, content, message
):
    path = write(tmp_path, name, content)
    code, out = check(capsys, path, "--model", tiny_bert_dir)
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out


def test_utf16_file_is_named_as_such(capsys, tmp_path, tiny_bert_dir):
    path = write(tmp_path, "d.csv", GOOD.encode("utf-16"))
    code, out = check(capsys, path, "--model", tiny_bert_dir)
    assert code == 2
    assert "d.csv line 1: not valid UTF-8" in out and "UTF-16" in out


def test_a_validation_label_unknown_to_train_is_an_error(capsys, tmp_path, tiny_bert_dir):
    train = write(tmp_path, "train.csv", GOOD)
    val = write(tmp_path, "val.csv", "text,label\nsome text here,a\nother text here,zebra\n")
    data = report(capsys, train, "--validation", val, "--model", tiny_bert_dir)
    (error,) = data["errors"]
    assert error["kind"] == "labels" and error["where"] == ["val.csv line 3: zebra"]
    assert "val.csv: 1 examples have labels the training data never has (zebra)" in error["message"]


def test_every_bad_record_is_listed_in_one_pass(capsys, tmp_path, tiny_bert_dir):
    rows = ["text,label"] + [f"example number {i},{'ab'[i % 2]}" for i in range(30)]
    rows[3] = "missing its label,"
    rows[10] = "a,b,c"
    rows[20] = '"  ",a'
    path = write(tmp_path, "d.csv", "\n".join(rows) + "\n")
    data = report(capsys, path, "--model", tiny_bert_dir)
    assert data["error_total"] == 3
    assert [e["where"] for e in data["errors"]] == [["d.csv line 4"], ["d.csv line 11"], ["d.csv line 21"]]
    assert data["files"]["train"]["examples"] == 27


CHAT_ERRORS = [
    ({"messages": "hello"}, 'd.jsonl line 2: "messages" must be a list of messages, got str'),
    (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]},
        "d.jsonl line 2: message 2: unknown role 'bot'",
    ),
    ({"messages": [{"role": "user", "content": "hi there"}]}, "d.jsonl line 2: no assistant turn"),
    (
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]},
        "d.jsonl line 2: message 2 content is empty",
    ),
    ({"conversation": []}, "d.jsonl line 2: missing field"),
    (  # SmolLM2's template adds a default system prompt once a user turn exists: answers cannot be located
        {"messages": [{"role": "assistant", "content": "Hello, how can I help?"}]},
        "d.jsonl line 2: the chat template does not render a conversation as a prefix of its continuation",
    ),
]


@pytest.mark.parametrize(("row", "message"), CHAT_ERRORS)
def test_each_chat_structure_error_exits_2_with_its_line(capsys, tmp_path, smollm_dir, row, message):
    path = jsonl(tmp_path, "d.jsonl", [chat("what is apt?", "a package manager"), row])
    code, out = check(capsys, path, "--task", "chat", "--model", smollm_dir)
    assert code == 2, out
    assert message in out


def test_an_answer_cut_off_by_max_length_is_an_error(capsys, tmp_path, smollm_dir):
    long_question = "please explain " + "the package manager " * 40
    rows = [chat("what is apt?", "a package manager"), chat(long_question, "it installs packages")]
    path = jsonl(tmp_path, "d.jsonl", rows)
    code, out = check(capsys, path, "--task", "chat", "--model", smollm_dir, "model.max_length=64")
    assert code == 2
    assert "d.jsonl line 2: the answer is cut off" in out
    code, out = check(capsys, path, "--task", "chat", "--model", smollm_dir, "model.max_length=256")
    assert code == 0, out


def test_truncate_history_drops_the_oldest_turns_of_a_long_chat(capsys, tmp_path, smollm_dir):
    long_first = "please explain " + "the package manager " * 40
    messages = [
        {"role": "system", "content": "You answer questions about Debian."},
        {"role": "user", "content": long_first},
        {"role": "assistant", "content": "it installs packages"},
        {"role": "user", "content": "and apt?"},
        {"role": "assistant", "content": "apt is its front end"},
    ]
    path = jsonl(tmp_path, "d.jsonl", [chat("what is apt?", "a package manager"), {"messages": messages}])
    args = (path, "--task", "chat", "--model", smollm_dir, "model.max_length=64")
    code, out = check(capsys, *args)
    assert code == 2 and "d.jsonl line 2: the answer is cut off" in out  # off by default: an error
    code, out = check(capsys, *args, "task.truncate_history=true")
    assert code == 0, out
    assert "1 of 2 examples (50.0%) are longer than model.max_length and lose their oldest turns" in out


def test_a_long_document_is_shortened_not_refused_and_check_and_training_agree(capsys, tmp_path, smollm_dir):
    from transformers import AutoTokenizer

    from tunesmith.data.chat_encoding import IGNORE
    from tunesmith.sections import ModelConfig
    from tunesmith.tasks.summarization import Summarization, SummarizationParams

    long_document = "The library parses and writes configuration files in many formats. " * 40
    rows = [
        {"document": f"Tool {i} compresses files quickly and well.", "summary": f"compressor {i}"}
        for i in range(8)
    ]
    rows.append({"document": long_document, "summary": "configuration file library"})
    path = jsonl(tmp_path, "d.jsonl", rows)
    code, out = check(capsys, path, "--task", "summarization", "--model", smollm_dir, "model.max_length=128")
    assert code == 0, out
    assert (
        "train: 1 of 9 examples (11.1%) are longer than model.max_length and lose the end of their document"
        in out
    )

    task = Summarization(SummarizationParams(), ModelConfig(name="smollm", max_length=128))
    task.use_tokenizer(AutoTokenizer.from_pretrained(smollm_dir))
    examples = task.read(path, "auto")
    counts = task.measure(examples)
    assert [c.truncated for c in counts] == [False] * 8 + [True] and counts[-1].tokens > 128
    feature = task.encode(examples, task.tokenizer)[-1]
    assert len(feature["input_ids"]) == 128  # shortened to fit exactly, from the document's end
    answer = task.tokenizer.decode([t for t in feature["labels"] if t != IGNORE])
    assert answer.startswith("configuration file library")  # the summary is whole
    prompt = task.tokenizer.decode(feature["prompt_ids"])
    assert SummarizationParams().instruction in prompt and long_document[:60] in prompt


def test_a_long_context_is_shortened_and_the_question_kept(tmp_path, smollm_dir):
    from transformers import AutoTokenizer

    from tunesmith.sections import ModelConfig
    from tunesmith.tasks.qa import GenerativeQA, QAParams

    context = "Debian packages are built from source packages by the buildd network. " * 40
    row = {"context": context, "question": "What builds Debian packages?", "answer": "the buildd network"}
    path = jsonl(tmp_path, "q.jsonl", [row])
    task = GenerativeQA(QAParams(), ModelConfig(name="smollm", max_length=96))
    task.use_tokenizer(AutoTokenizer.from_pretrained(smollm_dir))
    feature = task.encode(task.read(path, "auto"), task.tokenizer)[0]
    assert len(feature["input_ids"]) <= 96
    assert "Question: What builds Debian packages?" in task.tokenizer.decode(feature["prompt_ids"])


# --- warnings ------------------------------------------------------------------------------------------


def texts(n: int, stem: str = "sample") -> list[str]:
    """Distinct, ordinary-looking texts."""
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
        "mike",
    ]
    return [f"{stem} {words[i % 13]} {words[(i // 13) % 13]} report {i}" for i in range(n)]


def csv_file(folder: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    import csv

    path = folder / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def warnings_of(data: dict, kind: str) -> list[dict]:
    return [w for w in data["warnings"] if w["kind"] == kind]


def test_duplicates_leakage_and_conflicts_are_counted(capsys, tmp_path, tiny_bert_dir):
    base = [(t, "ab"[i % 2]) for i, t in enumerate(texts(40))]
    train_rows = [
        *base,
        base[0],
        base[1],
        base[2],  # 3 exact repeats
        (base[3][0].upper() + "!", base[3][1]),
        ("  " + base[4][0].replace(" ", "  "), base[4][1]),  # 2 near repeats
        (base[5][0], "b" if base[5][1] == "a" else "a"),  # same text, other label
    ]
    val_rows = [base[10], base[11], base[12], (base[13][0] + "?", base[13][1])] + [
        (t, "a") for t in texts(6, "fresh")
    ]
    test_rows = [(t, "b") for t in texts(6, "fresh")[:2]] + [(t, "a") for t in texts(5, "unseen")]
    train = csv_file(tmp_path, "train.csv", train_rows)
    val = csv_file(tmp_path, "val.csv", val_rows)
    test = csv_file(tmp_path, "test.csv", test_rows)
    data = report(capsys, train, "--validation", val, "--test", test, "--model", tiny_bert_dir)

    (dupes,) = warnings_of(data, "duplicates")
    assert dupes["count"] == 5 and "5 of 46 examples" in dupes["message"]
    assert "3 exactly, 2 after normalising" in dupes["message"]
    assert dupes["where"][0] == "train.csv line 42 repeats line 2"
    assert data["stats"]["duplicates"]["train"] == {
        "examples": 46,
        "exact_duplicates": 3,
        "near_duplicates": 5,
    }

    leaks = {w["message"].split(":")[0]: w for w in warnings_of(data, "leakage")}
    assert (
        "4 of 10 inputs (40.0%) also occur in train (3 exactly, 1 after normalising)"
        in leaks["validation"]["message"]
    )
    assert leaks["validation"]["where"][0] == "val.csv line 2 = train.csv line 12"
    assert "test: 2 of 7 inputs" in leaks["test"]["message"] and "validation" in leaks["test"]["message"]

    (conflict,) = warnings_of(data, "conflicts")
    assert conflict["count"] == 2 and "1 texts occur with different labels" in conflict["message"]
    assert conflict["where"] == ["train.csv lines 7, 47: a / b"]


def test_imbalance_and_rare_classes(capsys, tmp_path, tiny_bert_dir):
    rows = [(t, "big") for t in texts(60)] + [(t, "small") for t in texts(4, "rare")]
    data = report(capsys, csv_file(tmp_path, "d.csv", rows), "--model", tiny_bert_dir)
    messages = [w["message"] for w in warnings_of(data, "imbalance")]
    assert any('"big" has 15.0x the examples of the smallest "small" (60 vs 4)' in m for m in messages)
    assert any('1 of 2 classes have fewer than 10 examples ("small" 4)' in m for m in messages)
    assert data["stats"]["labels"]["train"]["small"] == {"count": 4, "share": "6.2%"}


def test_truncation_in_model_tokens(capsys, tmp_path, tiny_bert_dir):
    rows = [(t, "ab"[i % 2]) for i, t in enumerate(texts(30))] + [("word " * 100, "a"), ("word " * 50, "b")]
    path = csv_file(tmp_path, "d.csv", rows)
    data = report(capsys, path, "--model", tiny_bert_dir, "model.max_length=32")
    (cut,) = warnings_of(data, "truncation")
    assert cut["count"] == 2 and "2 of 32 examples" in cut["message"]
    assert cut["where"] == ["d.csv line 32: 102 tokens", "d.csv line 33: 52 tokens"]  # [CLS] ... [SEP]
    lengths = data["stats"]["lengths"]["train"]
    assert lengths["max"] == 102 and lengths["truncated"] == 2


def test_max_length_left_empty_is_chosen_from_the_training_lengths(
    capsys, tmp_path, minilm_dir, tiny_bert_dir
):
    # 100 texts of 150 to 300 words: their 99th percentile is over 128 and under MiniLM's 512 positions
    rows = [(" ".join(["word"] * (150 + i + i % 7 * 10)), "ab"[i % 2]) for i in range(100)]
    path = csv_file(tmp_path, "d.csv", rows)
    data = report(capsys, path, "--model", minilm_dir)
    p99 = data["stats"]["lengths"]["train"]["p99"]
    assert 128 < p99 < 512
    assert (data["max_length"], data["max_length_from_data"]) == (p99, True)
    assert not warnings_of(data, "truncation")  # measured against what the model takes: nothing is cut there
    # never over the model's own positions (the tiny BERT has 128), never under 128 for short texts
    assert report(capsys, path, "--model", tiny_bert_dir)["max_length"] == 128
    short = csv_file(tmp_path, "short.csv", [(t, "ab"[i % 2]) for i, t in enumerate(texts(30))])
    assert report(capsys, short, "--model", minilm_dir)["max_length"] == 128
    assert report(capsys, path, "--model", minilm_dir, "model.max_length=64")["max_length_from_data"] is False


def test_short_and_empty_ish_examples(capsys, tmp_path, tiny_bert_dir):
    rows = [(t, "ab"[i % 2]) for i, t in enumerate(texts(30))] + [("ok", "a"), ("!!!", "b"), ("?? ..", "a")]
    data = report(capsys, csv_file(tmp_path, "d.csv", rows), "--model", tiny_bert_dir)
    found = {w["message"].split(" are ")[1].split(":")[0]: w["count"] for w in warnings_of(data, "short")}
    assert found == {"inputs of fewer than 2 words": 1, "inputs with no word": 2}


def test_personal_data_is_counted_and_masked(capsys, tmp_path, tiny_bert_dir):
    rows = [(t, "ab"[i % 2]) for i, t in enumerate(texts(20))] + [
        ("write to jane.doe@example.com or bob@mail.example.org", "a"),
        ("card 4111 1111 1111 1111 was charged twice", "b"),  # a Luhn-valid test number
        ("order 4111 1111 1111 1112 is late", "a"),  # not Luhn-valid: not a card
        ("call me on +44 20 7946 0958 tomorrow", "b"),
        ("call 555-123-4567 after release 1.2.3 of 2024-01-15", "a"),  # a version and a date are not phones
    ]
    data = report(capsys, csv_file(tmp_path, "d.csv", rows), "--model", tiny_bert_dir)
    assert data["stats"]["personal_data"] == {
        "e-mail addresses": {"matches": 2, "examples": 1},
        "card numbers": {"matches": 1, "examples": 1},
        "phone numbers": {"matches": 2, "examples": 2},
    }
    shown = " ".join(w for f in warnings_of(data, "personal_data") for w in f["where"])
    assert "j***@e***.com" in shown and "jane" not in shown and "7946" not in shown


def test_narrow_templates_and_answer_openings(capsys, tmp_path, smollm_dir):
    rows = [
        chat(f"Refund request for order {i}: the {w} arrived broken", f"Sure! I can help with order {i}.")
        for i, w in enumerate(["lamp", "chair", "table", "sofa", "desk"] * 6)
    ]
    data = report(capsys, jsonl(tmp_path, "d.jsonl", rows), "--task", "chat", "--model", smollm_dir)
    messages = [w["message"] for w in warnings_of(data, "narrow")]
    assert any('100.0% of the inputs open with "refund request for"' in m for m in messages)
    assert any('100.0% of the answers open with "sure i can"' in m for m in messages)
    assert any("word diversity" in m for m in messages)
    assert data["stats"]["narrowness"]["answer_openings"][0] == {
        "opening": "sure i can",
        "count": 30,
        "share": 1.0,
    }


def test_a_shared_system_prompt_is_not_a_template(capsys, tmp_path, smollm_dir):
    from tests.conftest import chat_rows

    path = write(tmp_path, "d.jsonl", "\n".join(chat_rows("train")) + "\n")
    data = report(capsys, path, "--task", "chat", "--model", smollm_dir)
    assert data["ok"] and data["files"]["train"]["examples"] == 320
    openings = data["stats"]["narrowness"]["input_openings"]
    assert openings[0]["opening"] == "what does the"  # the demo's question templates; not "you are the"


def test_ignore_silences_a_warning_kind_and_strict_fails_on_warnings(capsys, tmp_path, tiny_bert_dir):
    rows = [(t, "ab"[i % 2]) for i, t in enumerate(texts(20))] + [("mail me at a.b@example.com", "a")]
    path = csv_file(tmp_path, "d.csv", rows)
    assert check(capsys, path, "--model", tiny_bert_dir)[0] == 0
    code, out = check(capsys, path, "--model", tiny_bert_dir, "--strict")
    assert code == 1 and "personal_data" in out
    data = report(capsys, path, "--model", tiny_bert_dir, "--strict", "check.ignore=[personal_data]")
    assert data["warnings"] == [] and data["ignored"] == ["personal_data"]


def test_errors_cannot_be_ignored(capsys, tmp_path, tiny_bert_dir):
    path = csv_file(tmp_path, "d.csv", [("some text", "a"), ("more text", "b")])
    code, out = check(capsys, path, "--model", tiny_bert_dir, "check.ignore=[encoding]")
    assert code == 2 and "'encoding' is an error kind; errors cannot be ignored" in out
    code, out = check(capsys, path, "--model", tiny_bert_dir, "check.ignore=[typo]")
    assert code == 2 and "unknown warning kind 'typo'" in out and "leakage" in out


def test_an_opening_that_gives_the_label_away_is_a_shortcut(capsys, tmp_path, tiny_bert_dir):
    rows = [(f"Refund request for {t}", "billing") for t in texts(12)]
    rows += [
        (t, label) for t, label in zip(texts(30, "other"), ["billing", "tech", "sales"] * 10, strict=True)
    ]
    data = report(capsys, csv_file(tmp_path, "d.csv", rows), "--model", tiny_bert_dir)
    (shortcut,) = warnings_of(data, "shortcut")
    assert shortcut["count"] == 12
    assert (
        'train: 12 examples open with "refund request for" and 100% of them are "billing"'
        in shortcut["message"]
    )
    assert "against 52% of all" in shortcut["message"]


def test_the_config_names_the_files_and_overrides_follow(capsys, tmp_path, tiny_bert_dir):
    train = csv_file(tmp_path, "train.csv", [(t, "ab"[i % 2]) for i, t in enumerate(texts(20))])
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {{name: {tiny_bert_dir}}}\ndata: {{train: {train}}}\n")
    data = report(capsys, "-c", config, "model.max_length=4")
    assert data["max_length"] == 4 and data["files"]["train"]["examples"] == 20
    assert data["stats"]["lengths"]["train"]["truncated"] == 20


def test_summaries_and_questions_are_checked_like_the_rest(capsys, smollm_dir, tiny_bert_dir):
    from tests.conftest import ROOT

    summaries = ROOT / "data" / "debian-summaries" / "train.jsonl"
    data = report(capsys, summaries, "--task", "summarization", "--model", smollm_dir)
    (dupes,) = warnings_of(data, "duplicates")  # the shipped file repeats 5 document/summary pairs
    assert dupes["count"] == 5 and "5 exactly" in dupes["message"]
    assert data["stats"]["lengths"]["train"]["max"] > data["stats"]["lengths"]["train"]["p50"] > 20

    questions = ROOT / "data" / "debian-qa" / "train.jsonl"
    data = report(capsys, questions, "--task", "qa", "--model", tiny_bert_dir)
    assert data["ok"] and data["files"]["train"]["examples"] == 645
    assert data["stats"]["lengths"]["train"]["truncated"] == 0  # long contexts are read in windows
    assert any('open with "which section is"' in w["message"] for w in warnings_of(data, "narrow"))


def test_preference_pairs_where_the_longer_answer_always_wins_or_only_punctuation_differs(
    capsys, tmp_path, smollm_dir
):
    packages = ["apt", "dpkg", "htop", "curl", "wget", "rsync", "tmux", "vim", "git", "make", "gzip", "tar"]
    rows = [
        {
            "prompt": f"What does {name} do, question {i}?",
            "chosen": f"{name} is a Debian tool; it does its one job well and is documented in its manual.",
            "rejected": f"No idea about {name}.",
        }
        for i, name in enumerate(packages * 2)
    ]
    rows[0]["rejected"] = rows[0]["chosen"].upper().replace(";", ",")  # same words: only case and a comma
    data = report(capsys, jsonl(tmp_path, "pairs.jsonl", rows), "--task", "preference", "--model", smollm_dir)
    (length,) = warnings_of(data, "length_shortcut")
    assert (
        length["count"] == 23
        and "in 23 pairs of 24 (95.8%) the chosen answer is the longer one" in (length["message"])
    )
    (same,) = warnings_of(data, "near_identical_pairs")
    assert same["count"] == 1 and same["where"] == ["pairs.jsonl line 1"]

    for row in rows[1::2]:  # half the pairs now prefer the short answer: no length lesson to learn
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    data = report(capsys, jsonl(tmp_path, "pairs.jsonl", rows), "--task", "preference", "--model", smollm_dir)
    assert not warnings_of(data, "length_shortcut")


def test_retrieval_pairs_that_teach_nothing_or_leak_are_reported(capsys, tmp_path, tiny_bert_dir):
    rows = [
        {"anchor": f"question {i} about item {i}", "positive": f"the answer for item {i} is here"}
        for i in range(30)
    ]
    rows += [{"anchor": "Same Text here", "positive": "same text, here"}]  # its own positive
    rows += [
        {"anchor": f"how do I pay {i}", "positive": "Payments: see the billing page."} for i in range(12)
    ]
    train = jsonl(tmp_path, "train.jsonl", rows)
    test = jsonl(
        tmp_path, "test.jsonl", [{"anchor": "new question", "positive": "the answer for item 3 is here"}]
    )
    data = report(capsys, train, "--task", "embedding", "--model", tiny_bert_dir, "--test", test)
    (same,) = warnings_of(data, "anchor_is_positive")
    assert same["count"] == 1 and same["where"] == ["train.jsonl line 31"]
    (shared,) = warnings_of(data, "shared_positive")
    assert shared["count"] == 12 and "Payments" in shared["message"]
    (leaked,) = warnings_of(data, "positive_leakage")
    assert leaked["count"] == 1 and leaked["where"] == ["test.jsonl line 1"]
