"""poisonedencoder: the PoisonedEncoder data-poisoning attack on contrastive pre-training."""
__version__ = "0.1.0"
