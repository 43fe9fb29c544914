"""The one exception a user's mistake becomes: its message says what, where, and what to do."""


class UserError(Exception):
    """Bad input from a user (a file, a flag, a typed expression); CLIs print it without a traceback."""
