"""Compiling BPF C with emptcp's flags (:mod:`emptcp.build.compile`).

Kept at this import path for users and plugins; the code lives in ``emptcp.build.compile``.
"""
from .build.compile import *  # noqa: F401,F403
from .build.compile import __all__  # noqa: F401
