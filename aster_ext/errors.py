"""User-facing errors: one clear line on stderr and exit code 2 at the CLI."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (model, ranges, ε, options); the CLI prints it and exits 2."""


class UnsupportedError(UserError):
    """A node kind or feature that a stage cannot handle yet (names the node and op)."""


class InfeasibleError(UserError):
    """No precision assignment certifies the target; the message names the smallest achievable ε."""

    def __init__(self, message: str, smallest_error: float | None = None, node: str | None = None):
        super().__init__(message)
        self.smallest_error = smallest_error
        self.node = node
