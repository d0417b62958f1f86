"""Possible personal data: e-mail addresses, phone numbers and payment-card numbers (Luhn-valid, 13-19 digits)
in inputs and answers. A fine-tuned model can repeat what it was trained on, so these are counted and located
(the report masks them) for the user to remove or pseudonymise before training."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from tunesmith.data.checks.base import Check, Finding, Tally
from tunesmith.data.checks.registry import CHECKS
from tunesmith.data.checks.view import ExampleView

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}"  # international: +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555-123-4567
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w-])"  # national: 020 7946 0958
)
_DIGITS = re.compile(r"\D")
_HINT = re.compile(r"[0-9@]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find(text: str) -> dict[str, list[str]]:
    """Each kind's matches in `text`."""
    found: dict[str, list[str]] = {}
    if "@" in text and (emails := EMAIL.findall(text)):
        found["e-mail addresses"] = emails
    cards = [m for m in CARD.findall(text) if luhn_valid(_DIGITS.sub("", m))]
    if cards:
        found["card numbers"] = cards
    phones = [m for m in PHONE.findall(text) if 9 <= len(_DIGITS.sub("", m)) <= 15 and m not in cards]
    if phones:
        found["phone numbers"] = phones
    return found


def mask(value: str) -> str:
    """Enough to recognise it in the file, not enough to read it: j***@e***.com, +4*********58."""
    if "@" in value:
        user, _, domain = value.partition("@")
        host, _, top = domain.rpartition(".")
        return f"{user[:1]}***@{host[:1]}***.{top}"
    digits = _DIGITS.sub("", value)
    return f"{value[:2]}{'*' * max(len(digits) - 4, 0)}{digits[-2:]}"


@CHECKS.register("personal_data")
class PersonalData(Check):
    kinds = ("personal_data",)

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.matches: Counter[str] = Counter()
        self.examples = Tally(cfg.examples_shown)

    def add(self, split: str, view: ExampleView) -> None:
        text = view.input if view.target_is_label else f"{view.input}\n{view.target or ''}"
        if not _HINT.search(text):
            return
        for kind, matches in find(text).items():
            self.matches[kind] += len(matches)
            self.examples.add(kind, f"{view.where}: {mask(matches[0])}")

    def findings(self) -> list[Finding]:
        return [
            Finding(
                "warning",
                "personal_data",
                f"{self.matches[kind]} possible {kind} in {n} examples; a tuned model can repeat them: remove "
                "or pseudonymise them (or add the kind to check.ignore if they are not personal)",
                self.examples.where[kind],
                n,
            )
            for kind, n in self.examples.counts.items()
        ]

    def stats(self) -> dict[str, Any]:
        return {
            kind: {"matches": self.matches[kind], "examples": n} for kind, n in self.examples.counts.items()
        }
