from pathlib import Path

import numpy as np
import pytest

from poisonedencoder.data import ImageDataset, ImageSplit


@pytest.fixture
def toy_dataset():
    """4 classes, 8x8 RGB: each class a constant color plus noise; 40 train and 20 test inputs."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = np.arange(n) % 4
        base = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])[labels]
        imgs = base[:, None, None, :] + rng.integers(-20, 20, size=(n, 8, 8, 3))
        return ImageSplit(np.clip(imgs, 0, 255).astype(np.uint8), labels.astype(np.int64))

    return ImageDataset("toy", ["a", "b", "c", "d"], split(40), split(20))


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def _write_idx(path, arr):
    """Write ``arr`` as a gzipped IDX file (the MNIST / Fashion-MNIST format)."""
    import gzip

    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def write_idx():
    return _write_idx


def _bomb_png(path, width=100_000, height=100_000):
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's shape), a few bytes long."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def bomb_png():
    return _bomb_png


@pytest.fixture
def tiny_surrogate():
    """A small untrained surrogate model (the demo preset's SimCLR, width 4) for attacks that need one."""
    import torch

    from poisonedencoder import config as C
    from poisonedencoder.attack.witches_brew import Surrogate
    from poisonedencoder.ssl.augment import AugmentParams
    from poisonedencoder.ssl.methods import build_method

    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(width=4, image_size=8)
    torch.manual_seed(0)
    return Surrogate(build_method(p), AugmentParams(size=8, crop_scale=(0.5, 1.0)))


def _race(work, n: int = 2, timeout: float = 120) -> list:
    """Run ``work(i)`` for ``i < n`` in threads released at once; the exceptions they raised."""
    import threading

    start, errors = threading.Barrier(n), []

    def go(i):
        try:
            start.wait()
            work(i)
        except Exception as e:  # noqa: BLE001 (returned to the test)
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


@pytest.fixture
def race():
    return _race


@pytest.fixture
def slow_pretrain(monkeypatch):
    """``ssl.pretrain.pretrain`` replaced by a 1-second stand-in that writes a tiny encoder and
    counts its calls (``calls``: their ``desc``) and the most that ran at once (``most[0]``)."""
    import threading
    import time
    from pathlib import Path
    from types import SimpleNamespace

    import torch

    import poisonedencoder.ssl.pretrain as P
    from poisonedencoder.core.torch_files import save_torch

    state = SimpleNamespace(calls=[], most=[0], active=[0], guard=threading.Lock())

    def fake(data, p, d, seed, device, desc="", log=None):  # noqa: ARG001 (pretrain's signature)
        with state.guard:
            state.calls.append(desc)
            state.active[0] += 1
            state.most[0] = max(state.most[0], state.active[0])
        time.sleep(1.0)
        save_torch(Path(d) / "encoder.pt", {"backbone": {"w": torch.zeros(1)}, "loss": [1.0]})
        with state.guard:
            state.active[0] -= 1

    monkeypatch.setattr(P, "pretrain", fake)
    return state


@pytest.fixture
def finished_run():
    """A function that makes ``run`` look like a finished run of ``cfg`` (its config.yaml, its
    fingerprint and an empty metrics.json): what ``claims --record`` copies."""
    from poisonedencoder import config as C

    def make(run: Path, cfg: dict) -> Path:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(C.dump(cfg))
        (run / ".fingerprint").write_text(C.experiment_fingerprint(cfg) + "\n")
        (run / "metrics.json").write_text("{}")
        return run

    return make


@pytest.fixture
def load_file():
    """A function that imports a script or benchmark file (``scripts/x.py``) as a module."""
    import importlib.util

    def load(path: Path):
        spec = importlib.util.spec_from_file_location(Path(path).stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
