"""The attacker: target inputs, reference inputs, poisoning inputs; PoisonedEncoder and the
baselines behind one interface (:class:`Attack`), by name (``attack.name``)."""
from .base import Attack, PoisoningInput, craft_rng, poisons_per_target
from .duplication import Duplication
from .icp import ICP
from .poisonedencoder import PoisonedEncoder, compose
from .targets import Target, choose_references, select_references, select_targets
from .witches_brew import WitchesBrew

ATTACKS: dict[str, type[Attack]] = {a.name: a for a in (PoisonedEncoder, ICP, WitchesBrew, Duplication)}
"""Attacks by name. Adding one: a module with an :class:`Attack` subclass and a line here."""


def build_attack(a: dict, seed: int = 0) -> Attack:
    """The attack that the config's ``attack`` section names, with its settings checked."""
    from ..core.errors import UserError, preview

    if a["name"] not in ATTACKS:
        raise UserError(f"attack.name: unknown attack {preview(a['name'])}; choose one of {', '.join(ATTACKS)}")
    common = {k: a[k] for k in ("poisoning_rate", "num_references", "reference_selection")}
    return ATTACKS[a["name"]](**common, seed=seed, **a.get(a["name"], {}))


__all__ = ["ATTACKS", "Attack", "PoisoningInput", "PoisonedEncoder", "ICP", "WitchesBrew", "Duplication",
           "build_attack", "choose_references", "compose", "craft_rng", "poisons_per_target", "Target",
           "select_references", "select_targets"]
