"""The one exception type a user can cause.

A user error (bad recipe, missing file, unreachable server, unknown model) raises
:class:`OctoError` with one sentence that says what was wrong and what to do. The CLI
prints it and exits with code 2. Any other exception is a bug and keeps its traceback.
"""


class OctoError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message."""


class ConfigError(OctoError):
    """A recipe value is wrong. ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"recipe key '{key}': {message}" if key else message)
