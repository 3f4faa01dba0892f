import gzip

import numpy as np
import pytest

from mnist_demo import data
from mnist_demo.data import (
    DataIntegrityError,
    DataUnavailableError,
    IdxFormatError,
    Source,
    load_mnist,
    one_hot,
    parse_idx,
    to_model_input,
)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dims = np.array(array.shape, dtype=">u4").tobytes()
    dtype = data._IDX_DTYPES[type_code]
    return bytes([0, 0, type_code, array.ndim]) + dims + array.astype(dtype).tobytes()


# --- IDX -------------------------------------------------------------------------------


def test_parse_idx_reads_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(images)), images)
    assert np.array_equal(parse_idx(idx_bytes(labels)), labels)


def test_parse_idx_reads_big_endian_ints():
    values = np.array([[1, -2], [70000, 5]], dtype=np.int32)
    parsed = parse_idx(idx_bytes(values, 0x0C))
    assert parsed.tolist() == values.tolist()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "first two bytes"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX type"),
        (b"\x00\x00\x08\x03\x00\x00", "header is truncated"),
        (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "need 6"),
        (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00", "need 6"),
    ],
)
def test_parse_idx_rejects_malformed_files(raw, message):
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(raw)


# --- verification and the source chain --------------------------------------------------


def as_dict(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def test_real_mnist_has_the_keras_contract(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and x_test.shape == (10000, 28, 28)
    assert y_test.shape == (10000,)
    assert np.bincount(y_test).tolist()[:3] == [980, 1135, 1032]
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]


def test_verify_rejects_a_single_changed_pixel(mnist):
    arrays = as_dict(mnist)
    tampered = arrays["x_test"].copy()
    tampered[0, 14, 14] ^= 1
    with pytest.raises(DataIntegrityError, match="x_test does not match"):
        data.verify({**arrays, "x_test": tampered})


def test_verify_rejects_wrong_shape(mnist):
    arrays = as_dict(mnist)
    with pytest.raises(DataIntegrityError, match="expected uint8"):
        data.verify({**arrays, "y_test": arrays["y_test"][:100]})


def failing(name, exc):
    def fetch(progress):
        raise exc

    return Source(name, fetch)


def test_a_failing_source_moves_on_and_the_winner_is_cached(home, mnist, monkeypatch):
    monkeypatch.setenv("MNIST_DEMO_DATA", str(home / "data"))
    good = Source("good", lambda p: as_dict(mnist))
    wrong = Source("wrong", lambda p: {**as_dict(mnist), "y_train": np.zeros(60000, np.uint8)})
    (x_train, _), _ = load_mnist([failing("offline", OSError("no route")), wrong, good])
    assert np.array_equal(x_train, mnist[0][0])
    cached = home / "data" / data.CACHE_NAME
    assert cached.exists()
    # the cache alone now suffices
    (_, _), (x_test, _) = load_mnist([data.cache_source()])
    assert np.array_equal(x_test, mnist[1][0])


def test_all_sources_failing_gives_one_error_naming_each(home, monkeypatch):
    monkeypatch.setenv("MNIST_DEMO_DATA", str(home / "data"))
    with pytest.raises(DataUnavailableError) as info:
        load_mnist([failing("first", OSError("timed out")), failing("second", ValueError("bad"))])
    message = str(info.value)
    assert "- first: OSError: timed out" in message
    assert "- second: ValueError: bad" in message
    assert str(home / "data" / "mnist.npz") in message  # where to put the file by hand


@pytest.mark.parametrize("damage", ["truncate", "flip_pixel"])
def test_a_corrupt_cache_is_reported_and_rebuilt(home, mnist, monkeypatch, damage):
    monkeypatch.setenv("MNIST_DEMO_DATA", str(home / "data"))
    cache = home / "data" / data.CACHE_NAME
    arrays = as_dict(mnist)
    if damage == "truncate":
        data._atomic_write_npz(cache, arrays)
        cache.write_bytes(cache.read_bytes()[: 1 << 20])
    else:
        tampered = arrays["x_train"].copy()
        tampered[5, 5, 5] = 255 - tampered[5, 5, 5]
        data._atomic_write_npz(cache, {**arrays, "x_train": tampered})
    messages = []
    good = Source("good", lambda p: as_dict(mnist))
    (x_train, _), _ = load_mnist([data.cache_source(), good], progress=messages.append)
    assert np.array_equal(x_train, mnist[0][0])  # never the tampered array
    assert any("corrupt" in m for m in messages)
    load_mnist([data.cache_source()])  # rebuilt: verifies on its own now


def test_hand_placed_gzipped_idx_files_are_a_source(home, mnist, monkeypatch):
    folder = home / "data"
    folder.mkdir(parents=True)
    monkeypatch.setenv("MNIST_DEMO_DATA", str(folder))
    for key, name in data.IDX_NAMES.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(as_dict(mnist)[key])))
    sources = [s for s in data.default_sources() if s.name.startswith("IDX files")]
    (_, y_train), _ = load_mnist(sources)
    assert np.array_equal(y_train, mnist[0][1])
    assert (folder / data.CACHE_NAME).exists()


