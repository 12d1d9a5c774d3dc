"""Errors a user can cause; each message is one clear line. Stdlib-free so that the
agent kit can import it for nothing."""


class QqError(Exception):
    """An error a user can cause; its message is one clear line."""


class NotFoundError(QqError):
    pass


class IllegalTransitionError(QqError):
    pass


class UpdateConflictError(QqError):
    """A conditional update lost its race more times than we retry."""


class StaleClaimError(QqError):
    """The caller no longer owns the run (its claim token was superseded)."""
