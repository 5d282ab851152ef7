try:
    from emptcp.plugin_build import setup_plugin
except ImportError:  # pip's build isolation hides the installed emptcp: use it anyway
    import sys, sysconfig; sys.path.append(sysconfig.get_paths()["purelib"])  # noqa: E401,E702
    from emptcp.plugin_build import setup_plugin
setup_plugin()