CHAIN = ["cache", "Keras cache", "IDX files", "Keras download", "npm package"]


@pytest.fixture
def chain(home, mnist, monkeypatch, tmp_path):
    """The default chain with every source watched: `calls` lists the sources that were
    asked, in order; `provide(name)` makes that one source hold the real MNIST (real
    files for the first three; the two downloads are stand-ins that fail unless told)."""
    data_dir, keras_home = home / "data", tmp_path / "keras"
    monkeypatch.setenv("MNIST_DEMO_DATA", str(data_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))  # not the machine's ~/.keras
    calls: list[str] = []
    good: set[str] = set()
    load_npz, from_idx_dir = data._load_npz, data._from_idx_dir

    def watched_load_npz(path):
        where = {data_dir / data.CACHE_NAME: "cache", data.keras_cache_path(): "Keras cache"}
        calls.append(where[path])  # any other path is a KeyError: a failed source
        return load_npz(path)

    def watched_idx_dir(folder):
        assert folder == data_dir
        calls.append("IDX files")
        return from_idx_dir(folder)

    def download(name):
        def fetch(progress):
            calls.append(name)
            if name not in good:
                raise OSError(f"{name}: offline")
            return as_dict(mnist)

        return fetch

    monkeypatch.setattr(data, "_load_npz", watched_load_npz)
    monkeypatch.setattr(data, "_from_idx_dir", watched_idx_dir)
    monkeypatch.setattr(data, "_from_keras_download", download("Keras download"))
    monkeypatch.setattr(data, "_from_npm", download("npm package"))

    def provide(name):
        if name == "cache":
            data._atomic_write_npz(data_dir / data.CACHE_NAME, as_dict(mnist))
        elif name == "Keras cache":
            data._atomic_write_npz(data.keras_cache_path(), as_dict(mnist))
        elif name == "IDX files":
            data_dir.mkdir(parents=True, exist_ok=True)
            for key, idx_name in data.IDX_NAMES.items():
                (data_dir / idx_name).write_bytes(idx_bytes(as_dict(mnist)[key]))
        else:
            good.add(name)

    return calls, provide


def test_default_chain_order_is_cache_first_npm_last(chain):
    """With nothing anywhere, every default source is tried once, in the chain's order;
    the message lists them in that order too."""
    calls, _ = chain
    with pytest.raises(DataUnavailableError) as info:
        load_mnist()
    assert calls == CHAIN
    tried = [line[2:] for line in str(info.value).splitlines() if line.startswith("- ")]
    assert len(tried) == len(CHAIN), tried
    assert all(t.startswith(name) for t, name in zip(tried, CHAIN, strict=True)), tried


@pytest.mark.parametrize("winner", CHAIN)
def test_default_chain_stops_at_the_first_source_that_has_mnist(chain, mnist, home, winner):
    """The sources before the winner are tried in order and fail, the ones after it are
    never asked (with a good cache, nothing else is touched); the winner fills the cache,
    so the next load reads the cache alone."""
    calls, provide = chain
    provide(winner)
    (x_train, _), (_, y_test) = load_mnist()
    assert np.array_equal(x_train, mnist[0][0]) and np.array_equal(y_test, mnist[1][1])
    assert calls == CHAIN[: CHAIN.index(winner) + 1]
    calls.clear()
    load_mnist()
    assert calls == ["cache"]
    assert (home / "data" / data.CACHE_NAME).exists()


# --- shaping for the model --------------------------------------------------------------


def test_to_model_input_reshapes_and_scales():
    images = np.array([[[0, 255], [128, 51]]], dtype=np.uint8).repeat(14, 1).repeat(14, 2)
    x = to_model_input(images)
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert to_model_input(images[0]).shape == (1, 28, 28, 1)
    with pytest.raises(ValueError, match="28x28"):
        to_model_input(np.zeros((2, 27, 28), np.uint8))


def test_one_hot():
    assert one_hot(np.array([0, 9, 3])).tolist()[1] == [0.0] * 9 + [1.0]
    assert one_hot(np.array([2])).sum() == 1.0
    with pytest.raises(ValueError):
        one_hot(np.array([10]))
