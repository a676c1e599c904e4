"""Typed settings: the base of every config section's schema.

Each owner declares its section as a :class:`Settings` subclass beside its code: the toolkit's run
keys (:mod:`.config`), the pre-training data (:mod:`.data.base`), the target downstream tasks
(:mod:`.attack.targets`), the attack budget (:mod:`.attack.base`) and each attack's own section,
the pre-training loop and the augmentation (:mod:`.ssl.settings`), each method's section, each
defense's section, the downstream classifier (:mod:`.downstream`). A field's default is the
schema's default, its ``description`` the comment in docs/CONFIG.md, its annotation the type.

pydantic checks the types, strictly (no coercion: ``"3"`` is not 3, ``true`` is not 1, ``1`` is a
number); :meth:`Settings.parse` turns its errors into the toolkit's one-line
:class:`~.errors.UserError` (``pretrain.lr must be a number, got 'abc'``), then calls the
section's :meth:`Settings.check` for ranges and choices. The config itself stays a plain dict (it is
what run directories store and fingerprints hash); a plugin receives its section parsed.
"""
from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UserError, check_number
from .errors import preview as _preview

Number = Union[int, float]
"""A number field: an integer or a float, kept as written (``0`` stays ``0`` in messages), never a bool."""

AutoOr = Literal["auto"]
"""With ``bool``, a switch that can be left to the machine: ``Union[bool, AutoOr]`` is ``auto``,
``true`` or ``false`` (resolved where the device is known)."""

PATH = "path"
"""Marks a text field that holds a file system path: ``Annotated[str | None, PATH]``."""


ADDED_LATER = "added later"
"""Marks a setting added after runs were recorded, whose default does what the plugin did before
it existed: ``Annotated[str, ADDED_LATER]``. At its default it stays out of the run's fingerprint
(:func:`~poisonedencoder.config.fingerprints.experiment_fingerprint`), so recorded runs keep theirs."""


@dataclass(frozen=True, eq=False)  # eq=False: typing caches Annotated[...] by equality, and Range(0, 1) == Range(0.0, 1.0)
class Range:
    """Marks a number field's range: ``Annotated[Number, Range(0, 1)]`` is in ``[0, 1]``,
    ``Range(0, 1, lo_open=True)`` in ``(0, 1]``; :meth:`Settings.parse` checks it (a null value,
    where the field allows one, is not checked) before the section's own :meth:`Settings.check`."""

    lo: float
    hi: float
    lo_open: bool = False

_WANT = {"boolean": "true or false", "auto or boolean": "auto, true or false", "integer": "an integer", "number": "a number", "text": "text",
         "path": "a path (text)", "list": "a list", "mapping": "a mapping"}


class Settings(BaseModel):
    """One config section's typed settings. Subclasses declare fields (with defaults, descriptions
    and, for numbers, a :class:`Range`) and may override :meth:`check` for what a range cannot say; ``doc`` (class attribute, optional) describes the
    section as a whole in docs/CONFIG.md."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    doc: ClassVar[str] = ""

    def check(self, where: str) -> None:
        """Raise :class:`UserError` for a bad value (types are already right). ``where`` is the
        section's key as the user writes it (``attack.icp``, ``tasks[2]``)."""

    @classmethod
    def parse(cls, values: Any, where: str):
        """``values`` (a section of the config) as this class, checked; :class:`UserError` with one
        line naming the key for a wrong type, an unknown key or a bad value."""
        if not isinstance(values, dict):
            raise UserError(f"{where} must be a mapping, got {_preview(values)}")
        try:
            out = cls.model_validate(values)
        except ValidationError as e:
            raise _user_error(cls, e, values, where) from None
        for key, f in cls.model_fields.items():
            v = getattr(out, key)
            for r in f.metadata:
                if isinstance(r, Range) and v is not None:
                    check_number(v, f"{where}.{key}" if where else key, r.lo, r.hi, cls.kind(key) == "integer", r.lo_open)
        out.check(where)
        return out

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The section's default values, in declaration order (a fresh copy)."""
        return {k: copy.deepcopy(f.default) for k, f in cls.model_fields.items()}

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Each field's description (docs/CONFIG.md's comment), where it has one."""
        return {k: f.description for k, f in cls.model_fields.items() if f.description}

    @classmethod
    def added_later(cls) -> dict[str, Any]:
        """The settings marked :data:`ADDED_LATER`, with their defaults."""
        return {k: f.default for k, f in cls.model_fields.items() if ADDED_LATER in f.metadata}

    @classmethod
    def kind(cls, key: str) -> str:
        """The type of ``key`` in words: boolean, integer, number, text, path, list or mapping."""
        return kind_of(cls.model_fields[key].annotation, PATH in cls.model_fields[key].metadata)


class NoSettings(Settings):
    """The section of a plugin without settings of its own."""


def kind_of(annotation: Any, path: bool = False) -> str:
    """A field's type in words, ``Optional`` and ``Annotated`` looked through."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
        origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if set(args) == {int, float}:
            return "number"
        if set(args) == {bool, AutoOr}:
            return "auto or boolean"
        (annotation,) = args
        origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
        origin = typing.get_origin(annotation)
    if path:
        return "path"
    if origin is list or annotation is list:
        return "list"
    if origin is dict or annotation is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "mapping"
    return {bool: "boolean", int: "integer", float: "number", str: "text"}[annotation]


def _user_error(cls: type[Settings], e: ValidationError, values: dict, where: str) -> UserError:
    err = e.errors()[0]
    loc = err["loc"]
    key = f"{where}.{loc[0]}" if where else str(loc[0])
    if err["type"] == "extra_forbidden":
        return UserError(f"unknown config key {_preview(key)}")
    v = values.get(loc[0])
    if len(loc) > 1 and isinstance(loc[1], int):  # an element of a list
        element = typing.get_args(cls.model_fields[loc[0]].annotation)[0]
        want = "a list of " + {"number": "numbers", "integer": "integers", "text": "texts"}[kind_of(element)]
    else:
        want = _WANT[cls.kind(loc[0])]
    return type_error(key, v, want)


def type_error(key: str, v: Any, want: str) -> UserError:
    """``key must be WANT, got V``; for text that YAML did not read as a number (``1e-3``), how to write it."""
    hint = ""
    if want in ("a number", "a list of numbers") and isinstance(v, str):
        try:
            hint = f" (YAML reads {v} as text; write {float(v)!r})" if "e" in v.lower() and len(v) < 40 else ""
        except ValueError:
            pass
    return UserError(f"{key} must be {want}, got {_preview(v)}{hint}")


def pick(section: dict, settings: type[Settings]) -> dict:
    """The keys of ``section`` that ``settings`` declares."""
    return {k: v for k, v in section.items() if k in settings.model_fields}
