"""emptcp plugins: hook specifications, the plugin manager and the built-in stages.

A plugin author needs :data:`hookimpl` and :class:`emptcp.stages.StageSpec`;
the hooks are documented in :mod:`emptcp.plugins.hookspec`
(``python -m pydoc emptcp.plugins.hookspec``), the rest in docs/plugins.md.

Submodules: ``hookspec`` (the hook specifications), ``manager``
(:class:`PluginManager`), ``testing`` (:class:`ChainHarness`), ``builtin``.
The pluggy spec marker is exported as ``hookspec_marker`` -- not as
``hookspec``, which would hide the submodule of that name.
"""
from __future__ import annotations

from .hookspec import PROJECT, hookimpl, hookspec_marker

__all__ = ["PROJECT", "hookimpl", "hookspec_marker", "PluginManager", "PluginInfo",
           "get_plugin_manager"]


def __getattr__(name: str):  # lazy: importing hookimpl must stay cheap for plugins
    if name in ("PluginManager", "PluginInfo", "get_plugin_manager"):
        from . import manager
        return getattr(manager, name)
    raise AttributeError(name)
