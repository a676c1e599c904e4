"""Encoders trained anywhere, loaded for evaluation (``poisonedencoder evaluate --encoder PATH``).

One job: turn a file into a module that takes images in [0, 1] (``(N, 3, H, W)``) and returns
features ``(N, D)``, and say what was loaded (:func:`load_encoder`). Two kinds of file:

* **TorchScript** (``torch.jit.save`` of a scripted or traced model): loaded with
  ``torch.jit.load``, only where the caller says it trusts the file (``--trust-torchscript``,
  ``trust_torchscript=True``): it carries its architecture as code, which runs when it is loaded
  and every time it is called (it can read or write files, or loop forever).
* **state_dict** (``torch.save(model.state_dict())``, or a checkpoint that holds one under
  ``state_dict`` or ``model``; the toolkit's ``encoder.pt`` under ``backbone``): loaded with
  ``torch.load(weights_only=True)`` (tensors only, nothing executed) into the architecture named by
  ``arch`` (:func:`arch_names`). Key prefixes of wrappers (``module.`` of DataParallel, ``backbone.``,
  ``encoder.``, ``model.``, and chains of two) are stripped where that makes the keys fit; keys
  outside the chosen prefix (a projection head) are left out. ``prefix`` names the prefix
  instead. Keys that still do not fit are a :class:`UserError` naming the first missing and the
  first unexpected key. A file that is not ``torch.save``'s format (a plain pickle, which only
  unpickling could read) is refused before anything reads it.

Weights or features that hold NaN or Inf are refused: classifiers on them measure nothing.

Normalization: the module applies ``normalize`` (:data:`NORMALIZE`) to the [0, 1] images before
the encoder. The default is ``none`` for an encoder that stores its own input statistics (the
toolkit's backbones: buffers ``input_mean`` and ``input_std``, also inside a TorchScript export of
them; see ``ssl/models.InputNorm``) and ``imagenet`` otherwise, because the usual pipelines
(torchvision's references, timm, lightly's transforms) normalize with ImageNet's statistics.
"""
from __future__ import annotations

import itertools
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..core.errors import UserError
from ..core.io import sha256_file
from .architectures import TIMM, TORCHVISION, arch_names, build_arch, toolkit_archs  # noqa: F401 (names of this module's API)

def __getattr__(name: str):
    if name == "ARCHS":  # the names of arch_names(), read from the registry when asked
        return tuple(arch_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


PREFIXES = ("module.", "backbone.", "encoder.", "model.")
NESTS = ("state_dict", "model", "backbone")
NORMALIZE = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
             "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
             "none": None}
_OPTIONAL = ("input_mean", "input_std", "num_batches_tracked")  # may be absent from a file


