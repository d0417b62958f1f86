"""Build the multi-label demo set from the Debian package descriptions: which Debtags a program has.

Source: Debian 12 (bookworm) main package lists (their Debtags, the `Tag` field, assigned by Debian
contributors) and English description translations, written by each package's maintainers (DFSG-free); read
from ../shared/data/debian-packages.jsonl.gz.

    data/debian-tags/train.jsonl, validation.jsonl, test.jsonl
        {text, labels}: a program's synopsis and the first paragraph of its long description; its tags from
        the facets that say what a program is and does (interface, use, works-with, network, admin,
        security, field), kept where at least MIN_PROGRAMS programs have the tag. Only packages tagged
        role::program with at least one kept tag; each split its own packages.

Debtags are incomplete (a tag not given is not always wrong), which is what real multi-label data is like.

    python scripts/build_multilabel_data.py [--source PATH] [--seed 17]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections import Counter
from pathlib import Path

from build_generative_data import first_paragraph, usable

FACETS = ("interface::", "use::", "works-with::", "network::", "admin::", "security::", "field::")
MIN_PROGRAMS = 100
SAME_AS = {"interface::x11": "interface::graphical"}
"""Tags that Debtags gives together every time among these programs (the data check's inseparable_labels):
the first is left out, the second kept."""
SIZES = {"train": 2000, "validation": 400, "test": 800}
OUT = Path(__file__).resolve().parents[1] / "data" / "debian-tags"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [r for r in rows if "role::program" in r["tags"] and usable(r)]
    rows = list({r["package"]: r for r in reversed(rows)}.values())[::-1]  # listed twice: its first entry
    counts = Counter(t for r in rows for t in r["tags"] if t.startswith(FACETS))
    kept = sorted(t for t, n in counts.items() if n >= MIN_PROGRAMS and t not in SAME_AS)
    examples = []
    for r in rows:
        labels = [t for t in r["tags"] if t in kept]
        if labels:
            text = f"{r['synopsis'].strip().rstrip('.')}. {first_paragraph(r['description'])}"
            examples.append({"text": text, "labels": sorted(labels)})
    texts = Counter(e["text"] for e in examples)
    examples = [e for e in examples if texts[e["text"]] == 1]  # one text, two packages: left out
    picked = random.Random(args.seed).sample(examples, sum(SIZES.values()))
    OUT.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in SIZES.items():
        with (OUT / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for example in picked[start : start + size]:
                handle.write(json.dumps(example, ensure_ascii=False) + "\n")
        start += size
    per_example = sum(len(e["labels"]) for e in picked) / len(picked)
    print(
        f"{len(kept)} labels, {len(examples)} tagged programs, {per_example:.2f} labels an example; "
        + ", ".join(f"{s} {n}" for s, n in SIZES.items())
    )


if __name__ == "__main__":
    main()
