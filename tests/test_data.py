"""Tests of ganno.data: IDX files, MNIST-style preparation, checksums, mnist1d and digits."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from ganno import data
from ganno.data import (
    DATASETS,
    DataIntegrityError,
    DatasetMissingError,
    IdxFormatError,
    download_idx,
    load,
    load_from_config,
    prepare,
    read_idx,
    write_idx,
)

# ------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    write_idx(tmp_path / f"img{suffix}", images)
    write_idx(tmp_path / f"lab{suffix}", labels)
    got_images, got_labels = (
        read_idx(tmp_path / f"img{suffix}"),
        read_idx(tmp_path / f"lab{suffix}"),
    )
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    head = (tmp_path / f"img{suffix}").read_bytes()
    if suffix:
        head = gzip.decompress(head)
    assert head[:4] == b"\x00\x00\x08\x03"  # the real MNIST image magic number


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.float32, np.float64, np.dtype(">i4")]
)
def test_idx_other_dtypes(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", a)
    b = read_idx(tmp_path / "a.idx")
    assert b.dtype.isnative and b.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(a, b)


def test_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "a.idx", np.zeros(3, np.int64))


def test_idx_corrupt_files(tmp_path):
    images = np.zeros((5, 28, 28), np.uint8)
    write_idx(tmp_path / "ok", images)
    raw = (tmp_path / "ok").read_bytes()

    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(raw + b"\x00")
    with pytest.raises(IdxFormatError, match="trailing"):
        read_idx(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\x01\x00" + raw[2:])
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "code").write_bytes(b"\x00\x00\x07" + raw[3:])
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(tmp_path / "code")
    (tmp_path / "header").write_bytes(raw[:9])
    with pytest.raises(IdxFormatError, match="header"):
        read_idx(tmp_path / "header")
    gz = gzip.compress(raw)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(tmp_path / "cut.gz")
    # IdxFormatError is a ValueError, so callers can catch it generically
    assert issubclass(IdxFormatError, ValueError)


# --------------------------------------------------------------------- fake MNIST end to end

N_TRAIN, N_TEST = 60, 20


def _write_fake_idx(folder, gz=True, seed=0):
    """Tiny MNIST-like files; returns {filename: sha256} of what was written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(N_TEST) % 10).astype(np.uint8),
    }
    shas = {}
    for fname, a in arrays.items():
        path = folder / (fname if gz else fname.removesuffix(".gz"))
        write_idx(path, a)
        shas[fname] = hashlib.sha256(path.read_bytes()).hexdigest()
    return arrays, shas


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    arrays, shas = _write_fake_idx(tmp_path / "raw" / "mnist")
    monkeypatch.setitem(data.SHA256, "mnist", shas)
    return tmp_path, arrays, shas


