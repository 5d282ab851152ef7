"""The Python API (:mod:`emptcp.runtime.api`): apply, plan, status, detach.

Kept at this import path for users and plugins; the code lives in ``emptcp.runtime.api``.
"""
from .runtime.api import *  # noqa: F401,F403
from .runtime.api import __all__  # noqa: F401
