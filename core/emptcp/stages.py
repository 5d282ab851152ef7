"""Stage specifications for plugin authors (:mod:`emptcp.chain.stages`): StageSpec, Param.

Kept at this import path for users and plugins; the code lives in ``emptcp.chain.stages``.
"""
from .chain.stages import *  # noqa: F401,F403
from .chain.stages import __all__  # noqa: F401
