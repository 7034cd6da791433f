"""Datasets by name, held as tensors on the device, with the load-like knobs.

Names: ``mnist1d`` (default, generated offline), ``digits`` (scikit-learn),
``cifar10``, ``cifar100`` and ``svhn`` (torchvision, read from ``data_root``).

Load-like knobs, applied to the training split only:
    data_fraction  a seeded random subset of the training set, in (0, 1]
    label_noise    each training label is replaced, with this probability, by a
                   uniformly random *other* class; the realized fraction is recorded
Test labels are never changed.
"""
from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist1d", "digits", "cifar10", "cifar100", "svhn")

# Where to get the torchvision datasets when their folder is missing.
_HOWTO = {
    "cifar10": "expects <data_root>/cifar-10-batches-py (the 'python version' archive from the "
    "CIFAR-10 page); pass download=True once to fetch it with torchvision",
    "cifar100": "expects <data_root>/cifar-100-python (the 'python version' archive from the "
    "CIFAR-100 page); pass download=True once to fetch it with torchvision",
    "svhn": "expects <data_root>/train_32x32.mat and test_32x32.mat (SVHN format 2); pass "
    "download=True once to fetch them with torchvision",
}


@dataclass(frozen=True)
class Dataset:
    """A classification dataset as tensors on one device.

    Attributes:
        x_train: (n_train, *in_shape) float32 inputs.
        y_train: (n_train,) int64 labels, after label noise.
        x_test: (n_test, *in_shape) float32 inputs.
        y_test: (n_test,) int64 labels, never corrupted.
        y_train_clean: (n_train,) int64 labels before label noise.
        num_classes: number of classes.
        name: dataset name.
        noise_fraction: realized fraction of training labels that were changed.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    y_train_clean: torch.Tensor
    num_classes: int
    name: str
    noise_fraction: float

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])


def validate_knobs(data_fraction: float, label_noise: float) -> None:
    """Raise ``ValueError`` naming the bad knob."""
    if not (0.0 < float(data_fraction) <= 1.0):
        raise ValueError(f"data_fraction must be in (0, 1], got {data_fraction!r}")
    if not (0.0 <= float(label_noise) <= 1.0):
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise!r}")


def load_dataset(
    name: str = "mnist1d",
    data_fraction: float = 1.0,
    label_noise: float = 0.0,
    data_seed: int = 0,
    data_root: str | Path = "data",
    download: bool = False,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Load a dataset by name, apply the load-like knobs, and move it to ``device``.

    ``data_seed`` seeds both the subset and the label noise, so every seed of a grid
    cell sees the same training set.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    validate_knobs(data_fraction, label_noise)
    x_tr, y_tr, x_te, y_te, k = _load_raw(name, str(data_root), bool(download))
    rng = np.random.default_rng([int(data_seed), 7919])
    if data_fraction < 1.0:
        n_keep = max(1, int(round(data_fraction * len(y_tr))))
        keep = np.sort(rng.choice(len(y_tr), size=n_keep, replace=False))
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    y_noisy = corrupt_labels(y_tr, k, label_noise, rng)
    dev = torch.device(device)
    to = lambda a, dt: torch.as_tensor(a, dtype=dt).to(dev)  # noqa: E731
    return Dataset(
        x_train=to(x_tr, torch.float32),
        y_train=to(y_noisy, torch.int64),
        x_test=to(x_te, torch.float32),
        y_test=to(y_te, torch.int64),
        y_train_clean=to(y_tr, torch.int64),
        num_classes=int(k),
        name=name,
        noise_fraction=float(np.mean(y_noisy != y_tr)) if len(y_tr) else 0.0,
    )


def corrupt_labels(
    y: np.ndarray, num_classes: int, p: float, rng: np.random.Generator
) -> np.ndarray:
    """Replace each label, with probability ``p``, by a uniformly random *other* class.

    Args:
        y: (n,) integer labels in [0, num_classes).
    Returns:
        (n,) new labels; ``y`` is not modified.
    """
    y = np.asarray(y)
    flip = rng.random(len(y)) < p
    # An offset in 1..k-1 added modulo k is uniform over the other classes.
    offset = rng.integers(1, num_classes, size=len(y))
    return np.where(flip, (y + offset) % num_classes, y).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _load_raw(name: str, data_root: str, download: bool):
    """Returns numpy (x_train, y_train, x_test, y_test, num_classes); cached per process."""
    if name == "mnist1d":
        return _mnist1d()
    if name == "digits":
        return _digits()
    return _torchvision(name, Path(data_root), download)


#: The arrays of MNIST-1D, once generated, are kept here (``LANDSCAPE_CACHE`` overrides).
CACHE_ENV = "LANDSCAPE_CACHE"
_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def cache_dir() -> Path:
    """Where generated data is kept: ``$LANDSCAPE_CACHE``, else
    ``$XDG_CACHE_HOME/landscape-book`` (``~/.cache/landscape-book``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "landscape-book"


def mnist1d_cache_path() -> Path:
    """The cache file of MNIST-1D as the package generates it (mnist1d's default
    arguments). Those arguments belong to the installed mnist1d release, so the file is
    named by that release: another version generates anew. Finding the name does not
    import mnist1d (which pulls in scipy, 1.5 s)."""
    from importlib.metadata import version

    return cache_dir() / f"mnist1d-{version('mnist1d')}-default.npz"


def generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D generated from its templates (no download), as the arrays ``x`` (4000, 40)
    float32, ``y`` (4000,) int64, ``x_test`` (1000, 40) and ``y_test`` (1000,). Takes
    about 10 s of CPU; :func:`_mnist1d` reads it from the cache instead when it can."""
    from mnist1d.data import get_dataset_args, make_dataset

    # (mnist1d's get_dataset would fetch a pickle from the network, so it is never used.)
    d = make_dataset(get_dataset_args())
    return {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


def _mnist1d():
    """MNIST-1D from the cache file, generating and saving it on a miss.

    Every process that trains or measures needs the data (each chapter's kernel and each
    worker of a process pool), and generating it costs more than most tasks; reading the
    cached arrays takes milliseconds. A cache file that cannot be read is generated again
    and replaced; a cache that cannot be written is skipped.
    """
    path = mnist1d_cache_path()
    d = None
    if path.exists():
        try:
            with np.load(path) as z:
                d = {k: z[k] for k in _MNIST1D_KEYS}
        except Exception:  # truncated or foreign file: generate again and replace it
            d = None
    if d is None:
        d = generate_mnist1d()
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp",
                                             delete=False) as f:
                tmp = f.name
                np.savez(f, **d)
            os.chmod(tmp, 0o644)  # readable by other users, like any cache file
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError:  # a full or read-only disk: no cache, and no half-written file left
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    return d["x"], d["y"], d["x_test"], d["y_test"], 10


def _digits():
    from sklearn.datasets import load_digits

    # 1797 8x8 images that ship inside the scikit-learn wheel; a fixed 80/20 split.
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    perm = np.random.default_rng(0).permutation(len(y))
    n_tr = int(0.8 * len(y))
    tr, te = perm[:n_tr], perm[n_tr:]
    return x[tr], y[tr].astype(np.int64), x[te], y[te].astype(np.int64), 10


def _torchvision(name: str, root: Path, download: bool):
    import torchvision

    # torchvision compares each file with the md5 of the official release; we only
    # require the files to be present and readable, so that the loaders can be
    # tested on tiny files written in the same format.
    class CIFAR10(torchvision.datasets.CIFAR10):
        def _check_integrity(self) -> bool:
            return _files_present(self.root, self.base_folder, self.train_list + self.test_list)

        def _load_meta(self) -> None:  # class names are not needed
            self.classes = []

    class CIFAR100(torchvision.datasets.CIFAR100):
        def _check_integrity(self) -> bool:
            return _files_present(self.root, self.base_folder, self.train_list + self.test_list)

        def _load_meta(self) -> None:  # class names are not needed
            self.classes = []

    class SVHN(torchvision.datasets.SVHN):
        def _check_integrity(self) -> bool:
            return (Path(self.root) / self.filename).is_file()

    try:
        if name == "svhn":
            tr = SVHN(str(root), split="train", download=download)
            te = SVHN(str(root), split="test", download=download)
            x_tr, y_tr = tr.data, np.asarray(tr.labels)  # data: (n, 3, 32, 32) uint8
            x_te, y_te = te.data, np.asarray(te.labels)
            k = 10
        else:
            cls = CIFAR10 if name == "cifar10" else CIFAR100
            tr = cls(str(root), train=True, download=download)
            te = cls(str(root), train=False, download=download)
            # data: (n, 32, 32, 3) uint8 -> (n, 3, 32, 32)
            x_tr, y_tr = tr.data.transpose(0, 3, 1, 2), np.asarray(tr.targets)
            x_te, y_te = te.data.transpose(0, 3, 1, 2), np.asarray(te.targets)
            k = 10 if name == "cifar10" else 100
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"dataset {name!r} not found under data_root={str(root)!r}: {_HOWTO[name]}"
        ) from err
    # As in the paper: ToTensor and per-channel Normalize, no augmentation. The
    # normalization statistics come from the training split.
    x_tr = x_tr.astype(np.float32) / 255.0
    x_te = x_te.astype(np.float32) / 255.0
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr.std(axis=(0, 2, 3), keepdims=True)
    return ((x_tr - mean) / std, y_tr.astype(np.int64),
            (x_te - mean) / std, y_te.astype(np.int64), k)


def _files_present(root: str, folder: str, files: list) -> bool:
    return all((Path(root) / folder / f[0]).is_file() for f in files)


# The data-order stream of a run: distinct from the init stream (seed_everything(seed)).
_ORDER_STRIDE, _ORDER_OFFSET = 10_007, 1


def data_order_generator(seed: int) -> torch.Generator:
    """The CPU generator that shuffles the training set of the run with ``seed``.

    One ``randperm`` of it per epoch gives that epoch's order. ``train.train_run`` and the
    stacked population trainer both draw from it, so a member of a population sees exactly
    the minibatches it would see trained alone.
    """
    return torch.Generator().manual_seed(_ORDER_STRIDE * int(seed) + _ORDER_OFFSET)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            drop_last: bool = True):
    """Yield ``(x_b, y_b)`` minibatches from on-device tensors, shuffled by ``generator``.

    Shuffling draws a permutation on the CPU (so a CPU generator drives any device);
    no DataLoader is built. With ``generator=None`` the order is kept.
    """
    n = x.shape[0]
    if generator is None:
        order = torch.arange(n, device=x.device)
    else:
        order = torch.randperm(n, generator=generator).to(x.device)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]
