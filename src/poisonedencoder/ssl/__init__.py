"""Contrastive pre-training: batched augmentation, backbones, NT-Xent, SimCLR, the training loop."""
