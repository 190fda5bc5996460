"""Errors that reach the user as one clear line (no traceback)."""


class NaspError(Exception):
    """A user error: bad input, a missing file, an unusable option.

    The CLI prints ``Error: <message>`` and exits non-zero; library callers can catch it.
    """
