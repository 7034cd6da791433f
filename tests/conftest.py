"""Shared fixtures: tiny data and configs that train in a fraction of a second."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from landscape_utils.core.data import Dataset


def make_blobs(n_train: int = 256, n_test: int = 128, dim: int = 10, k: int = 3, seed: int = 0) -> Dataset:
    """Gaussian blobs as a Dataset: a task an MLP fits in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(k, dim, generator=g)

    def draw(n):
        y = torch.randint(0, k, (n,), generator=g)
        return centers[y] + torch.randn(n, dim, generator=g), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return Dataset(x_tr, y_tr, x_te, y_te, y_tr.clone(), k, "blobs", 0.0)


@pytest.fixture
def blobs() -> Dataset:
    return make_blobs()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: its problems are tiny, and one thread is fastest and
    does not oversubscribe a shared 2-core machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_rings(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Six classes in 2D: three rings, each cut in two halves. Not linearly separable.
    Returns x (n, 2) in [-1, 1]², y (n,) in 0..5."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    r = x.norm(dim=1)
    y = (r > 0.45).long() + (r > 0.8).long() + 3 * (torch.atan2(x[:, 1], x[:, 0]) > 0).long()
    return x, y


def fit_adam(model, x: torch.Tensor, y: torch.Tensor, steps: int):
    """Full-batch Adam (lr 2e-2) on the cross-entropy for ``steps`` steps; the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), 2e-2)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def headless_chromium(width: int = 1280, height: int = 1000, extra_args: tuple[str, ...] = ()):
    """A selenium driver of headless Chromium at ``width`` x ``height`` with the browser
    console log kept; skips the calling test when Chromium or its driver is absent."""
    import shutil

    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chrome and driver):
        pytest.skip("headless Chromium not installed (Debian packages chromium, chromium-driver); "
                    "`make test` installs them when it can")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--window-size={width},{height}", *extra_args):
        opts.add_argument(a)
    opts.binary_location = chrome
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def train_tiny_digits_grid(workdir):
    """A finished grid of four tiny digits MLPs (widths 4 and 8 x seeds 0 and 1, one epoch)
    in ``workdir``; returns chapter 1's results table of it."""
    from landscape_utils.runs.runner import expand_grid, run_grid

    configs = expand_grid({"dataset": "digits", "model": "mlp", "num_epochs": 1, "batch_size": 64},
                          {"width": [4, 8]}, seeds=range(2))
    return run_grid(configs, workdir, device="cpu", progress=False)


def pytest_collection_modifyitems(config, items):
    """A test of the built book (marker ``book``) is also ``slow``: ``make check`` skips it."""
    for item in items:
        if item.get_closest_marker("book") is not None:
            item.add_marker(pytest.mark.slow)


def wait_gone(procs: list, timeout: float) -> list:
    """The psutil processes still running after ``timeout`` seconds. A zombie counts as gone: it has
    exited and holds nothing, and only waits to be reaped (an orphan is reaped by init, which
    in some containers never does)."""
    import time

    import psutil

    deadline = time.time() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)
