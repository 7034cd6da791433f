"""The self-check: what it prints on this machine, and that it fails naming the problem."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import landscape_utils.runs.runner as runner
from landscape_utils.book import doctor

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = not torch.cuda.is_available()


def run(argv, capsys):
    code = doctor.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_params_pass_here(capsys):
    code, out, err = run(["--params", str(REPO / "params" / "default.yaml")], capsys)
    assert code == 0, err
    for piece in ("python ", "torch ", "torchvision ", "device: auto -> ",
                  "executor: process, workers: 0 -> ", "kernel ", "dataset mnist1d",
                  "preflight: ok"):
        assert piece in out
    if NO_CUDA:
        assert "none visible" in out and "device: auto -> cpu" in out


def test_paper_params_fail_naming_the_missing_cifar10_folder(capsys):
    code, out, err = run(["--params", str(REPO / "params" / "paper_cifar10.yaml")], capsys)
    assert code == 1
    assert "cifar-10-batches-py" in err and "problem" in err
    assert err.count("- ") == 1  # named once, not again by the preflight


def test_the_command_line_exit_code(tmp_path):
    """``python -m landscape_utils.book.doctor`` in a process of its own (as ``make doctor`` runs it)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("01_training_grid:\n  widht: 3\n")
    proc = subprocess.run([sys.executable, "-m", "landscape_utils.book.doctor", "--params", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    assert "widht" in proc.stderr and "[doctor] python" in proc.stdout


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
def test_bf16_params_on_a_cpu_fail_naming_the_key(tmp_path, capsys):
    p = tmp_path / "bf16.yaml"
    p.write_text("01_training_grid:\n  precision: bf16\n")
    code, out, err = run(["--params", str(p)], capsys)
    assert code == 1 and "precision: 'bf16' needs a CUDA device" in err
    assert err.count("- ") == 1


def test_executor_plan_on_gpus(monkeypatch):
    """``workers: 0`` on two GPUs: one worker per GPU slot, each pinned to one GPU."""
    monkeypatch.setattr(doctor, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(doctor, "resolve_device", lambda d="auto": torch.device("cuda"))
    for module in (doctor, runner):  # the doctor's own count, and the one gpu_assignment reads
        monkeypatch.setattr(module, "available_cores", lambda: 8)
    assert doctor.describe_executor("auto", 0, 1) == (
        "2 worker process(es), each pinned to one GPU (GPU 0: 1, GPU 1: 1), 4 CPU thread(s) each")
    assert doctor.describe_executor("auto", 0, 2) == (
        "4 worker process(es), each pinned to one GPU (GPU 0: 2, GPU 1: 2), 2 CPU thread(s) each")
    assert doctor.describe_executor("auto", 3, 2).startswith("3 worker process(es)")
    with pytest.raises(ValueError, match="workers=5"):
        doctor.describe_executor("auto", 5, 2)


def test_executor_plan_on_the_cpu(monkeypatch):
    monkeypatch.setattr(doctor, "resolve_device", lambda d="auto": torch.device("cpu"))
    for module in (doctor, runner):
        monkeypatch.setattr(module, "available_cores", lambda: 6)
    assert doctor.describe_executor("auto", 0) == "6 worker process(es) on the CPU, 1 torch thread(s) each"
    assert doctor.describe_executor("cpu", 2) == "2 worker process(es) on the CPU, 3 torch thread(s) each"


def test_an_old_driver_is_a_problem(monkeypatch):
    monkeypatch.setattr(doctor, "nvidia_driver", lambda: "550.54.15")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    rep = doctor.Report()
    doctor.check_versions(rep)
    assert len(rep.problems) == 1 and "550.54.15" in rep.problems[0] and "580" in rep.problems[0]
    monkeypatch.setattr(doctor, "nvidia_driver", lambda: "580.65.06")
    rep = doctor.Report()
    doctor.check_versions(rep)
    assert rep.problems == []


def test_a_registered_kernel_is_found(tmp_path, monkeypatch):
    kdir = tmp_path / "kernels" / doctor.KERNEL
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "landscape-book", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    rep = doctor.Report()
    doctor.check_kernel(rep)
    line = next(x for x in rep.lines if x.startswith("kernel"))
    assert "registered at" in line and str(kdir) in line and rep.problems == []
