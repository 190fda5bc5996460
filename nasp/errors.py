"""Errors that reach the user as one clear line (no traceback)."""


class NaspError(Exception):
    """A user error: bad input, a missing file, an unusable option.

    The CLI prints ``Error: <message>`` and exits non-zero; library callers can catch it.
    """


class DivergedError(NaspError, ValueError):
    """The search diverged (e.g. architecture values became NaN): one line at the CLI, and still a
    ``ValueError`` for library callers of the pure operators."""
