import json
import random

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
