"""Checks that the Python modules a recipe needs can be imported, before any work starts."""
import importlib.util

from .errors import MissingModule


def require(modules, purpose=""):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingModule(missing, purpose)
