"""Settings that moved out of a section: a config written before the move still resolves, and
one that sets a moved key gets an error naming where it went. Imported by the schema
(:mod:`poisonedencoder.config`) and by the fingerprints, which keep the moved keys at 0 so
that recorded runs keep their identity."""
from __future__ import annotations

from typing import Any

from ..core.errors import UserError, is_number
from ..core.errors import preview as _preview

MOVED_TO_DEFENSES: dict[str, tuple[str, str]] = {
    "view_overlap": ("overlapping_views", "min_overlap"),
    "drop_disagreeing": ("drop_disagreeing", "fraction"),
}
"""Former ``pretrain`` keys, now a defense's settings: key -> (defense, its setting). A config that
sets one gets an error naming the defense; the value 0 (off), which every run directory's
``config.yaml`` written before the move carries, is accepted and dropped, so those configs still
resolve to their runs."""


def drop_moved_keys(section: Any, source: str) -> Any:
    """``section`` (a config's ``pretrain``) without :data:`MOVED_TO_DEFENSES` keys at 0;
    :class:`UserError` for one set to anything else."""
    if not isinstance(section, dict) or not set(section) & set(MOVED_TO_DEFENSES):
        return section
    out = dict(section)
    for key, (defense, setting) in MOVED_TO_DEFENSES.items():
        if key not in out:
            continue
        v = out.pop(key)
        if not (is_number(v) and v == 0):
            raise UserError(f"{source}pretrain.{key} is no longer a pretrain setting: use the defense, "
                            f"defense.name: {defense} with defense.{defense}.{setting}: {_preview(v, 40)}")
    return out
