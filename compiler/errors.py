"""The errors tierplan raises on purpose, and the exit code each maps to.

Every failure a user can cause (a bad file, an unbound dimension, a plan that does
not fit) is a :class:`TierplanError` with a one-line message; the CLI prints that
line and exits with :attr:`TierplanError.exit_code`. Anything else is a bug.
"""

from __future__ import annotations


class TierplanError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code: int = 2


class InputError(TierplanError):
    """The model, target, options or plan file given to tierplan are unusable."""


class PipelineError(TierplanError):
    """The pass pipeline is malformed (unknown pass, missing requirement, bad option)."""


class PassFailure(TierplanError):
    """A pass could not do its job on this graph (for example, it does not fit)."""

    exit_code = 1


class InvariantError(TierplanError):
    """The IR broke one of its invariants (a pass has a bug, or a plugin misbehaved)."""

    exit_code = 3
