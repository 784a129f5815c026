"""Exceptions the library raises; the UI and CLI turn them into readable messages."""


class LmdemoError(Exception):
    """Base class: the message is meant for the user, one line, naming the bad input."""


class ModelNotFoundError(LmdemoError):
    """A model name, Hub id or folder could not be resolved to loadable weights."""


class StoreError(LmdemoError):
    """Fetching or converting a built-in model failed."""


class AdapterError(LmdemoError):
    """An adapter folder is missing, unsafe or does not fit its base model."""


class InputError(LmdemoError):
    """A job got input it cannot work on (empty text, bad number, unknown language...)."""