class OutsideEncoder(nn.Module):
    """An encoder behind the toolkit's interface: images in [0, 1] -> ``normalize`` -> ``module`` ->
    features flattened to ``(N, D)`` (a backbone cut before its ``fc`` often returns ``(N, D, 1, 1)``)."""

    def __init__(self, module: nn.Module, normalize: str = "none"):
        super().__init__()
        if normalize not in NORMALIZE:
            raise UserError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        self.module, self.normalize = module, normalize
        stats = NORMALIZE[normalize] or ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        self.register_buffer("mean", torch.tensor(stats[0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(stats[1]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize != "none":
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        f = self.module(x)
        if not isinstance(f, torch.Tensor):
            raise UserError(f"the encoder returned {type(f).__name__}, not a tensor of features; export the backbone "
                            f"alone (no head, one output)")
        return f.flatten(1)


sha256 = sha256_file  # the file's sha256, recorded with what was loaded


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``code/`` and ``constants.pkl``; a
    ``torch.save`` file is a zip with ``data.pkl`` only)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/")[-1] == "constants.pkl" for n in z.namelist())


def _unnest(obj, path: Path) -> dict:
    """The mapping of tensors in a loaded file: the file itself, or one nested under :data:`NESTS`."""
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in NESTS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    raise UserError(f"{path} holds no state_dict (a mapping of names to tensors, or one under "
                    f"{', '.join(repr(k) for k in NESTS)}); for a whole model, save it as TorchScript")


def _candidates() -> list[str]:
    return [""] + list(PREFIXES) + ["".join(c) for c in itertools.permutations(PREFIXES, 2)]


def _fit(sd: dict, expected: set[str], prefix: str | None, path: Path) -> tuple[dict, str]:
    """The keys of ``sd`` under ``prefix`` with it stripped; without ``prefix``, under the candidate
    prefix that fits the most expected keys (on a tie, the longest that every key has, so that a
    mismatch is reported in the architecture's terms)."""
    def under(p: str) -> dict:
        return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}

    if prefix is not None:
        sub = under(prefix)
        if not sub:
            raise UserError(f"no key of {path} starts with --prefix {prefix!r} (its first key: {next(iter(sd))!r})")
        return sub, prefix
    best = max(_candidates(), key=lambda p: (len(set(under(p)) & expected), len(under(p)) == len(sd), len(p)))
    return under(best), best


def _load_weights(path: Path):
    """``torch.load(weights_only=True)``: tensors and plain containers, nothing executed (torch's
    warnings about the file's pickle protocol are not shown: what is wrong is the one error)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        from ..core.torch_files import describe_torch_file

        raise UserError(f"cannot load {path} as a state_dict of tensors: it {describe_torch_file(path)}; "
                        f"save the weights with torch.save(model.state_dict(), ...) or the model as TorchScript") from e


def _uses_width(arch: str) -> bool:
    """Whether ``arch`` is a toolkit backbone built at ``--width`` (cnn7, resnet18w)."""
    from ..ssl.models import uses_width

    toolkit = toolkit_archs()
    return arch in toolkit and uses_width(toolkit[arch])


def _load_state_dict(path: Path, arch: str, width: int, prefix: str | None) -> tuple[nn.Module, dict]:
    model = build_arch(arch, width)
    sd = _unnest(_load_weights(path), path)
    own = model.state_dict()
    expected = set(own)
    sub, used = _fit(sd, expected, prefix, path)
    if arch in TORCHVISION:  # the classifier head of a supervised or linear-probed checkpoint
        sub = {k: v for k, v in sub.items() if not k.startswith("fc.")}
    missing = sorted(k for k in expected - set(sub) if k.split(".")[-1] not in _OPTIONAL)
    unexpected = sorted(set(sub) - expected)
    with_width = _uses_width(arch)
    what = f"--arch {arch}" + (f" --width {width}" if with_width else "")
    # a backbone the toolkit trained (it saves its input statistics) given torchvision's name
    hint = (f"; the toolkit's {arch} is --arch {arch}-cifar"
            if arch in TORCHVISION and f"{arch}-cifar" in toolkit_archs() and "input_mean" in sub else "")
    if missing or unexpected:
        raise UserError(f"{path} does not fit {what} (keys after stripping prefix {used!r}): missing key "
                        f"{repr(missing[0]) if missing else 'none'} ({len(missing)} missing), unexpected key "
                        f"{repr(unexpected[0]) if unexpected else 'none'} ({len(unexpected)} unexpected){hint}")
    for k, v in sub.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError(f"{path} does not fit {what}: {k} has shape {tuple(v.shape)} in the file and "
                            f"{tuple(own[k].shape)} in the model{hint}")
    has_stats = "input_mean" in sub and "input_std" in sub
    if "input_mean" in own and not has_stats:
        # the toolkit's architecture trained elsewhere without its statistics: it did not normalize
        # inside (its load would fall back to CIFAR-10's), so normalization is --normalize alone
        sub = {**sub, "input_mean": torch.zeros(3), "input_std": torch.ones(3)}
    model.load_state_dict(sub, strict=False)
    return model, {"format": "state_dict", "arch": arch, **({"width": width} if with_width else {}),
                   "prefix": used, "own_input_stats": has_stats}


def _load_torchscript(path: Path) -> tuple[nn.Module, dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
            m = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        from ..core.torch_files import describe_torch_file

        why = describe_torch_file(path)
        raise UserError(f"cannot load TorchScript file {path}: it "
                        f"{why if 'TorchScript' not in why else 'is a damaged TorchScript archive'}") from e
    names = {n.split(".")[-1] for n, _ in m.named_buffers()}
    return m, {"format": "torchscript", "own_input_stats": {"input_mean", "input_std"} <= names}


TRUST_TORCHSCRIPT = ("loading it runs the code stored in the file, and so does every call of it (code that "
                     "can do anything, loop forever included)")
"""Why a TorchScript file is loaded only when asked (``--trust-torchscript``, ``trust_torchscript=True``)."""


def _check_finite_weights(module: nn.Module, path: Path) -> None:
    """A :class:`UserError` naming the first weight or buffer of ``module`` that holds NaN or Inf."""
    for name, t in module.state_dict().items():
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise UserError(f"encoder {path} has NaN or Inf weights ({name}: {bad} of {t.numel()} values): refused, "
                                "since its features would measure nothing (a training that diverged?)")


def load_encoder(path: str | Path, arch: str | None = None, width: int = 32, prefix: str | None = None,
                 normalize: str | None = None, image_size: int = 32,
                 trust_torchscript: bool = False) -> tuple[OutsideEncoder, dict]:
    """Load the encoder at ``path`` (TorchScript, or a state_dict of ``arch``), wrap it with its input
    normalization (:class:`OutsideEncoder`) and check it on a batch of ``image_size`` images.

    A TorchScript file is refused unless ``trust_torchscript`` (:data:`TRUST_TORCHSCRIPT`); a plain
    pickle (not ``torch.save``'s format) is refused before anything reads it; weights or features
    of the check batch that hold NaN or Inf are refused.

    Returns the module (eval mode) and what was loaded: ``path``, ``sha256``, ``format``, ``arch``,
    ``prefix``, ``normalize``, ``feature_dim`` (also kept as the module's ``source``, which
    :func:`poisonedencoder.api.evaluate_encoder` records). Every problem is a one-line :class:`UserError`."""
    from ..core.torch_files import describe_torch_file, is_torch_save

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"encoder file {p} does not exist")
    if normalize is not None and normalize not in NORMALIZE:
        raise UserError(f"--normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    if is_torchscript(p):
        if not trust_torchscript:
            raise UserError(f"encoder {p} is TorchScript: {TRUST_TORCHSCRIPT}; give --trust-torchscript "
                            f"(trust_torchscript=True in Python) if you trust where it comes from, or save its "
                            f"weights with torch.save(model.state_dict(), ...) and give --arch: a state_dict is "
                            f"loaded as tensors only")
        module, info = _load_torchscript(p)
    elif not is_torch_save(p):
        raise UserError(f"cannot load encoder {p}: it {describe_torch_file(p)}; save the weights with "
                        f"torch.save(model.state_dict(), ...)")
    elif arch is None:
        raise UserError(f"{p} is a state_dict, which holds no architecture: give --arch ({', '.join(arch_names())}), "
                        f"or save the model as TorchScript")
    else:
        module, info = _load_state_dict(p, arch, width, prefix)
    _check_finite_weights(module, p)
    chosen = normalize or ("none" if info["own_input_stats"] else "imagenet")
    enc = OutsideEncoder(module, chosen).eval()
    try:
        with torch.no_grad():
            f = enc(torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)))
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"encoder {p} fails on a batch of 2x3x{image_size}x{image_size} images in [0, 1] "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    if f.ndim != 2 or f.shape[0] != 2:
        raise UserError(f"encoder {p} returned features of shape {tuple(f.shape)} for 2 images")
    if not torch.isfinite(f).all():
        raise UserError(f"encoder {p} returns NaN or Inf features for a batch of 2 images in [0, 1]: refused, since "
                        "classifiers on them measure nothing")
    enc.source = {"path": str(p.absolute()), "sha256": sha256(p), **info, "normalize": chosen,
                  "feature_dim": int(f.shape[1])}  # recorded by evaluate_encoder
    return enc, enc.source
