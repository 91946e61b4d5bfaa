"""Datasets for the inner task: preparation, checksums, splits and loading.

Four datasets are supported (:data:`DATASETS`):

``mnist1d``
    Generated offline by the ``mnist1d`` package (``make_dataset``, never ``get_dataset``,
    which would try the network), always with the generator's own default seed: the canonical
    4000 train / 1000 test examples of 40 features that the MNIST-1D literature uses. The
    generator's train/test split is the test split here; ``split_seed`` chooses the validation.
``digits``
    scikit-learn's bundled 8x8 digits (1797 examples, 64 features). A stratified 20% test split
    is made with ``split_seed``.
``mnist``, ``fashion_mnist``
    The four IDX files of each dataset under ``root/raw/<name>/`` (gzipped or not), placed there
    by hand or fetched by :func:`download_idx` (``ganno data prepare NAME --download``). Images are
    flattened to 784 features; the official 60000/10000 train/test split is kept.

Splits and preprocessing, identical for all datasets:

* Validation is held out of the training split: a **stratified** random subset of
  ``round(val_fraction * n_train)`` examples (per-class quotas by largest remainder), drawn with
  ``numpy.random.default_rng([split_seed, 0])``. Both index sets keep the original order.
* Standardisation uses **one scalar mean and one scalar std over all training features** (fitted
  on the train part only, after the validation hold-out) and is applied to train, val and test.
  A scalar avoids dividing by the zero std of always-blank pixels and keeps the input geometry.
  The statistics (in the raw units of each dataset) are recorded in the manifest.
* Features are stored as float32 ``[n, *input_shape]``, labels as int32 ``[n]``.

:func:`prepare` writes ``root/processed/<name>-val<val_fraction>-seed<split_seed>.npz`` and a
manifest ``<same stem>.json`` beside it (sha256 of the npz and of each array, sha256 of every raw
input file, parameters, split sizes, standardisation statistics, library versions). The npz is
written with fixed zip timestamps, so preparing twice with the same inputs and library versions
gives a byte-identical file (and the same sha256). :func:`load` verifies the npz sha256 against
the manifest before returning a :class:`Dataset`.

Raw-file checksums: the gzipped MNIST / Fashion-MNIST files are checked against the published
SHA-256 values in :data:`SHA256` both after a download and when preparing; a mismatch raises
:class:`DataIntegrityError` unless ``verify=False`` is passed to :func:`prepare` (for files that are
known to be good but were, e.g., re-compressed). Un-gzipped files have no published checksum: they
are checked structurally only (IDX header, sizes, 28x28 images, labels 0-9), and their own sha256
is recorded in the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import struct
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from ganno.config import task_config
from ganno.errors import DataError, DataIntegrityError, DatasetMissingError
from ganno.io import atomic_open, atomic_write

DATASETS: tuple[str, ...] = ("mnist1d", "digits", "mnist", "fashion_mnist")

FORMAT_VERSION = 1
NUM_CLASSES = 10
DIGITS_TEST_FRACTION = 0.2

# The four IDX files of MNIST and Fashion-MNIST (same names for both), keyed by role.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# Published SHA-256 of the gzipped files. Sources (values identical in both):
#   * tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt and fashion_mnist.txt
#     (which also give the sizes in bytes noted below);
#   * pytorch/vision, torchvision/prototype/datasets/_builtin/mnist.py (MNIST._CHECKSUMS and
#     FashionMNIST._CHECKSUMS).
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        # 9,912,422 bytes
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        # 28,881 bytes
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        # 1,648,877 bytes
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        # 4,542 bytes
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion_mnist": {
        # 26,421,880 bytes
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        # 29,515 bytes
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        # 4,422,102 bytes
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        # 5,148 bytes
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

# Download locations, tried in order (the first is the one tensorflow_datasets uses).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

Fetch = Callable[[str], bytes]


class IdxFormatError(DataIntegrityError):
    """A file is not a valid (complete) IDX file."""


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset: standardised float32 features and int32 labels for each split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (40,) for mnist1d, (64,) for digits, (784,) for MNIST."""
        return tuple(int(d) for d in self.x_train.shape[1:])


