"""The README's screenshots of `tunesmith studio`: two small runs of the demo data trained, the studio
started over them, each page opened in headless Chromium (Debian's chromium and chromium-driver) and saved
as docs/studio-PAGE.png (runs, run, compare, try, serve, new). The New run page is shown after its data check of an upload with duplicated rows.

    python scripts/studio_screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(root: Path, data: Path, name: str, *extra: str) -> None:
    command = [sys.executable, "-m", "tunesmith", "train", "-c", str(ROOT / "configs/demo.yaml")]
    command += ["--out", str(root / name), "evaluation.forgetting=false", *extra]
    command += [f"data.{s}={data / f'{s}.csv'}" for s in ("train", "validation", "test")]
    subprocess.run(command, check=True, capture_output=True)


def slice_demo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split, n in (("train", 400), ("validation", 80), ("test", 120)):
        lines = (ROOT / "data/debian-sections" / f"{split}.csv").read_text(encoding="utf-8").splitlines()
        (folder / f"{split}.csv").write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return folder


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-shots-") as tmp:
        root = Path(tmp) / "runs"
        data = slice_demo(root / "data")
        train(root, data, "sections-lora", "train.epochs=2")
        train(root, data, "sections-rank4", "train.epochs=2", "method.rank=4", "method.alpha=8")
        log = Path(tmp) / "studio.log"
        studio = subprocess.Popen(
            [sys.executable, "-m", "tunesmith", "studio", str(root), "--port", "0"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            while not (found := re.search(r"http://[\d.]+:\d+/", log.read_text())):
                time.sleep(0.2)
            url = found.group(0)
            options = webdriver.ChromeOptions()
            for flag in ("--headless=new", "--no-sandbox", "--window-size=1280,1000"):
                options.add_argument(flag)
            options.binary_location = shutil.which("chromium") or "chromium"
            driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
            try:
                pages = {
                    "runs": "",
                    "run": "runs/sections-lora",
                    "compare": "compare?run=sections-lora&run=sections-rank4",
                }
                for name, path in pages.items():
                    driver.get(url + path)
                    time.sleep(1.5)
                    driver.save_screenshot(str(args.out / f"studio-{name}.png"))
                driver.get(url + "runs/sections-lora/try")
                texts = ["Manual pages for the network tools", "Python bindings for the PNG image library"]
                driver.find_element(By.ID, "inputs").send_keys("\n".join(texts))
                driver.find_element(By.CSS_SELECTOR, "main form button").click()
                while not driver.find_elements(By.CSS_SELECTOR, "td.answer"):
                    time.sleep(0.5)
                driver.save_screenshot(str(args.out / "studio-try.png"))
                driver.get(url + "runs/sections-lora/serve")
                time.sleep(1)
                driver.save_screenshot(str(args.out / "studio-serve.png"))
                driver.get(url + "new")
                driver.find_element(By.NAME, "name").send_keys("sections-new")
                driver.find_element(By.NAME, "train_file").send_keys("data/train.csv")
                driver.find_element(By.NAME, "test_file").send_keys("data/test.csv")
                driver.find_element(By.CSS_SELECTOR, "form.new-run button").click()
                deadline = time.time() + 300  # the check, then the estimates (each method measured apart)
                while "Data check" not in driver.page_source and time.time() < deadline:
                    time.sleep(1)
                driver.save_screenshot(str(args.out / "studio-new.png"))
            finally:
                driver.quit()
        finally:
            studio.terminate()
            studio.wait(timeout=30)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
