import pickle

import numpy as np
import pytest
import scipy.io
import torch

from landscape_utils.core.data import batches, corrupt_labels, load_dataset


@pytest.fixture(scope="module")
def mnist1d():
    return load_dataset("mnist1d")


def test_mnist1d_is_generated_offline_with_the_expected_shape(mnist1d):
    assert mnist1d.x_train.shape == (4000, 40) and mnist1d.x_test.shape == (1000, 40)
    assert mnist1d.num_classes == 10 and mnist1d.in_shape == (40,)
    assert set(mnist1d.y_train.unique().tolist()) == set(range(10))


def test_data_fraction_is_a_seeded_subset(mnist1d):
    a = load_dataset("mnist1d", data_fraction=0.25, data_seed=1)
    b = load_dataset("mnist1d", data_fraction=0.25, data_seed=1)
    c = load_dataset("mnist1d", data_fraction=0.25, data_seed=2)
    assert a.num_train == 1000
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    # every subset row is a row of the full training set
    full = {tuple(r) for r in mnist1d.x_train.numpy().round(5)}
    assert all(tuple(r) in full for r in a.x_train.numpy().round(5))
    assert torch.equal(a.x_test, mnist1d.x_test)


def test_label_noise_changes_labels_to_other_classes_only(mnist1d):
    d = load_dataset("mnist1d", label_noise=0.3, data_seed=0)
    changed = d.y_train != d.y_train_clean
    assert abs(changed.float().mean().item() - 0.3) < 0.03
    assert d.noise_fraction == pytest.approx(changed.float().mean().item())
    assert torch.equal(d.y_train_clean, mnist1d.y_train)
    assert torch.equal(d.y_test, mnist1d.y_test)  # test labels never change


def test_corrupt_labels_is_uniform_over_the_other_classes():
    y = np.zeros(30000, dtype=np.int64)
    new = corrupt_labels(y, 4, 1.0, np.random.default_rng(0))
    assert (new != 0).all()
    counts = np.bincount(new, minlength=4)[1:] / len(y)
    assert np.allclose(counts, 1 / 3, atol=0.02)


def test_digits_ships_with_scikit_learn():
    d = load_dataset("digits")
    assert d.in_shape == (1, 8, 8) and d.num_train + d.x_test.shape[0] == 1797


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"label_noise": 1.5}, "label_noise must be in"),
    ({"label_noise": -0.1}, "label_noise must be in"),
    ({"data_fraction": 0.0}, "data_fraction must be in"),
    ({"data_fraction": -1}, "data_fraction must be in"),
    ({"data_fraction": 1.2}, "data_fraction must be in"),
])
def test_bad_dataset_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**{"name": "mnist1d", **kwargs})


# ---- torchvision loaders on tiny files in the real on-disk format -------------
def _write_cifar10(root, n_per_batch=4):
    # The real files are Python 2 pickles whose str keys load as str, as here.
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n_per_batch).tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}".encode() for i in range(10)]}, fh)


def _write_cifar100(root, n=6):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist()}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}".encode() for i in range(100)]}, fh)


def test_cifar10_loader_reads_the_real_format(tmp_path):
    _write_cifar10(tmp_path)
    d = load_dataset("cifar10", data_root=tmp_path)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert d.num_classes == 10
    # per-channel normalization from the training split
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    # pixel layout: the first 1024 bytes of a row are the red channel of image 0
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)["data"][0].reshape(3, 32, 32).astype(np.float32)
    got = d.x_train[0].numpy()
    corr = np.corrcoef(raw[0].ravel(), got[0].ravel())[0, 1]
    assert corr > 0.999


def test_cifar100_loader_reads_the_real_format(tmp_path):
    _write_cifar100(tmp_path)
    d = load_dataset("cifar100", data_root=tmp_path)
    assert d.x_train.shape == (6, 3, 32, 32) and d.num_classes == 100


