"""Headless Chromium for the UI test: Debian's ``chromium`` package, installed here when missing, driven by
Playwright (whose own browser download does not work on machines without open internet)."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def ensure_chromium() -> str:
    """The Chromium executable; ``apt-get install chromium`` first when it is missing (root, or sudo -n)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    if shutil.which(apt[0]) is None or shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install Debian's chromium", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update"], ["install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(apt + step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(apt + step)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                        f"{done.stderr[-2000:]}", pytrace=False)
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} does not exist", pytrace=False)
    return CHROMIUM


@contextmanager
def chromium_page(user_data_dir: str, viewport: tuple[int, int] = (1300, 1600)) -> Iterator["object"]:
    """A Playwright page in a fresh headless Chromium profile; closed (with the browser) afterwards."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir, executable_path=executable, headless=True, args=ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


def form_field(page, label: str):
    """The Prefect UI form's property whose label reads ``label`` (e.g. ``output``, ``rules (Optional)``)."""
    return page.locator(
        "xpath=//span[contains(@class,'schema-form-property__label') and normalize-space(text())="
        f"'{label}']/ancestor::div[contains(concat(' ',@class,' '),' schema-form-property ')][1]")


def choose(page, field, option: str) -> None:
    """Pick ``option`` in a Prefect UI select (a block picker, an enum): opened from the keyboard, which
    works headless where a synthetic click on the control does not open it."""
    control = field.locator(".p-select-button__control").first
    control.focus()
    control.press("ArrowDown")
    page.get_by_role("option", name=option, exact=True).or_(page.get_by_text(option, exact=True)).first.click()
