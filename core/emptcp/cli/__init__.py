"""The ``emptcp`` command line: ``main`` (apply/plan/status/... in :mod:`.main`), the
plugin-facing commands (:mod:`.plugin_commands`) and the MPTCP demo (:mod:`.demo`)."""
