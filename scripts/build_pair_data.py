"""Build the text-pair demo set: does this description belong to this synopsis? (classification of pairs)

Source: Debian 12 (bookworm) main package lists and English description translations, written by each
package's maintainers (DFSG-free); read from ../shared/data/debian-packages.jsonl.gz.

    data/debian-pairs/train.csv, validation.csv, test.csv   (columns: synopsis, description, label)

Each package gives two pairs: its synopsis with the first paragraph of its own description (`match`), and its
synopsis with the first paragraph of another package of the same archive section (`other`: the hard case, a
description on a neighbouring subject). Only packages whose first paragraph no other package shares (a source
package's binaries often share one, which would make a pair both `match` and `other`); each split its own
packages, its negatives drawn among them, so no description is in two splits.

    python scripts/build_pair_data.py [--source PATH] [--seed 23]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from build_generative_data import first_paragraph, usable

PACKAGES = {"train": 800, "validation": 200, "test": 400}
"""Packages per split; each gives a matching and a non-matching pair."""
OUT = Path(__file__).resolve().parents[1] / "data" / "debian-pairs"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [r for r in rows if usable(r)]
    rows = list({r["package"]: r for r in reversed(rows)}.values())[::-1]
    shared = Counter(first_paragraph(r["description"]) for r in rows)
    synopses = Counter(r["synopsis"].strip().lower() for r in rows)
    rows = [
        r
        for r in rows
        if shared[first_paragraph(r["description"])] == 1 and synopses[r["synopsis"].strip().lower()] == 1
    ]
    rng = random.Random(args.seed)
    picked = rng.sample(rows, sum(PACKAGES.values()))
    OUT.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in PACKAGES.items():
        packages = picked[start : start + size]
        start += size
        by_section = defaultdict(list)
        for r in packages:
            by_section[r["section"]].append(r)
        pairs = []
        for r in packages:
            others = [o for o in by_section[r["section"]] if o is not r] or [
                o for o in packages if o is not r
            ]
            other = rng.choice(others)
            synopsis = r["synopsis"].strip()
            pairs.append((synopsis, first_paragraph(r["description"]), "match"))
            pairs.append((synopsis, first_paragraph(other["description"]), "other"))
        rng.shuffle(pairs)
        with (OUT / f"{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["synopsis", "description", "label"])
            writer.writerows(pairs)
    print(
        f"{len(rows)} packages with their own first paragraph; "
        + ", ".join(f"{s} {2 * n} pairs" for s, n in PACKAGES.items())
    )


if __name__ == "__main__":
    main()
