"""Options that more than one command takes, each added in one place."""


def add_trust_torchscript(group) -> None:
    """``--trust-torchscript``, on every command that takes ``--encoder``."""
    group.add_argument("--trust-torchscript", action="store_true",
                       help="load a TorchScript --encoder / --clean-encoder: its code runs when it is loaded and "
                            "called, so give this only for files you trust (a state_dict with --arch is loaded as "
                            "tensors only, and needs no flag)")
