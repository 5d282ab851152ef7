"""The policy model (:mod:`emptcp.chain.model`): SelectorChain, ActionChain, PolicyChain, Config.

Kept at this import path for users and plugins; the code lives in ``emptcp.chain.model``.
"""
from .chain.model import *  # noqa: F401,F403
from .chain.model import __all__  # noqa: F401