# --------------------------------------------------------------------------------------------
# IDX format
# --------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxFormatError(f"{path}: corrupt or truncated gzip data ({err})") from err
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a native-endian numpy array.

    Any IDX type code (uint8, int8, int16, int32, float32, float64) and any number of dimensions
    are accepted. Raises :class:`IdxFormatError` if the magic number is wrong or the data size
    does not match the header (truncated file or trailing bytes).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise IdxFormatError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} "
            f"(expected 0x0000, a type code in {sorted(hex(c) for c in _IDX_DTYPES)}, ndim)"
        )
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(f"{path}: truncated IDX header ({len(data)} < {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: IDX file {what}: header says shape {shape} of {dtype.name} "
            f"({expected} bytes in all) but the (decompressed) file has {len(data)} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed (reproducibly, mtime 0) if ``path`` ends
    in ``.gz``. The inverse of :func:`read_idx`."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use one of {sorted(str(d) for d in _IDX_CODES)}"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got {array.shape}")
    payload = (
        struct.pack(">HBB", 0, code, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    )
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write(path, payload)


# --------------------------------------------------------------------------------------------
# Raw files, checksums and downloads
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def raw_dir(name: str, root: str | Path = "data") -> Path:
    return Path(root) / "raw" / name


def _missing_message(name: str, folder: Path, missing: list[str]) -> str:
    urls = "\n".join(f"    {base}{f}" for f in missing for base in MIRRORS[name][:1])
    return (
        f"{name}: raw file(s) missing: {', '.join(missing)}\n"
        f"  expected in folder: {folder}/ (gzipped, or the same names without .gz)\n"
        f"  on a machine with internet access run:  ganno data prepare {name} --download\n"
        f"  or download them by hand from:\n{urls}\n"
        f"  (mirror: {MIRRORS[name][1]})"
    )


def find_raw_files(name: str, root: str | Path = "data") -> dict[str, Path]:
    """Paths of the four IDX files of ``name`` ('mnist' or 'fashion_mnist'), keyed by role.

    A gzipped file is preferred; the un-gzipped name is accepted too. Raises
    :class:`DatasetMissingError` naming every missing file and the folder to put them in.
    """
    if name not in MIRRORS:
        raise DataError(f"{name!r} has no raw IDX files (only {', '.join(MIRRORS)} do)")
    folder = raw_dir(name, root)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, fname in IDX_FILES.items():
        gz, plain = folder / fname, folder / fname.removesuffix(".gz")
        if gz.is_file():
            found[role] = gz
        elif plain.is_file():
            found[role] = plain
        else:
            missing.append(fname)
    if missing:
        raise DatasetMissingError(_missing_message(name, folder, missing))
    return found


def verify_raw_file(name: str, path: Path) -> str:
    """Return the sha256 of ``path``; for a gzipped file with a published checksum, raise
    :class:`DataIntegrityError` if it differs."""
    digest = sha256_file(path)
    expected = SHA256[name].get(path.name)
    if expected is not None and digest != expected:
        raise DataIntegrityError(
            f"{path}: SHA-256 mismatch for {name}\n  expected {expected}\n  got      {digest}\n"
            f"  The file is corrupt or not the official one. Delete it and rerun "
            f"`ganno data prepare {name} --download --force`, or, if you know the file is good "
            f"(e.g. re-compressed), prepare with "
            f"`ganno.data.prepare({name!r}, verify=False)`."
        )
    return digest


def _urlopen_fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def download_idx(name: str, root: str | Path = "data", fetch: Fetch | None = None) -> list[Path]:
    """Download the four IDX files of ``name`` into ``root/raw/<name>/``, verified by SHA-256.

    Files already present with the right checksum are kept. Each file is tried from every
    mirror in :data:`MIRRORS` in turn; a download with the wrong checksum is discarded (never
    left on disk). ``fetch(url) -> bytes`` replaces the network access (tests). Returns the
    paths of the four files; raises :class:`DataIntegrityError` (bad checksum everywhere) or
    :class:`OSError` (no mirror reachable) otherwise.
    """
    _check_name(name)
    if name not in MIRRORS:
        raise DataError(f"{name!r} is not downloaded (only {', '.join(MIRRORS)} are)")
    fetch = fetch or _urlopen_fetch
    folder = raw_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fname in IDX_FILES.values():
        target = folder / fname
        expected = SHA256[name][fname]
        if target.is_file() and sha256_file(target) == expected:
            paths.append(target)
            continue
        errors: list[str] = []
        bad_checksum = False
        for base in MIRRORS[name]:
            url = base + fname
            try:
                payload = fetch(url)
            except Exception as err:  # any failure: try the next mirror
                errors.append(f"{url}: {type(err).__name__}: {err}")
                continue
            digest = hashlib.sha256(payload).hexdigest()
            if digest != expected:
                bad_checksum = True
                errors.append(f"{url}: SHA-256 {digest}, expected {expected}")
                continue
            atomic_write(target, payload)
            break
        else:
            detail = "\n  ".join(errors)
            msg = f"{name}: could not download {fname} into {folder}/:\n  {detail}"
            raise (DataIntegrityError(msg) if bad_checksum else OSError(msg))
        paths.append(target)
    return paths


# --------------------------------------------------------------------------------------------
# Building the datasets
# --------------------------------------------------------------------------------------------


def _versions(*packages: str) -> dict[str, str]:
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _relevant_versions(name: str) -> dict[str, str]:
    """Library versions the prepared arrays may depend on (part of the reuse key)."""
    extra = {"mnist1d": ("mnist1d", "scipy"), "digits": ("scikit-learn",)}.get(name, ())
    return _versions("numpy", *extra)


def _stratified_holdout(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) with ``round(fraction * len(y))`` held out, stratified by label
    (per-class quotas by largest remainder). Both are sorted (original order)."""
    classes, counts = np.unique(y, return_counts=True)
    n_out = int(round(fraction * len(y)))
    if not 0 < n_out < len(y):
        raise ValueError(f"fraction {fraction} of {len(y)} examples leaves an empty split")
    quotas = counts * fraction
    take = np.floor(quotas).astype(np.int64)
    extra = n_out - int(take.sum())
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[: max(extra, 0)]] += 1
    take = np.minimum(take, counts)
    held = []
    for cls, k in zip(classes, take, strict=True):
        idx = rng.permutation(np.flatnonzero(y == cls))
        held.append(idx[:k])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(y)), held_out)
    return kept, held_out


def _build_mnist1d(split_seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from mnist1d.data import get_dataset_args, make_dataset

    # The canonical MNIST-1D (the generator's own seed), so results compare with the literature;
    # split_seed only chooses the validation hold-out.
    args = get_dataset_args()
    # make_dataset seeds the *global* numpy and random generators: restore them afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}
    args_record = {k: v for k, v in vars(args).items() if k != "url"}
    info = {"generator": "mnist1d.data.make_dataset", "generator_args": args_record}
    return arrays, info


def _build_digits(split_seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data, bunch.target
    rng = np.random.default_rng([int(split_seed), 1])
    train, test = _stratified_holdout(y, DIGITS_TEST_FRACTION, rng)
    info: dict[str, Any] = {
        "source": "sklearn.datasets.load_digits",
        "test_split": f"stratified {DIGITS_TEST_FRACTION} of all, rng default_rng([seed, 1])",
    }
    try:
        csv = Path(str(resources.files("sklearn.datasets.data") / "digits.csv.gz"))
        if csv.is_file():
            info["raw_files"] = {"sklearn/datasets/data/digits.csv.gz": sha256_file(csv)}
    except (ModuleNotFoundError, TypeError):
        pass
    arrays = {"x": x[train], "y": y[train], "x_test": x[test], "y_test": y[test]}
    return arrays, info


def _check_idx_pair(name: str, images: np.ndarray, labels: np.ndarray, split: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataIntegrityError(
            f"{name}: {split} images have shape {images.shape}, expected [n, 28, 28]"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataIntegrityError(
            f"{name}: {split} labels have shape {labels.shape} for {len(images)} images"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataIntegrityError(f"{name}: {split} labels outside 0..{NUM_CLASSES - 1}")


def _build_idx(name: str, root: Path, verify: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    files = find_raw_files(name, root)
    raw_sha = {}
    for path in files.values():
        raw_sha[path.name] = verify_raw_file(name, path) if verify else sha256_file(path)
    a = {role: read_idx(path) for role, path in files.items()}
    _check_idx_pair(name, a["train_images"], a["train_labels"], "train")
    _check_idx_pair(name, a["test_images"], a["test_labels"], "test")
    arrays = {
        "x": a["train_images"].reshape(len(a["train_images"]), -1),
        "y": a["train_labels"],
        "x_test": a["test_images"].reshape(len(a["test_images"]), -1),
        "y_test": a["test_labels"],
    }
    info = {"raw_files": raw_sha, "raw_dir": str(raw_dir(name, root)), "checksums_verified": verify}
    return arrays, info


def _finish(
    arrays: Mapping[str, np.ndarray], val_fraction: float, split_seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Hold out validation from train, standardise with train statistics, cast dtypes."""
    x, y = np.asarray(arrays["x"], np.float64), np.asarray(arrays["y"]).astype(np.int64)
    train, val = _stratified_holdout(y, val_fraction, np.random.default_rng([int(split_seed), 0]))
    mean = float(x[train].mean())
    std = float(x[train].std())
    if not std > 0:
        raise DataIntegrityError("training features are constant (std 0): cannot standardise")

    def feats(v: np.ndarray) -> np.ndarray:
        return ((np.asarray(v, np.float64) - mean) / std).astype(np.float32)

    out = {
        "x_train": feats(x[train]),
        "y_train": y[train].astype(np.int32),
        "x_val": feats(x[val]),
        "y_val": y[val].astype(np.int32),
        "x_test": feats(arrays["x_test"]),
        "y_test": np.asarray(arrays["y_test"]).astype(np.int32),
    }
    stats = {
        "kind": "scalar mean and std over all train features (raw units), after val hold-out",
        "mean": mean,
        "std": std,
    }
    return out, stats


# --------------------------------------------------------------------------------------------
# Files: npz + manifest
# --------------------------------------------------------------------------------------------

_ARRAY_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _stem(name: str, val_fraction: float, split_seed: int) -> str:
    return f"{name}-val{float(val_fraction)!r}-seed{int(split_seed)}"


def processed_path(
    name: str, root: str | Path = "data", val_fraction: float = 0.2, split_seed: int = 0
) -> Path:
    """Where :func:`prepare` writes the npz (the manifest is the same path with ``.json``)."""
    return Path(root) / "processed" / (_stem(name, val_fraction, split_seed) + ".npz")


def manifest_path(npz_path: str | Path) -> Path:
    return Path(npz_path).with_suffix(".json")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """An npz that np.load reads, byte-identical for identical arrays (fixed zip timestamps)."""
    with (
        atomic_open(path, "wb") as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for key in _ARRAY_KEYS:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _array_sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _validate_params(name: str, val_fraction: float, split_seed: int) -> tuple[float, int]:
    _check_name(name)
    vf = float(val_fraction)
    if not 0.0 < vf < 1.0:
        raise DataError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if int(split_seed) != split_seed or split_seed < 0:
        raise DataError(f"split_seed must be a non-negative integer, got {split_seed!r}")
    return vf, int(split_seed)


def _reuse_key(name: str, vf: float, seed: int) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "val_fraction": vf,
        "split_seed": seed,
        "versions": _relevant_versions(name),
    }


def _can_reuse(npz: Path, name: str, vf: float, seed: int, root: Path) -> bool:
    man_path = manifest_path(npz)
    if not (npz.is_file() and man_path.is_file()):
        return False
    try:
        man = json.loads(man_path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(man, dict):
        return False  # a corrupt manifest: the dataset is rebuilt
    key = _reuse_key(name, vf, seed)
    if any(man.get(k) != v for k, v in key.items()):
        return False
    if man.get("npz_sha256") != sha256_file(npz):
        return False
    if name in MIRRORS:  # raw files still present: they must be the ones used
        try:
            files = find_raw_files(name, root)
        except DatasetMissingError:
            return True
        recorded = man.get("source", {}).get("raw_files", {})
        return {p.name: sha256_file(p) for p in files.values()} == recorded
    return True


def prepare(
    name: str,
    root: str | Path = "data",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    download: bool = False,
    force: bool = False,
    verify: bool = True,
) -> Path:
    """Build dataset ``name`` and write ``root/processed/<name>-val<f>-seed<s>.npz`` + manifest.

    An existing file is reused when its manifest matches (parameters, format and library
    versions, npz sha256, and raw-file sha256 if the raw files are present), unless ``force``.
    ``download`` fetches missing MNIST / Fashion-MNIST files first (needs internet).
    ``verify=False`` skips the comparison of gzipped raw files with the published SHA-256.
    Returns the npz path.
    """
    vf, seed = _validate_params(name, val_fraction, split_seed)
    root = Path(root)
    npz = processed_path(name, root, vf, seed)
    if not force and _can_reuse(npz, name, vf, seed, root):
        return npz

    if name == "mnist1d":
        raw, source = _build_mnist1d(seed)
    elif name == "digits":
        raw, source = _build_digits(seed)
    else:
        if download:
            try:
                find_raw_files(name, root)
            except DatasetMissingError:
                download_idx(name, root)
        raw, source = _build_idx(name, root, verify)

    arrays, stats = _finish(raw, vf, seed)
    npz.parent.mkdir(parents=True, exist_ok=True)
    _write_npz(npz, arrays)
    manifest = {
        **_reuse_key(name, vf, seed),
        "npz": npz.name,
        "npz_sha256": sha256_file(npz),
        "arrays": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": _array_sha(v)}
            for k, v in arrays.items()
        },
        "sizes": {s: int(len(arrays[f"y_{s}"])) for s in ("train", "val", "test")},
        "num_classes": NUM_CLASSES,
        "input_shape": list(arrays["x_train"].shape[1:]),
        "split": {
            "val": "stratified hold-out of round(val_fraction * n_train) from the train split, "
            "rng numpy.random.default_rng([split_seed, 0]); original order kept",
            "test": "the dataset's own test split"
            + (" (stratified 20% of load_digits)" if name == "digits" else ""),
        },
        "standardisation": stats,
        "source": source,
        "ganno_version": _versions("ganno")["ganno"],
    }
    atomic_write(manifest_path(npz), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return npz


#: What :func:`load` needs from a manifest.
_MANIFEST_KEYS = ("npz_sha256", "num_classes")


def read_manifest(path: Path, name: str, val_fraction: float, split_seed: int) -> dict[str, Any]:
    """A dataset manifest; a :class:`DataIntegrityError` names the file and the command that
    rebuilds it when it is empty, not JSON, not a mapping or lacks a key :func:`load` needs."""
    try:
        manifest = json.loads(path.read_bytes())
        problem = None if isinstance(manifest, dict) else f"holds a {type(manifest).__name__}"
    except (ValueError, UnicodeDecodeError) as exc:
        problem = "is empty" if not path.stat().st_size else f"is not valid JSON ({exc})"
    if problem is None and (missing := [k for k in _MANIFEST_KEYS if k not in manifest]):
        problem = f"lacks {', '.join(missing)}"
    if problem is not None:
        raise DataIntegrityError(
            f"the dataset manifest {path} {problem}: it is corrupt. Rebuild the dataset with "
            f"`ganno data prepare {name} --force` (val_fraction={val_fraction}, "
            f"split_seed={split_seed})"
        )
    return manifest


def load(
    name: str,
    root: str | Path = "data",
    val_fraction: float = 0.2,
    split_seed: int = 0,
    prepare_if_missing: bool = True,
) -> Dataset:
    """Load a prepared dataset, verifying the npz sha256 against its manifest.

    If the npz or its manifest is absent it is prepared first (without downloading) when
    ``prepare_if_missing``; otherwise :class:`FileNotFoundError` says how to prepare it.
    """
    vf, seed = _validate_params(name, val_fraction, split_seed)
    npz = processed_path(name, root, vf, seed)
    man_path = manifest_path(npz)
    if not (npz.is_file() and man_path.is_file()):
        if not prepare_if_missing:
            raise DatasetMissingError(
                f"{npz} (or its manifest {man_path.name}) not found; run "
                f"`ganno data prepare {name}` (val_fraction={vf}, split_seed={seed})"
            )
        prepare(name, root, vf, seed)
    manifest = read_manifest(man_path, name, vf, seed)
    digest = sha256_file(npz)
    if digest != manifest.get("npz_sha256"):
        raise DataIntegrityError(
            f"{npz}: SHA-256 {digest} does not match its manifest "
            f"({manifest.get('npz_sha256')}); the file was modified or corrupted. "
            f"Rerun `ganno data prepare {name} --force` (val_fraction={vf}, split_seed={seed})."
        )
    with np.load(npz, allow_pickle=False) as f:
        arrays = {k: f[k] for k in _ARRAY_KEYS}
    return Dataset(name=name, num_classes=int(manifest["num_classes"]), **arrays)


def load_from_config(config: Mapping[str, Any]) -> Dataset:
    """Load the dataset named by ``config['task']['dataset']`` with ``config['data']`` settings."""
    task = config.get("task") or {}
    data = config.get("data") or {}
    return load(
        task.get("dataset", "mnist1d"),
        root=data.get("root", "data"),
        val_fraction=data.get("val_fraction", 0.2),
        split_seed=data.get("split_seed", 0),
    )


def task_unavailable_reason(config: Mapping[str, Any], task: str) -> str | None:
    """Why a task cannot run here (its dataset's files are absent), or None if it can."""
    cfg = task_config(config, task)
    name, data = cfg["task"]["dataset"], cfg["data"]
    if name not in ("mnist", "fashion_mnist"):
        return None
    if processed_path(name, data["root"], data["val_fraction"], data["split_seed"]).is_file():
        return None
    try:
        find_raw_files(name, data["root"])
    except DatasetMissingError as exc:
        return str(exc).splitlines()[0]
    return None
