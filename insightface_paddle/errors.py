"""The one exception type the runtime raises for problems a user can cause."""


class InsightFaceError(Exception):
    """Bad input, a missing or corrupt model, a mismatched index: the message names the culprit.

    The CLI prints the message alone (no traceback) and exits non-zero.
    """
