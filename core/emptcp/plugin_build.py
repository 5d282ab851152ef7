"""Build glue for plugin wheels (:mod:`emptcp.build.plugin`): ``setup_plugin()``.

Kept at this import path for users and plugins; the code lives in ``emptcp.build.plugin``.
"""
from .build.plugin import *  # noqa: F401,F403
from .build.plugin import __all__  # noqa: F401
