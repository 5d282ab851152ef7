"""emptcp plugins: hook specifications, the plugin manager and the built-in stages.

A plugin author needs :data:`hookimpl` and :class:`emptcp.stages.StageSpec`;
see docs/plugins.md.
"""
from __future__ import annotations

from .hookspec import PROJECT, hookimpl, hookspec

__all__ = ["PROJECT", "hookimpl", "hookspec", "PluginManager", "PluginInfo", "get_plugin_manager"]


def __getattr__(name: str):  # lazy: importing hookimpl must stay cheap for plugins
    if name in ("PluginManager", "PluginInfo", "get_plugin_manager"):
        from . import manager
        return getattr(manager, name)
    raise AttributeError(name)
