"""A build stopped by SIGTERM or SIGHUP (a scheduler's time limit, ``kill``) leaves no process
behind and no half-written record; the next build completes the grid."""
import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import wait_gone
from landscape_utils.runs.store import Store

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # each test starts a build, a Ray, or a pool and kills it


def _params(tmp_path: Path) -> Path:
    grid = {"dataset": "digits", "model": "mlp", "load_values": [4, 8, 16], "temperature_values": [16],
            "num_seeds": 2, "num_epochs": 60, "executor": "process", "workers": 2}
    params = {"shared": {"workdir": str(tmp_path / "work"), "device": "cpu"}, "01_training_grid": grid}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("sig,jobs", [(signal.SIGTERM, 1), (signal.SIGHUP, 2)])
def test_a_terminated_build_leaves_no_process_and_no_half_written_record(tmp_path, sig, jobs):
    params = _params(tmp_path)
    driver = subprocess.Popen([sys.executable, "-m", "landscape_utils.book", "--params", str(params),
                               "--out", str(tmp_path / "out"), "--chapters", "01", "--no-html", "--jobs", str(jobs)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait until the kernel's two pool workers train (kernel + 2 workers, and a chapter
    # process with --jobs 2), then terminate the driver in the middle of the grid
    deadline = time.time() + 240
    procs: list[psutil.Process] = []
    while time.time() < deadline and driver.poll() is None:
        procs = _descendants(driver.pid)
        busy = [p for p in procs if "spawn_main" in " ".join(_cmdline(p))]
        if len(busy) >= 2 + (jobs > 1):
            break
        time.sleep(0.2)
    assert driver.poll() is None, driver.stderr.read()[-2000:]
    time.sleep(2.0)  # well inside the first tasks
    procs = _descendants(driver.pid)
    driver.send_signal(sig)
    driver.wait(timeout=60)
    assert driver.returncode == 128 + sig, driver.returncode
    alive = wait_gone(procs, timeout=30)
    assert not alive, [(p.pid, _cmdline(p)) for p in alive]
    # the store: every finished run intact, no record half-written
    store = Store(tmp_path / "work")
    for d in (tmp_path / "work" / "runs").glob("*"):
        if d.is_dir() and (d / "metrics.json").exists():
            assert store.is_done(d.name), d
    for f in (tmp_path / "work").rglob("*.json"):
        json.loads(f.read_text())


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


RAY_KERNEL = r'''
import os, sys, time, subprocess
if sys.argv[1] == "parent":  # stands for the process that started a chapter's kernel
    child = subprocess.Popen([sys.executable, __file__, "child", str(os.getpid())])
    print(child.pid, flush=True)
    time.sleep(600)
else:  # stands for the kernel: it started a local Ray and a task that runs for minutes
    from landscape_utils.core.utils import exit_with_parent
    exit_with_parent(int(sys.argv[2]))
    import ray
    ray.init(num_cpus=1, log_to_driver=False, include_dashboard=False)
    @ray.remote
    def slow():
        time.sleep(600)
    ref = slow.remote()
    ray.get(ray.put(1))
    print("ray up", flush=True)
    time.sleep(600)
'''


def test_a_kernel_whose_parent_dies_takes_its_local_ray_along(tmp_path):
    pytest.importorskip("ray")
    script = tmp_path / "ray_kernel.py"
    script.write_text(RAY_KERNEL)
    parent = subprocess.Popen([sys.executable, str(script), "parent"], stdout=subprocess.PIPE, text=True)
    kernel = psutil.Process(int(parent.stdout.readline()))
    deadline, line = time.time() + 180, ""
    while "ray up" not in line:  # the kernel's Ray is started and has run a task
        ready, _, _ = select.select([parent.stdout], [], [], max(0.0, deadline - time.time()))
        if not ready:
            parent.kill()
            pytest.fail("the kernel's local Ray did not start within 180 s")
        line = parent.stdout.readline()
    time.sleep(2.0)
    procs = [kernel, *_descendants(kernel.pid)]
    assert any("raylet" in p.name() for p in procs), [p.name() for p in procs]
    parent.kill()
    parent.wait(timeout=30)
    alive = wait_gone(procs, timeout=60)
    for p in alive:
        p.kill()
    assert not alive, [(p.pid, p.name()) for p in alive]
