"""Errors lemonkit raises. Each message is one line a person can act on."""


class LemonkitError(Exception):
    """Base class: the CLI prints these as one line on stderr and exits non-zero."""


class UnsupportedModelError(LemonkitError):
    """The model type has no architecture table."""


class ImpossibleExpansionError(LemonkitError):
    """The requested target cannot be reached losslessly (or at all)."""


class CheckpointError(LemonkitError):
    """The checkpoint on disk is missing, corrupt, unsafe or does not match its config."""
