"""Calibration and evaluation data: ``.npz``, a folder of images by class, or a CSV.

Every loader returns a :class:`Dataset` of float32 inputs and optional integer labels,
or raises :class:`EdgeError` naming the file and what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (first axis = samples), optional labels ``y``, and where they came from."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, n: int) -> Dataset:
        """The first ``n`` samples (all when fewer), labels and classes kept."""
        return Dataset(self.x[:n], None if self.y is None else self.y[:n], self.source, self.classes)

    def split(self, fraction: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A seeded random split: (first, rest) with ``fraction`` of samples in first."""
        idx = np.random.default_rng(seed).permutation(len(self))
        k = round(len(self) * fraction)
        return self._subset(idx[:k]), self._subset(idx[k:])

    def subset(self, idx: np.ndarray) -> Dataset:
        """The samples at indices ``idx``, in that order."""
        return self._subset(idx)

    def _subset(self, idx: np.ndarray) -> Dataset:
        return Dataset(self.x[idx], None if self.y is None else self.y[idx], self.source, self.classes)

    def require_labels(self) -> np.ndarray:
        """The labels, or an error naming the data when accuracy is asked of unlabelled data."""
        if self.y is None:
            raise EdgeError(f"{self.source}: no labels (an .npz needs a 'y' array) but accuracy was asked")
        return self.y


def load_dataset(path: str | Path | Dataset,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Dataset:
    """Load ``path`` by its kind: ``.npz``, ``.csv`` or a directory of class folders (a
    :class:`Dataset` already in memory is taken as it is).

    ``transform`` (the manifest's preprocessing) is applied to every sample: to each image
    of a folder before they are stacked, so images of different sizes can be resized."""
    if isinstance(path, Dataset):
        if len(path) == 0:
            raise EdgeError(f"{path.source}: the data set is empty")
        if transform is None:
            return path
        return Dataset(_each(path.x, transform, path.source), path.y, path.source, path.classes)
    p = Path(path)
    if not p.exists():
        raise EdgeError(f"{p}: no such data file or folder")
    if p.is_dir():
        ds = _load_image_folder(p, transform)
    elif p.suffix.lower() == ".npz":
        ds = _load_npz(p)
    elif p.suffix.lower() == ".csv":
        ds = _load_csv(p)
    else:
        raise EdgeError(f"{p}: unknown data format {p.suffix!r}; expected .npz, .csv or a folder")
    if len(ds) == 0:
        raise EdgeError(f"{p}: the data set is empty")
    if transform is not None and not p.is_dir():
        ds = Dataset(_each(ds.x, transform, p), ds.y, ds.source, ds.classes)
    return ds


def _each(x: np.ndarray, transform: Callable[[np.ndarray], np.ndarray], p: Path | str) -> np.ndarray:
    try:
        return np.stack([np.asarray(transform(s), dtype=np.float32) for s in x])
    except (ValueError, IndexError) as e:
        raise EdgeError(f"{p}: preprocessing failed on a sample of shape {x.shape[1:]}: {e}") from None


def _load_npz(p: Path) -> Dataset:
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" not in z:
                raise EdgeError(f"{p}: expected an array named 'x', found {sorted(z.files)}")
            x = np.asarray(z["x"])
            y = np.asarray(z["y"]) if "y" in z else None
    except EdgeError:
        raise
    except Exception as e:  # zipfile, pickle and format errors differ by corruption
        raise EdgeError(f"{p}: not a readable .npz file ({e})") from e
    if x.dtype.kind not in "fiub":
        raise EdgeError(f"{p}: 'x' has dtype {x.dtype}; expected numbers")
    if y is not None and (y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x)):
        raise EdgeError(
            f"{p}: 'y' must be 1-D integer labels, one per row of 'x' "
            f"(x has {len(x)} rows; y is {y.dtype} {y.shape})"
        )
    return Dataset(x.astype(np.float32), None if y is None else y.astype(np.int64), str(p))


def _load_csv(p: Path) -> Dataset:
    """The agent's CSV rule (:mod:`device_agent.sources.csv_rows`); here a bad row is an
    error, since a data set feeds calibration and scores."""
    from device_agent.sources.csv_rows import read_csv

    rows = read_csv(p)
    bad = next((e for e in rows.errors if e is not None), None)
    if bad is not None:
        raise EdgeError(f"{p}: {bad}")
    return Dataset(rows.x, rows.y, str(p))


def _load_image_folder(p: Path, transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Dataset:
    classes = sorted(d.name for d in p.iterdir() if d.is_dir())
    if not classes:
        raise EdgeError(f"{p}: expected one subfolder per class holding images")
    try:
        from PIL import Image
    except ImportError as e:
        raise EdgeError("reading an image folder needs Pillow: pip install 'edgekit-sdk[host]'") from e
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((p / cls).iterdir()):
            if f.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    img = np.asarray(im, dtype=np.float32)
                xs.append(img if transform is None else np.asarray(transform(img), dtype=np.float32))
            except OSError as e:
                raise EdgeError(f"{f}: not a readable image ({e})") from e
            except (ValueError, IndexError) as e:
                raise EdgeError(f"{f}: preprocessing failed on an image of shape {img.shape}: {e}") from None
            ys.append(label)
    if not xs:
        raise EdgeError(f"{p}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in class folders")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise EdgeError(f"{p}: images differ in size {sorted(shapes)}; give --resize HxW")
    x = np.stack(xs)
    if x.ndim == 3:
        x = x[..., None]
    return Dataset(x, np.array(ys, dtype=np.int64), str(p), tuple(classes))


def fit_to_shape(ds: Dataset, shape: tuple[int, ...], *, what: str = "model") -> Dataset:
    """Reshape samples to a model's input shape (batch dim excluded) when the sizes agree."""
    want = tuple(shape[1:])
    if any(d <= 0 for d in want) or ds.x.shape[1:] == want:
        return ds
    if int(np.prod(ds.x.shape[1:])) == int(np.prod(want)):
        return Dataset(ds.x.reshape((len(ds), *want)), ds.y, ds.source, ds.classes)
    raise EdgeError(
        f"{ds.source}: samples have shape {ds.x.shape[1:]}, the {what} expects {want}"
    )


def load_named(path: str | Path) -> dict[str, np.ndarray] | None:
    """One array per input name from an ``.npz`` without ``x`` (first axis = samples, a
    ``y`` array of labels aside); ``None`` for any other data (read by :func:`load_dataset`).

    Arrays keep their own dtype: an int64 input stays int64."""
    p = Path(path)
    if p.is_dir() or p.suffix.lower() != ".npz":
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            if "x" in z.files:
                return None
            named = {k: np.asarray(z[k]) for k in z.files if k != "y"}
    except FileNotFoundError:
        raise EdgeError(f"{p}: no such data file") from None
    except Exception as e:  # zipfile, pickle and format errors differ by corruption
        raise EdgeError(f"{p}: not a readable .npz file ({e})") from e
    counts = {k: (len(v) if v.ndim else 0) for k, v in named.items()}
    if not named or len(set(counts.values())) != 1 or 0 in counts.values():
        raise EdgeError(f"{p}: expected 'x', or one array per input name with the same number of "
                        f"samples on the first axis; found {counts or 'no arrays'}")
    return named
