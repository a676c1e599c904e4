"""The one exception type that the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: a config key, a dataset name, a file.

    The CLI prints ``error: <message>`` and exits with status 2, never a traceback.
    """
