"""An MNIST-shaped dataset made from the bundled digits, for benchmarks and tests at the lab's scale.

MNIST is 70,000 images of 28x28 that SageMaker's XGBoost example stores as CSV with the label first,
no header and 784 pixel columns (0-255). We cannot download it (offline by design), so each row here
is one of scikit-learn's 8x8 digits upscaled to 24x24, shifted inside a 28x28 frame and given
stroke noise: the same shape, value range and sparsity as MNIST, and a problem about as hard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 28
PIXELS = SIDE * SIDE
MNIST_ROWS = 70_000
_UPSCALE = 3  # 8x8 -> 24x24, leaving 4 pixels of room for shifts
_MAX_SHIFT = SIDE - 8 * _UPSCALE


def mnist_like_arrays(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [rows], images uint8 [rows, 784]); deterministic for a seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits.target), rows)
    small = digits.images[picks]  # (rows, 8, 8), values 0..16
    large = np.kron(small, np.ones((_UPSCALE, _UPSCALE))) * (255 / 16)  # (rows, 24, 24)
    noise = rng.normal(0, 24, large.shape)
    large = np.where(large > 0, np.clip(large + noise, 1, 255), 0)  # noise on strokes only: MNIST is ~80% zeros
    images = np.zeros((rows, SIDE, SIDE), dtype=np.uint8)
    shifts = rng.integers(0, _MAX_SHIFT + 1, (rows, 2))
    for dy in range(_MAX_SHIFT + 1):  # 25 vectorised placements, not one per row
        for dx in range(_MAX_SHIFT + 1):
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            images[chosen, dy : dy + 8 * _UPSCALE, dx : dx + 8 * _UPSCALE] = large[chosen].round().astype(np.uint8)
    return digits.target[picks].astype(np.int64), images.reshape(rows, PIXELS)


def write_mnist_like_csv(path: Path, rows: int = MNIST_ROWS, seed: int = 0) -> Path:
    """The SageMaker example's layout: label first, no header, 784 integer pixel columns."""
    labels, images = mnist_like_arrays(rows, seed)
    table = np.column_stack([labels, images.astype(np.int64)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        columns = {f"c{i}": table[:, i] for i in range(table.shape[1])}
        pacsv.write_csv(pa.table(columns), partial, write_options=pacsv.WriteOptions(include_header=False))
    except ImportError:  # without pyarrow: numpy's writer, slower but the same text
        np.savetxt(partial, table, fmt="%d", delimiter=",")
    partial.replace(path)  # a crash mid-write never leaves a truncated cache behind
    return path


def cached_mnist_like_csv(cache_dir: Path, rows: int = MNIST_ROWS, seed: int = 0) -> Path:
    """Generate once per (rows, seed) under `cache_dir`; later calls reuse the file."""
    path = Path(cache_dir) / f"mnist-like-{rows}-seed{seed}.csv"
    return path if path.is_file() else write_mnist_like_csv(path, rows, seed)
