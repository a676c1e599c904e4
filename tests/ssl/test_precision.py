"""``pretrain.precision: auto`` resolves by the hardware; an explicit bf16 without native bf16 warns once."""
import numpy as np
import pytest

from poisonedencoder import config as C
from poisonedencoder.core.torch_files import load_torch
from poisonedencoder.ssl import precision as P


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend the CPU has (or lacks) native bf16, and forget earlier warnings."""
    monkeypatch.setattr(P, "_warned", set())

    def set_flags(*flags):
        monkeypatch.setattr(P, "cpu_bf16_flags", lambda: tuple(flags))
    return set_flags


def test_auto_is_bf16_with_native_bf16_and_fp32_without(cpu_flags):
    cpu_flags("avx512_bf16")
    assert P.resolve_precision("auto", "cpu") == "bf16"
    assert P.describe("auto", "cpu") == "bf16 (auto: avx512_bf16)"
    cpu_flags()
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert "fp32 (auto: no avx512_bf16" in P.describe("auto", "cpu")
    for flags in ((), ("amx_bf16",)):
        cpu_flags(*flags)
        assert P.resolve_precision("fp32", "cpu") == "fp32" and P.resolve_precision("bf16", "cpu") == "bf16"


def test_explicit_bf16_without_native_bf16_warns_once(cpu_flags):
    cpu_flags()
    lines = []
    for _ in range(3):
        assert P.resolve_precision("bf16", "cpu", warn=lines.append) == "bf16"
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "8x" in lines[0] and "\n" not in lines[0]
    cpu_flags("avx512_bf16")
    P.resolve_precision("bf16", "cpu", warn=lines.append)
    P.resolve_precision("auto", "cpu", warn=lines.append)
    cpu_flags()
    P.resolve_precision("auto", "cpu", warn=lines.append)  # auto never warns: it picks fp32 there
    assert len(lines) == 1


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    import builtins

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(info if f == "/proc/cpuinfo" else f, *a, **k))
    P.cpu_bf16_flags.cache_clear()
    try:
        assert P.cpu_bf16_flags() == ("avx512_bf16",)
    finally:
        P.cpu_bf16_flags.cache_clear()


def test_auto_is_the_default_and_the_run_records_what_it_resolved_to(cpu_flags, tmp_path):
    from test_pretrain import _data

    from poisonedencoder.config import pretrain_identity
    from poisonedencoder.ssl.pretrain import pretrain

    p = C.resolve({"preset": "demo"})["pretrain"]
    assert p["precision"] == "auto"
    p.update(epochs=1, batch_size=16, width=4, image_size=8)
    for flags, want in ((("amx_bf16",), "bf16"), ((), "fp32")):
        cpu_flags(*flags)
        lines = []
        pretrain(_data(), p, tmp_path / want, seed=0, log=lines.append)
        assert load_torch(tmp_path / want / "encoder.pt")["precision"] == want
        assert any(f"precision {want} (auto" in s for s in lines)
        # the cache key holds the resolved precision: auto shares encoders with an explicit setting
        assert pretrain_identity(p) == pretrain_identity(dict(p, precision=want))
    assert np.isfinite(load_torch(tmp_path / "fp32" / "encoder.pt")["loss"]).all()


def test_pretrain_with_bf16_on_a_cpu_without_it_prints_one_warning(cpu_flags, tmp_path, capsys):
    from test_pretrain import _data, _params

    from poisonedencoder.ssl.pretrain import pretrain

    cpu_flags()
    for name in ("a", "b"):  # e.g. the clean and the poisoned encoder of one run
        pretrain(_data(), dict(_params(1), precision="bf16"), tmp_path / name, seed=0, log=lambda _: None)
    err = [s for s in capsys.readouterr().err.splitlines() if s.startswith("warning:")]
    assert len(err) == 1 and "pretrain.precision bf16" in err[0]
