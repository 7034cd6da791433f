import json
import random
import sys

import numpy as np
import pytest
import torch

from landscape_utils.core.utils import atomic_write_json, resolve_device, seed_everything


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_repeats_all_three_generators():
    seed_everything(3)
    a = draw()
    seed_everything(3)
    assert draw() == a
    seed_everything(4)
    assert draw() != a


def test_seed_everything_returns_a_seeded_generator():
    g1, g2 = seed_everything(5), seed_everything(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_atomic_write_json_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"a": np.float32(1.5), "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_atomic_write_keeps_old_content_when_serialization_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_full_precision_undoes_autocast_and_tf32_inside_and_restores_after():
    from landscape_utils.core.utils import full_precision

    m, c = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = (m.fp32_precision, c.fp32_precision)
    a = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
        with full_precision():
            assert (a @ a).dtype == torch.float32
            assert (m.fp32_precision, c.fp32_precision) == ("ieee", "ieee")
        assert (a @ a).dtype == torch.bfloat16  # the caller's scope is back
    assert (m.fp32_precision, c.fp32_precision) == before
    with pytest.raises(KeyError):
        with full_precision():
            raise KeyError("x")
    assert (m.fp32_precision, c.fp32_precision) == before


# glibc's mallinfo2: hblks is the number of blocks held through their own mmap
_PROBE = r"""
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo2().hblks
p = libc.malloc(4 * 2**20)  # 4 MiB: above glibc's default threshold of 128 KiB
print(libc.mallinfo2().hblks - before)
libc.free(p)
"""


def _mmapped_blocks(env):
    import subprocess

    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_allocator_env_serves_mid_sized_blocks_from_the_heap():
    """The book's kernels start with ALLOCATOR_ENV: a 4 MiB block then comes from the heap,
    where by default glibc maps it on its own (and unmaps it when freed)."""
    import ctypes
    import os

    from landscape_utils.core.utils import ALLOCATOR_ENV

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("not glibc >= 2.33 (no mallinfo2)")
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    assert _mmapped_blocks(plain) == 1
    assert _mmapped_blocks({**plain, **ALLOCATOR_ENV}) == 0


def test_allocator_env_keeps_a_users_own_malloc_settings():
    from landscape_utils.core.utils import ALLOCATOR_ENV, allocator_env

    assert allocator_env({}) == ALLOCATOR_ENV
    assert allocator_env({"MALLOC_TRIM_THRESHOLD_": "0"}) == {}
    assert allocator_env({"MALLOC_MMAP_THRESHOLD_": "65536", "PATH": "/bin"}) == {}


def test_book_kernels_start_with_the_allocator_settings(tmp_path, monkeypatch):
    from landscape_utils.book.driver import _kernel_env
    from landscape_utils.core.utils import ALLOCATOR_ENV

    for k in ALLOCATOR_ENV:
        monkeypatch.delenv(k, raising=False)
    env = _kernel_env(tmp_path)
    assert {k: env[k] for k in ALLOCATOR_ENV} == ALLOCATOR_ENV
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert not set(ALLOCATOR_ENV) & set(_kernel_env(tmp_path))


def test_the_registered_kernel_starts_with_the_allocator_settings(tmp_path, monkeypatch):
    """make kernel / make lab register the kernel that JupyterLab and papermill start."""
    import json

    from landscape_utils.book.driver import install_kernel
    from landscape_utils.core.utils import ALLOCATOR_ENV

    for k in ALLOCATOR_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    folder = install_kernel()
    assert folder.is_relative_to(tmp_path)
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["env"] == ALLOCATOR_ENV
    assert spec["argv"][0] == sys.executable
