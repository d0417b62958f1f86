"""Build the demo datasets for the text-writing tasks, from the Debian package descriptions.

Source: Debian 12 (bookworm) main package lists and English description translations, written by each
package's maintainers (DFSG-free); read from ../shared/data/debian-packages.jsonl.gz. Three sets, disjoint
packages across splits:

    data/debian-chat/       OpenAI chat JSONL: a support assistant with a house style (answers "<name>: <what
                            it is>. Install it with `sudo apt install <name>`."), some chats two turns long
                            (the second asks for the archive section)
    data/debian-summaries/  JSONL {document, summary}: the package description -> its one-line synopsis
    data/debian-qa/         SQuAD-style JSONL {id, context, question, answers: {text: [...], answer_start: [...]}}:
                            questions whose answer is a span of the description (what it is, its section, the
                            language it is written in), for extractive and generative QA
    data/debian-preference/ TRL preference JSONL {prompt, chosen, rejected}: the chat set's question, its house-
                            style answer chosen; rejected, either the maintainer's rambling first paragraph
                            (40%: it ignores "one short sentence") or the house-style answer with another
                            package's synopsis (60%: a wrong fact), so that length alone does not tell them apart

    python scripts/build_generative_data.py [--source PATH]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

SIZES = {"train": 320, "validation": 40, "test": 40}
PREFERENCE_SIZES = {"train": 200, "validation": 24, "test": 40}
"""Fewer pairs: each costs two sequences and a reference pass, and the demo trains on a CPU."""
RAMBLING_SHARE = 0.4
MAX_DOCUMENT = 480
SYSTEM = "You are the Debian package helper. Answer in one short sentence."
WRITTEN_IN = re.compile(r"\b(?:written|implemented|developed) in (C\+\+|C#|[A-Z][A-Za-z]+)")


def first_paragraph(description: str) -> str:
    text = description.split("\n")[0].strip()
    if len(text) <= MAX_DOCUMENT:
        return text
    cut = text[:MAX_DOCUMENT]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > 100 else cut.rsplit(" ", 1)[0]


def usable(row: dict) -> bool:
    desc = row["description"]
    return len(first_paragraph(desc)) >= 80 and 8 <= len(row["synopsis"]) <= 90 and "\t" not in desc


def synopsis_sentence(synopsis: str) -> str:
    return synopsis.strip().rstrip(".")


def question_for(name: str, rng: random.Random) -> str:
    return rng.choice(
        [
            f"What is {name}?",
            f"What does the {name} package do?",
            f"Tell me about {name}.",
            f"What's {name} for?",
        ]
    )


def house_answer(name: str, synopsis: str) -> str:
    return f"{name}: {synopsis_sentence(synopsis)}. Install it with `sudo apt install {name}`."


def chat_example(row: dict, rng: random.Random) -> dict:
    name = row["package"]
    question = question_for(name, rng)
    answer = house_answer(name, row["synopsis"])
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    if rng.random() < 0.3:
        messages += [
            {"role": "user", "content": "Which section of the archive is it in?"},
            {"role": "assistant", "content": f"{name} is in the {row['section']} section."},
        ]
    return {"messages": messages}


def preference_example(row: dict, rng: random.Random, split_rows: list[dict]) -> dict:
    name = row["package"]
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question_for(name, rng)}]
    if rng.random() < RAMBLING_SHARE:
        rejected = first_paragraph(row["description"])
    else:
        other = rng.choice([r for r in split_rows if r["synopsis"] != row["synopsis"]])
        rejected = house_answer(name, other["synopsis"])
    return {"prompt": prompt, "chosen": house_answer(name, row["synopsis"]), "rejected": rejected}


def summary_example(row: dict) -> dict:
    return {"document": first_paragraph(row["description"]), "summary": row["synopsis"].strip()}


def qa_examples(row: dict) -> list[dict]:
    name = row["package"]
    context = f"{name} ({row['section']}): {row['synopsis'].strip()}. {first_paragraph(row['description'])}"
    out = []

    def add(question: str, answer: str, start: int) -> None:
        assert context[start : start + len(answer)] == answer
        out.append(
            {
                "id": f"{name}-{len(out)}",
                "context": context,
                "question": question,
                "answers": {"text": [answer], "answer_start": [start]},
            }
        )

    synopsis = row["synopsis"].strip()
    add(f"What is {name}?", synopsis, context.index(synopsis))
    add(f"Which section is {name} in?", row["section"], len(name) + 2)
    match = WRITTEN_IN.search(context)
    if match:
        add(f"Which language is {name} written in?", match.group(1), match.start(1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        rows = [r for r in map(json.loads, handle) if usable(r)]
    rng = random.Random(args.seed)
    rng.shuffle(rows)
    builders = {
        "debian-chat": lambda r, _: [chat_example(r, rng)],
        "debian-summaries": lambda r, _: [summary_example(r)],
        "debian-qa": lambda r, _: qa_examples(r),
        "debian-preference": lambda r, split_rows: [preference_example(r, rng, split_rows)],
    }
    start = 0
    for folder, build in builders.items():
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        for split, size in (PREFERENCE_SIZES if folder == "debian-preference" else SIZES).items():
            chosen = rows[start : start + size]
            start += size
            with (args.out / folder / f"{split}.jsonl").open("w", encoding="utf-8") as out:
                count = 0
                for row in chosen:
                    for example in build(row, chosen):
                        out.write(json.dumps(example, ensure_ascii=False) + "\n")
                        count += 1
            print(f"{folder}/{split}.jsonl: {count} examples")


if __name__ == "__main__":
    main()