def test_svhn_loader_reads_the_real_format(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 3)):
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                          "y": np.array([[10], [1], [2], [3], [4]][:n], dtype=np.uint8)})
    d = load_dataset("svhn", data_root=tmp_path)
    assert d.x_train.shape == (5, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.y_train.tolist() == [0, 1, 2, 3, 4]  # SVHN stores digit 0 as label 10


@pytest.mark.parametrize("name,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                         ("svhn", "train_32x32.mat")])
def test_missing_dataset_folder_says_how_to_get_it(tmp_path, name, folder):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, data_root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and folder in msg and "download=True" in msg


def test_batches_drop_the_last_incomplete_batch_and_cover_each_sample_once():
    x = torch.arange(10).float()[:, None]
    y = torch.arange(10)
    got = list(batches(x, y, 3, torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in got] == [3, 3, 3]
    seen = torch.cat([b[1] for b in got])
    assert len(set(seen.tolist())) == 9
    again = list(batches(x, y, 3, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(got, again))


def test_data_order_generator_is_per_seed_and_independent_of_the_global_stream():
    from landscape_utils.core.data import data_order_generator

    torch.manual_seed(0)
    a = torch.randperm(50, generator=data_order_generator(3))
    torch.manual_seed(1)  # the global stream (used for init) does not move the order
    b = torch.randperm(50, generator=data_order_generator(3))
    c = torch.randperm(50, generator=data_order_generator(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the order of each epoch: successive permutations of one generator
    g = data_order_generator(3)
    first, second = torch.randperm(50, generator=g), torch.randperm(50, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_mnist1d_cache_holds_exactly_the_generated_arrays(tmp_path, monkeypatch):
    """The first load generates and saves; later loads (in any process) read the file and
    get the same arrays as a fresh generation; a damaged file is generated again."""
    from landscape_utils.core import data

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    data._load_raw.cache_clear()
    try:
        path = data.mnist1d_cache_path()
        assert path.parent == tmp_path and not path.exists()
        first = data._mnist1d()
        assert path.exists()
        fresh = data.generate_mnist1d()  # the brute-force reference: generate again
        with np.load(path) as z:
            for i, k in enumerate(("x", "y", "x_test", "y_test")):
                assert np.array_equal(z[k], fresh[k]) and z[k].dtype == fresh[k].dtype
                assert np.array_equal(first[i], fresh[k])
        # a read from the cache never imports mnist1d's generator
        calls = []
        monkeypatch.setattr(data, "generate_mnist1d", lambda: calls.append(1) or fresh)
        again = data._mnist1d()
        assert calls == [] and all(np.array_equal(a, b) for a, b in zip(again[:4], first[:4]))
        # a truncated file is generated again and replaced
        path.write_bytes(path.read_bytes()[:100])
        healed = data._mnist1d()
        assert calls == [1] and np.array_equal(healed[0], fresh["x"])
        with np.load(path) as z:
            assert np.array_equal(z["x"], fresh["x"])
        assert not list(tmp_path.glob("*.tmp"))
    finally:
        data._load_raw.cache_clear()


def test_mnist1d_cache_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    from landscape_utils.core import data

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(data.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setattr(data, "generate_mnist1d", lambda: {
        "x": np.zeros((4, 40), np.float32), "y": np.zeros(4, np.int64),
        "x_test": np.zeros((2, 40), np.float32), "y_test": np.zeros(2, np.int64)})
    x, y, xt, yt, k = data._mnist1d()
    assert x.shape == (4, 40) and k == 10


def test_mnist1d_cache_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    from landscape_utils.core import data

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(data, "generate_mnist1d", lambda: {
        "x": np.zeros((4, 40), np.float32), "y": np.zeros(4, np.int64),
        "x_test": np.zeros((2, 40), np.float32), "y_test": np.zeros(2, np.int64)})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.np, "savez", disk_full)
    x, *_ = data._mnist1d()
    assert x.shape == (4, 40) and list(tmp_path.iterdir()) == []
