"""Build the demo dataset shipped in data/debian-sections/ from the Debian package descriptions.

Source: Debian 12 (bookworm) main package lists and English description translations, written by each
package's maintainers (DFSG-free); read from ../shared/data/debian-packages.jsonl.gz. The task: route a
package to its archive section from its one-line synopsis, like routing a support ticket by its subject line.

    python scripts/build_demo_data.py [--source PATH] [--out data/debian-sections]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path

SECTIONS = ["admin", "devel", "doc", "libdevel", "libs", "net", "text", "utils"]
PER_CLASS = {"train": 200, "validation": 25, "test": 50}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--out", type=Path, default=Path("data/debian-sections"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    by_section: dict[str, list[str]] = defaultdict(list)
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["section"] in SECTIONS:
                by_section[row["section"]].append(row["synopsis"].strip())
    rng = random.Random(args.seed)
    splits: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for section in SECTIONS:
        texts = sorted(set(by_section[section]))
        rng.shuffle(texts)
        start = 0
        for split, count in PER_CLASS.items():
            splits[split] += [(t, section) for t in texts[start : start + count]]
            start += count
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        rng.shuffle(rows)
        with (args.out / f"{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
    main()
