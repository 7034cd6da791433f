"""`make lab` as the README says: JupyterLab starts (also as root), a chapter opens as a
notebook on the project's kernel, not marked modified (also once the kernel has reported
its language), and its first cells run.

The server is started headless through `make lab` on a free localhost port with a token,
driven with headless Chromium, and stopped by its PID. Skipped when Chromium or
chromedriver are missing.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import headless_chromium

pytestmark = pytest.mark.slow  # JupyterLab: starts a server and processes

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "00_introduction.py"
KERNEL = "landscape-book"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _browser():
    return headless_chromium(1280, 900)


def _wait(fn, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture()
def lab_server(tmp_path):
    """`make lab` on a free port; yields (base url, token, server pid); stops the server by PID."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    args = (f"--no-browser --port={port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={token} "
            "--ServerApp.open_browser=False --LabApp.news_url=None --LabApp.check_for_updates_class="
            "jupyterlab.NeverCheckForUpdate --LabApp.expose_app_in_browser=True")
    log = open(tmp_path / "lab.log", "w")
    make = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    pid = None
    try:
        # (make may first bring the venv up to date)
        status = _wait(lambda: _status(base, token) or make.poll() is not None, 240, "the Jupyter server")
        assert make.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
        assert status
        # the server's own PID, from its runtime file
        info = _wait(lambda: list((tmp_path / "runtime").glob("jpserver-*.json")), 20, "the server's runtime file")
        pid = json.loads(info[0].read_text())["pid"]
        yield base, token, pid
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)  # the session this test started (make and its children)
            make.wait(timeout=10)
        if pid is None and make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)
        log.close()


def _status(base: str, token: str):
    try:
        return _get(f"{base}/api/status?token={token}")
    except OSError:
        return None


def test_make_lab_opens_a_chapter_as_a_notebook_on_the_project_kernel(lab_server, tmp_path):
    base, token, pid = lab_server
    specs = _get(f"{base}/api/kernelspecs?token={token}")["kernelspecs"]
    assert KERNEL in specs, f"make lab did not register the kernel: {sorted(specs)}"
    browser = _browser()
    try:
        browser.get(f"{base}/lab/tree/{CHAPTER}?token={token}")
        # opened with the notebook view (jupytext), not the text editor
        _wait(lambda: browser.execute_script(
            "return document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length"), 60, "the notebook view")
        sessions = _wait(lambda: [s for s in _get(f"{base}/api/sessions?token={token}")
                                  if s.get("kernel") and s["path"].endswith(CHAPTER)], 60, "a kernel session")
        assert sessions[0]["kernel"]["name"] == KERNEL, sessions
        # the kernel has started and reported its info (JupyterLab then updates language_info)
        _wait(lambda: browser.execute_script(
            "var w = window.jupyterapp.shell.currentWidget;"
            "var k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            "return k && k.status === 'idle';"), 60, "the kernel to be idle")
        time.sleep(1)
        state = browser.execute_script(
            "var w = window.jupyterapp.shell.currentWidget;"
            "return w && w.context ? [w.context.model.dirty, w.context.model.metadata] : null")
        assert state is not None, "no notebook is the current widget"
        dirty, metadata = state
        assert metadata["kernelspec"]["name"] == KERNEL, metadata
        assert not dirty, f"the chapter opened marked as modified; its metadata: {metadata}"
        # the kernel reports the language_info the chapter stores (no Python version)
        assert "version" not in metadata.get("language_info", {}), metadata
        # run the first cells: the title, the parameters and the first code cell
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        browser.execute_script("document.querySelector('.jp-NotebookPanel .jp-Cell').click()")
        first = browser.find_element("css selector", ".jp-NotebookPanel .jp-Cell")
        first.click()
        for _ in range(3):
            ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
            time.sleep(0.3)

        def ran():
            prompts = browser.execute_script(
                "return Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt'))"
                ".map(e => e.textContent.trim())")
            done = [p for p in prompts if p.startswith("[") and p[1:-2].strip().isdigit()]
            return done if len(done) >= 2 else None  # the parameters cell and the first code cell

        done = _wait(ran, 60, "the first code cells to run")
        assert len(done) >= 2, done
        errors = browser.execute_script(
            "return Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="
            "\"application/vnd.jupyter.stderr\"] , .jp-RenderedText[data-mime-type=\"application/vnd.jupyter.error\"]'))"
            ".map(e => e.textContent)")
        assert not [e for e in errors if "Error" in e], errors
    finally:
        browser.quit()
