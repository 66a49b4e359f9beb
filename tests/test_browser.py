"""The SAG explorer in a real browser: JupyterLab headless, Debian's Chromium driven by
Playwright. Runs lesson 03, clicks a patch of the explorer's grid and moves its K slider, and
checks from screenshots that the view changes. Skipped when chromium or playwright is absent
(`.ci/run` installs both; never `playwright install`: the network is closed).

Screenshots are written to $BAGCLIP_BROWSER_SHOTS when set (else a temporary folder).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def lab_server(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "03_sag.ipynb", work / "03_sag.ipynb")
    port, token = _free_port(), "bagclip-test"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               TQDM_DISABLE="1", HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jrt"), MPLBACKEND="module://matplotlib_inline.backend_inline")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                             "--ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
                             f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False",
                             "--LabApp.news_url=", "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("jupyter lab did not start in 60 s")
        yield url, token, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _image_src(page) -> str | None:
    img = page.locator(".bag-sag-explorer .jp-OutputArea-output img").first
    return img.get_attribute("src") if img.count() else None


def _wait_for_new_view(page, old: str | None, timeout_s: float = 90) -> str:
    end = time.time() + timeout_s
    while time.time() < end:
        src = _image_src(page)
        if src and src != old:
            page.wait_for_timeout(300)  # let the image settle
            return src
        page.wait_for_timeout(250)
    raise AssertionError("the explorer's view did not change")


def test_sag_explorer_in_chromium(lab_server):
    from playwright.sync_api import sync_playwright

    url, token, tmp = lab_server
    shots = Path(os.environ.get("BAGCLIP_BROWSER_SHOTS", tmp / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp / "chromium-profile"), executable_path=CHROMIUM,
                                                    headless=True, args=FLAGS, viewport={"width": 1500, "height": 1000})
        try:
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}/lab/tree/03_sag.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                   " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
            page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.ready; }")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")  # Run > Run All Cells
            page.wait_for_selector(".bag-sag-explorer", timeout=150_000)
            try:
                first = _wait_for_new_view(page, None, 120)
            except AssertionError:
                page.screenshot(path=str(shots / "failure.png"), full_page=True)
                (shots / "failure.html").write_text(page.locator(".bag-sag-explorer").inner_html())
                raise
            explorer = page.locator(".bag-sag-explorer")
            explorer.scroll_into_view_if_needed()
            explorer.screenshot(path=str(shots / "0_default.png"))

            page.locator(".bag-sag-explorer .bag-cell-0").click()  # a real click on the patch grid
            second = _wait_for_new_view(page, first)
            explorer.screenshot(path=str(shots / "1_clicked_patch.png"))

            handle = page.locator(".bag-sag-explorer .widget-hslider .noUi-handle").nth(1)  # the K slider
            handle.focus()
            page.keyboard.press("ArrowRight")  # K: one option up (10 -> 15 in quick mode)
            third = _wait_for_new_view(page, second)
            explorer.screenshot(path=str(shots / "2_larger_k.png"))
            readouts = page.locator(".bag-sag-explorer .widget-readout").all_inner_texts()

            track = page.locator(".bag-sag-explorer .widget-hslider .noUi-base").first  # the patch slider
            box = track.bounding_box()
            page.mouse.click(box["x"] + 0.4 * box["width"], box["y"] + box["height"] / 2)
            _wait_for_new_view(page, third)
            readouts_after = page.locator(".bag-sag-explorer .widget-readout").all_inner_texts()
            explorer.screenshot(path=str(shots / "3_slider_patch.png"))
            page.screenshot(path=str(shots / "page.png"))
        finally:
            ctx.close()

    from PIL import Image
    import numpy as np

    imgs = [np.asarray(Image.open(shots / f"{n}.png").convert("RGB"), dtype=np.int16)
            for n in ("0_default", "1_clicked_patch", "2_larger_k", "3_slider_patch")]
    for a, b in zip(imgs, imgs[1:]):
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        diff = np.abs(a[:h, :w] - b[:h, :w]).max(-1) > 30
        assert diff.mean() > 0.002, "two screenshots of the explorer look the same"
    assert readouts and readouts[0] == "0" and readouts[1] not in ("10", "")  # patch 0 clicked, K moved on
    assert readouts_after[0] not in ("0", "")  # the patch slider moved by a mouse click on its track