def test_mnist_prepare_and_load(fake_mnist):
    root, raw, shas = fake_mnist
    npz = prepare("mnist", root=root, val_fraction=0.25, split_seed=3)
    assert npz == root / "processed" / "mnist-val0.25-seed3.npz"
    ds = load("mnist", root=root, val_fraction=0.25, split_seed=3, prepare_if_missing=False)

    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (784,)
    assert ds.x_train.shape == (45, 784) and ds.x_val.shape == (15, 784)
    assert ds.x_test.shape == (N_TEST, 784)
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        assert x.dtype == np.float32 and y.dtype == np.int32 and len(x) == len(y)

    # train and val partition the original training set (match rows back to raw images)
    flat = raw["train-images-idx3-ubyte.gz"].reshape(N_TRAIN, -1).astype(np.float64)
    man = json.loads(npz.with_suffix(".json").read_text())
    mean, std = man["standardisation"]["mean"], man["standardisation"]["std"]
    restored = np.rint(np.concatenate([ds.x_train, ds.x_val]) * std + mean).astype(np.float64)
    index = {row.tobytes(): i for i, row in enumerate(flat)}
    idx = [index[r.tobytes()] for r in restored]
    assert sorted(idx) == list(range(N_TRAIN))  # disjoint and complete
    train_idx = np.array(idx[:45])
    np.testing.assert_array_equal(ds.y_train, raw["train-labels-idx1-ubyte.gz"][train_idx])
    # stratified: 60 examples, 6 per class -> 1.5 per class held out, 15 in all
    assert np.bincount(ds.y_val, minlength=10).max() <= 2

    # standardisation fitted on train only, applied to val/test with the same statistics
    assert abs(float(ds.x_train.mean())) < 1e-5 and abs(float(ds.x_train.std()) - 1) < 1e-5
    assert mean == pytest.approx(flat[train_idx].mean()) and std == pytest.approx(
        flat[train_idx].std()
    )
    test_flat = raw["t10k-images-idx3-ubyte.gz"].reshape(N_TEST, -1)
    np.testing.assert_allclose(ds.x_test, (test_flat - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.y_test, raw["t10k-labels-idx1-ubyte.gz"])

    # manifest contents
    assert man["name"] == "mnist" and man["val_fraction"] == 0.25 and man["split_seed"] == 3
    assert man["sizes"] == {"train": 45, "val": 15, "test": N_TEST}
    assert man["npz_sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert man["source"]["raw_files"] == shas
    assert man["source"]["checksums_verified"] is True
    assert man["input_shape"] == [784] and man["num_classes"] == 10
    assert "numpy" in man["versions"]
    assert man["arrays"]["x_train"]["shape"] == [45, 784]


def test_mnist_reuse_force_and_reproducible(fake_mnist):
    root, _, _ = fake_mnist
    npz = prepare("mnist", root=root)
    first = npz.read_bytes()
    mtime = npz.stat().st_mtime_ns
    assert prepare("mnist", root=root) == npz and npz.stat().st_mtime_ns == mtime  # reused
    npz.unlink()
    prepare("mnist", root=root)
    assert npz.read_bytes() == first  # byte-identical rebuild, same sha256
    prepare("mnist", root=root, force=True)
    assert npz.read_bytes() == first
    other = prepare("mnist", root=root, split_seed=1)
    assert other != npz and other.read_bytes() != first


def test_mnist_plain_files_accepted(tmp_path):
    _write_fake_idx(tmp_path / "raw" / "mnist", gz=False)
    ds = load("mnist", root=tmp_path)  # un-gzipped: no published checksum, structure checked
    assert ds.x_train.shape[1:] == (784,) and len(ds.y_test) == N_TEST


def test_mnist_wrong_checksum_rejected(fake_mnist, monkeypatch):
    root, _, shas = fake_mnist
    bad = dict(shas, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})
    monkeypatch.setitem(data.SHA256, "mnist", bad)
    with pytest.raises(DataIntegrityError, match="t10k-labels-idx1-ubyte.gz") as err:
        prepare("mnist", root=root)
    assert "verify=False" in str(err.value) and "0" * 64 in str(err.value)
    assert not (root / "processed" / "mnist-val0.2-seed0.npz").exists()
    # documented escape hatch
    npz = prepare("mnist", root=root, verify=False)
    man = json.loads(npz.with_suffix(".json").read_text())
    assert man["source"]["checksums_verified"] is False


def test_real_checksum_table_rejects_fake_files(tmp_path):
    _write_fake_idx(tmp_path / "raw" / "fashion_mnist")
    with pytest.raises(DataIntegrityError, match="SHA-256 mismatch"):
        prepare("fashion_mnist", root=tmp_path)


def test_checksum_table_shape():
    for name in ("mnist", "fashion_mnist"):
        assert set(data.SHA256[name]) == set(data.IDX_FILES.values())
        assert all(len(v) == 64 and int(v, 16) >= 0 for v in data.SHA256[name].values())
    assert data.SHA256["mnist"]["train-images-idx3-ubyte.gz"].startswith("440fcabf")
    assert data.SHA256["fashion_mnist"]["train-images-idx3-ubyte.gz"].startswith("3aede38d")


def test_inconsistent_idx_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "raw" / "mnist"
    _, shas = _write_fake_idx(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(N_TEST + 1, np.uint8))
    shas["t10k-labels-idx1-ubyte.gz"] = data.sha256_file(folder / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setitem(data.SHA256, "mnist", shas)
    with pytest.raises(DataIntegrityError, match="labels"):
        prepare("mnist", root=tmp_path)


def test_missing_mnist_files(tmp_path):
    folder = tmp_path / "raw" / "mnist"
    with pytest.raises(DatasetMissingError) as err:
        load("mnist", root=tmp_path)
    msg = str(err.value)
    for fname in data.IDX_FILES.values():
        assert fname in msg
    assert str(folder) in msg and "ganno data prepare mnist --download" in msg
    assert "https://" in msg
    assert isinstance(err.value, FileNotFoundError)

    # only one file missing -> only that one named
    _write_fake_idx(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetMissingError) as err:
        prepare("mnist", root=tmp_path)
    assert "train-labels-idx1-ubyte.gz" in str(err.value)
    assert "t10k-images-idx3-ubyte.gz" not in str(err.value)


def test_load_without_prepare(tmp_path):
    with pytest.raises(FileNotFoundError, match="ganno data prepare digits"):
        load("digits", root=tmp_path, prepare_if_missing=False)


def test_unknown_dataset_and_bad_params(tmp_path):
    with pytest.raises(ValueError, match="mnist1d, digits, mnist, fashion_mnist"):
        prepare("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="cifar10"):
        load("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="val_fraction"):
        prepare("digits", root=tmp_path, val_fraction=1.0)
    assert DATASETS == ("mnist1d", "digits", "mnist", "fashion_mnist")


# ------------------------------------------------------------------------------ downloader


def test_download_with_fake_fetch(tmp_path, monkeypatch):
    src = tmp_path / "server"
    _, shas = _write_fake_idx(src)
    monkeypatch.setitem(data.SHA256, "mnist", shas)
    calls = []

    def fetch(url):
        calls.append(url)
        return (src / url.rsplit("/", 1)[1]).read_bytes()

    paths = download_idx("mnist", tmp_path / "root", fetch=fetch)
    assert [p.name for p in paths] == list(data.IDX_FILES.values())
    assert all(p.parent == tmp_path / "root" / "raw" / "mnist" for p in paths)
    assert all(u.startswith(data.MIRRORS["mnist"][0]) for u in calls) and len(calls) == 4
    assert not list(paths[0].parent.glob("*.part"))
    # present and correct: nothing fetched again
    download_idx("mnist", tmp_path / "root", fetch=fetch)
    assert len(calls) == 4
    ds = load("mnist", root=tmp_path / "root")
    assert ds.input_shape == (784,)


def test_download_bad_checksum_not_kept(tmp_path, monkeypatch):
    src = tmp_path / "server"
    _, shas = _write_fake_idx(src)
    monkeypatch.setitem(data.SHA256, "mnist", shas)
    target = tmp_path / "root" / "raw" / "mnist"

    def corrupt(url):
        payload = (src / url.rsplit("/", 1)[1]).read_bytes()
        return payload[:-1] + bytes([payload[-1] ^ 1]) if "t10k-images" in url else payload

    with pytest.raises(DataIntegrityError, match="t10k-images-idx3-ubyte.gz"):
        download_idx("mnist", tmp_path / "root", fetch=corrupt)
    assert not (target / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(target.glob("*.part"))

    # first mirror down, second mirror good -> success
    def flaky(url):
        if url.startswith(data.MIRRORS["mnist"][0]):
            raise OSError("connection refused")
        return (src / url.rsplit("/", 1)[1]).read_bytes()

    paths = download_idx("mnist", tmp_path / "root", fetch=flaky)
    assert all(p.is_file() for p in paths)

    def offline(url):
        raise OSError("no network")

    with pytest.raises(OSError, match="no network"):
        download_idx("fashion_mnist", tmp_path / "root", fetch=offline)


def test_prepare_download_flag_uses_urlopen(tmp_path, monkeypatch):
    src = tmp_path / "server"
    _, shas = _write_fake_idx(src)
    monkeypatch.setitem(data.SHA256, "fashion_mnist", shas)
    monkeypatch.setattr(
        data, "_urlopen_fetch", lambda url: (src / url.rsplit("/", 1)[1]).read_bytes()
    )
    prepare("fashion_mnist", root=tmp_path / "r", download=True)
    ds = load("fashion_mnist", root=tmp_path / "r", prepare_if_missing=False)
    assert ds.name == "fashion_mnist" and len(ds.y_test) == N_TEST


# ---------------------------------------------------------------------------------- mnist1d


@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("m1d")
    prepare("mnist1d", root=root)
    return root


def test_mnist1d_shapes_and_sizes(mnist1d_root):
    ds = load("mnist1d", root=mnist1d_root, prepare_if_missing=False)
    assert ds.input_shape == (40,) and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_val) == 4000 and len(ds.x_val) == 800
    assert ds.x_test.shape == (1000, 40)
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-4
    man = json.loads((mnist1d_root / "processed" / "mnist1d-val0.2-seed0.json").read_text())
    assert man["source"]["generator_args"]["seed"] == 42  # the canonical MNIST-1D
    assert man["sizes"] == {"train": 3200, "val": 800, "test": 1000}
    assert "mnist1d" in man["versions"]


def test_mnist1d_deterministic(mnist1d_root, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the generator must write nothing into the working directory
    np.random.seed(123)  # global state must not matter, and must be left as it was
    state = np.random.get_state()[1].copy()
    npz = prepare("mnist1d", root=tmp_path / "root")
    ref = mnist1d_root / "processed" / "mnist1d-val0.2-seed0.npz"
    assert npz.read_bytes() == ref.read_bytes()
    assert list(cwd.iterdir()) == []
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    # Another split seed: the same canonical test set, another validation hold-out.
    other = load("mnist1d", root=tmp_path / "root", split_seed=1)
    ref_ds = load("mnist1d", root=mnist1d_root)
    np.testing.assert_array_equal(other.y_test, ref_ds.y_test)
    assert not np.array_equal(other.y_val, ref_ds.y_val)


def test_mnist1d_tampered_npz_detected(mnist1d_root, tmp_path):
    import shutil

    shutil.copytree(mnist1d_root / "processed", tmp_path / "processed")
    npz = tmp_path / "processed" / "mnist1d-val0.2-seed0.npz"
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["y_test"][0] = (arrays["y_test"][0] + 1) % 10
    np.savez(npz, **arrays)
    with pytest.raises(DataIntegrityError, match="ganno data prepare mnist1d --force"):
        load("mnist1d", root=tmp_path)
    # prepare notices the mismatch and rebuilds; load then works
    prepare("mnist1d", root=tmp_path)
    assert load("mnist1d", root=tmp_path).y_test[0] != arrays["y_test"][0]


# ----------------------------------------------------------------------------------- digits


def test_digits(tmp_path):
    ds = load_from_config(
        {"task": {"dataset": "digits"}, "data": {"root": str(tmp_path), "split_seed": 2}}
    )
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (64,)
    n = len(ds.y_train) + len(ds.y_val) + len(ds.y_test)
    assert n == 1797 and len(ds.y_test) == round(0.2 * 1797)
    assert len(ds.y_val) == round(0.2 * (1797 - len(ds.y_test)))
    # the three splits partition load_digits (as a multiset of rows, since a few images repeat)
    from sklearn.datasets import load_digits

    man = json.loads((tmp_path / "processed" / "digits-val0.2-seed2.json").read_text())
    mean, std = man["standardisation"]["mean"], man["standardisation"]["std"]
    restored = np.rint(np.concatenate([ds.x_train, ds.x_val, ds.x_test]) * std + mean).astype(
        np.float64
    )
    raw = load_digits().data
    assert sorted(r.tobytes() for r in restored) == sorted(r.tobytes() for r in raw)
    assert man["sizes"]["test"] == len(ds.y_test) and sum(man["sizes"].values()) == 1797
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert set(np.unique(y)) == set(range(10))
    other = load("digits", root=tmp_path, split_seed=3)
    assert not np.array_equal(other.y_test, ds.y_test)
