"""The attacker: target inputs, reference inputs, poisoning inputs."""
from .poisonedencoder import PoisonedEncoder, PoisoningInput, compose
from .targets import Target, select_references, select_targets

__all__ = ["PoisonedEncoder", "PoisoningInput", "compose", "Target", "select_references", "select_targets"]
