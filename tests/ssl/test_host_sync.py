"""The pre-training loop reads nothing back from the device per step: the host can run ahead of
a GPU. Counted on the CPU by patching the tensor methods that wait for a device's results
(``item``, ``float()``, ``int()``, ``bool()``, ``tolist``, ``cpu``, ``numpy``) and keeping the calls
made from the loop, the methods, the losses and the models (the views' random parameters are
drawn on the host by design and are not device reads)."""
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from poisonedencoder import config as C
from poisonedencoder.ssl.pretrain import PretrainSet, pretrain

SSL = Path(inspect.getfile(pretrain)).parent
WATCHED = [SSL / "pretrain.py", SSL / "pretrain_set.py", SSL / "step.py", SSL / "losses.py", SSL / "models.py",
           *sorted((SSL / "methods").glob("*.py"))]
READS = ("item", "__float__", "__int__", "__bool__", "tolist", "cpu", "numpy")


def _count_reads(monkeypatch, run) -> int:
    calls = []
    watched = {str(f) for f in WATCHED}
    for name in READS:
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, _orig=orig, **k):
            caller = inspect.currentframe().f_back
            if caller is not None and caller.f_code.co_filename in watched:
                calls.append(caller.f_code.co_filename)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    run()
    monkeypatch.undo()
    return len(calls)


def _data(n):
    rng = np.random.default_rng(0)
    return PretrainSet.from_images(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
                                   [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(4)])


@pytest.mark.parametrize("algorithm", ["simclr", "mocov2", "byol", "simsiam"])
def test_no_device_read_per_step(tmp_path, monkeypatch, algorithm):
    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(algorithm=algorithm, epochs=3, batch_size=8, width=4, image_size=8, precision="fp32",
             checkpoint_every=1, threads=1)
    counts = {}
    for steps in (2, 6):  # the same epochs, three times the steps
        counts[steps] = _count_reads(monkeypatch, lambda s=steps: pretrain(
            _data(8 * s - 4), p, tmp_path / f"{algorithm}_{s}", seed=0, log=lambda _: None))
    assert counts[2] == counts[6], counts  # reads per epoch (log lines, checkpoints), none per step
    assert counts[6] <= 3 * p["epochs"] + 3, counts  # the start line's input statistics, then per epoch


def test_the_loss_history_is_the_per_epoch_mean(tmp_path):
    """Kept on the device and read back late, the per-epoch loss is still each epoch's mean."""
    from poisonedencoder.core.torch_files import load_torch

    p = C.resolve({"preset": "demo"})["pretrain"]
    p.update(epochs=4, batch_size=8, width=4, image_size=8, precision="fp32", checkpoint_every=2, threads=1)
    model = pretrain(_data(28), p, tmp_path / "a", seed=0, log=lambda _: None)
    saved = load_torch(tmp_path / "a" / "encoder.pt")["loss"]
    assert len(saved) == 4 and all(isinstance(v, float) and np.isfinite(v) for v in saved)
    assert load_torch(tmp_path / "a" / "checkpoint.pt")["loss"] == saved
    assert model.timing["resumed_after_epoch"] == 0
