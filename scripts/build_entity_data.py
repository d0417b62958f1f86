"""Build the token-classification demo set: programming languages, file formats and network protocols named
in Debian package descriptions, marked by a rule.

Source: Debian 12 (bookworm) main package lists and English description translations, written by each
package's maintainers (DFSG-free); read from ../shared/data/debian-packages.jsonl.gz.

    data/debian-entities/train.jsonl, validation.jsonl, test.jsonl
        {text, entities: [{start, end, label}]}: the first paragraph of a package's description, and each
        mention of a name in NAMES (case as listed, whole words only) as LANG, FORMAT or PROTO.

The rule is a list, not a person: it marks "Python" in "Python bindings" and in "a Python-like language" alike,
and misses names it does not list. A sample of 30 test texts was read by hand (README of the data). A third
of the texts name nothing, so the model also learns when to mark nothing. Each split its own packages.

    python scripts/build_entity_data.py [--source PATH] [--seed 29]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

from build_generative_data import first_paragraph, usable

NAMES = {
    "LANG": (
        "Python", "Perl", "Ruby", "Java", "JavaScript", "PHP", "Rust", "Haskell", "OCaml", "Lua", "Tcl",
        "Scheme", "Lisp", "Common Lisp", "Fortran", "Erlang", "Elixir", "Scala", "Kotlin", "C++", "Golang",
        "TypeScript", "Vala", "Prolog", "Smalltalk", "Pascal", "Ada", "COBOL", "Julia", "Emacs Lisp",
    ),
    "FORMAT": (
        "PDF", "PNG", "JPEG", "JPG", "GIF", "SVG", "TIFF", "XML", "JSON", "YAML", "CSV", "HTML", "MP3", "Ogg",
        "FLAC", "WAV", "ZIP", "EPUB", "PostScript", "Markdown", "TOML", "WebP", "MIDI", "DjVu", "OpenDocument",
        "BMP", "MPEG", "ISO 9660", "LaTeX",
    ),
    "PROTO": (
        "HTTP", "HTTPS", "FTP", "SSH", "SMTP", "IMAP", "POP3", "DNS", "DHCP", "LDAP", "XMPP", "IRC", "SNMP",
        "NFS", "TLS", "SSL", "MQTT", "BitTorrent", "WebDAV", "SFTP", "RTP", "SIP", "NTP", "TFTP", "Kerberos",
        "WebSocket", "SOAP", "IPv6", "IPv4", "TCP", "UDP",
    ),
}  # fmt: skip
SIZES = {"train": 1500, "validation": 300, "test": 600}
WITHOUT_SHARE = 1 / 3
"""Share of each split's texts that name nothing."""
OUT = Path(__file__).resolve().parents[1] / "data" / "debian-entities"


def pattern() -> re.Pattern[str]:
    """Every name, longest first (so "Common Lisp" wins over "Lisp"), not inside a longer word nor part of a
    Perl-style module name (`Net::DNS`, `HTTP::Message`: a module's name, not a mention)."""
    names = sorted((n for ns in NAMES.values() for n in ns), key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![\w+#.:-])(?:{alternatives})(?![\w+#]|\.\w|::)")


def mark(text: str, found: re.Pattern[str]) -> list[dict]:
    kind_of = {n: k for k, ns in NAMES.items() for n in ns}
    return [{"start": m.start(), "end": m.end(), "label": kind_of[m.group(0)]} for m in found.finditer(text)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, default=Path("../shared/data/debian-packages.jsonl.gz"))
    parser.add_argument("--seed", type=int, default=29)
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rows = [r for r in rows if usable(r)]
    found = pattern()
    texts = list(dict.fromkeys(first_paragraph(r["description"]) for r in rows))
    marked = [(t, mark(t, found)) for t in texts]
    named = [m for m in marked if m[1]]
    unnamed = [m for m in marked if not m[1]]
    rng = random.Random(args.seed)
    rng.shuffle(named)
    rng.shuffle(unnamed)
    OUT.mkdir(parents=True, exist_ok=True)
    for split, size in SIZES.items():
        without = round(size * WITHOUT_SHARE)
        chosen = [named.pop() for _ in range(size - without)] + [unnamed.pop() for _ in range(without)]
        rng.shuffle(chosen)
        with (OUT / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for text, entities in chosen:
                handle.write(json.dumps({"text": text, "entities": entities}, ensure_ascii=False) + "\n")
    counts = {k: 0 for k in NAMES}
    for _, entities in named:
        for e in entities:
            counts[e["label"]] += 1
    print(
        f"{len(named)} texts name something, {len(unnamed)} nothing; "
        + ", ".join(f"{s} {n}" for s, n in SIZES.items())
    )


if __name__ == "__main__":
    main()
