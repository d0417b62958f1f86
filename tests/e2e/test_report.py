"""`tunesmith report`: a self-contained HTML page about a real run, opened in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.browser import AXE, axe_violations, chromium, console_problems, needs_chromium
from tests.e2e.test_cli import tunesmith


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    from tests.conftest import demo_files

    tmp = tmp_path_factory.mktemp("report")
    data = demo_files(tmp, train=120, validation=30, test=60)
    run = tmp / "run"
    proc = tunesmith(
        "train",
        "--model",
        "minilm",
        "--data",
        data["train"],
        "--validation",
        data["validation"],
        "--test",
        data["test"],
        "--out",
        run,
        "model.max_length=48",
        "train.epochs=2",
        "train.batch_size=16",
        "train.learning_rate=0.003",
        "train.log_every_steps=1",
    )
    assert proc.returncode == 0, proc.stderr
    return run


def test_report_is_one_self_contained_page_with_every_section(classifier_run):
    proc = tunesmith("report", classifier_run)
    assert proc.returncode == 0, proc.stderr
    page = (classifier_run / "report.html").read_text()
    for heading in (
        "At a glance",
        "Test set: base vs tuned",
        "Training",
        "Per class (tuned)",
        "Confusion matrix",
        "Forgetting",
        "Resources",
        "Data check",
        "Config",
    ):
        assert f"<h2>{heading}" in page, heading
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 2  # curves, confusion
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page  # nothing fetched
    assert "95% interval" in page and "mean cosine similarity to the base" in page


@needs_chromium
def test_report_renders_in_chromium_without_console_errors(classifier_run, tmp_path):
    page = tmp_path / "report.html"
    assert tunesmith("report", classifier_run, "--out", page).returncode == 0
    driver = chromium(tmp_path / "profile")
    try:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])"
        )
        assert len(images) == 2
        for complete, width, height, alt in images:
            assert complete and width > 300 and height > 200, alt  # the PNG decoded and has a real size
        assert driver.execute_script("return document.querySelectorAll('table').length") >= 5
        assert console_problems(driver) == []
        if AXE.is_file():  # make browser installs it where npm is
            assert axe_violations(driver) == []
        driver.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 20_000
    finally:
        driver.quit()
