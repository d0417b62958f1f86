"""Build the retrieval demo set from the Debian package descriptions: find a package from what it does.

Source: Debian 12 (bookworm) main package lists and English description translations, written by each
package's maintainers (DFSG-free); read from ../shared/data/debian-packages.jsonl.gz.

    data/debian-retrieval/train.jsonl, validation.jsonl, test.jsonl
        {anchor, positive}: a package's one-line synopsis (the query a user types: "convert an addressbook
        to VCARD file format") and the first paragraph of its long description (the document that answers
        it); each split its own packages
    data/debian-retrieval/corpus.jsonl.gz
        {id, text}: the first paragraph of every usable package (the package name as id), the test split's
        documents among them: the corpus `tunesmith eval --corpus` searches

A package listed twice keeps its first entry. Packages whose synopsis another package shares ("transitional package", "documentation for ...") are left
out: a query with several right answers that the data does not list would count a right answer as a miss.

    python scripts/build_retrieval_data.py [--source PATH] [--seed 13]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections import Counter
from pathlib import Path

from build_generative_data import first_paragraph, usable

SIZES = {"train": 1200, "validation": 200, "test": 400}
OUT = Path(__file__).resolve().parents[1] / "data" / "debian-retrieval"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [r for r in rows if usable(r)]
    rows = list({r["package"]: r for r in reversed(rows)}.values())[
        ::-1
    ]  # a package listed twice: its first entry
    synopses = Counter(r["synopsis"].strip().lower() for r in rows)
    documents = Counter(first_paragraph(r["description"]) for r in rows)
    rows = [
        r
        for r in rows
        if synopses[r["synopsis"].strip().lower()] == 1 and documents[first_paragraph(r["description"])] == 1
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(OUT / "corpus.jsonl.gz", "wb", mtime=0) as raw:
        for r in rows:
            raw.write(
                (json.dumps({"id": r["package"], "text": first_paragraph(r["description"])}) + "\n").encode()
            )
    picked = random.Random(args.seed).sample(rows, sum(SIZES.values()))
    start = 0
    for split, size in SIZES.items():
        with (OUT / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for r in picked[start : start + size]:
                pair = {"anchor": r["synopsis"].strip(), "positive": first_paragraph(r["description"])}
                handle.write(json.dumps(pair, ensure_ascii=False) + "\n")
        start += size
    print(f"{len(rows)} documents in the corpus; " + ", ".join(f"{s} {n}" for s, n in SIZES.items()))


if __name__ == "__main__":
    main()
