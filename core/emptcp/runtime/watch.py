"""Watch a configuration file and re-apply it when its content changes.

Polling, not inotify: the file is read (following symlinks) every ``interval``
seconds and its SHA-256 compared. That one test covers every way a file gets
replaced -- in-place writes, an editor's write-to-temp-then-rename (new
inode), and the Kubernetes ConfigMap swap, where ``policy.toml`` is a symlink
into ``..data``, itself a symlink that the kubelet replaces with a rename --
without tracking which directory to watch after a swap. A few KB read ten
times a second costs nothing next to an apply.

A change is applied once its content has stayed the same for ``settle``
seconds (a writer may still be writing); a file that is momentarily missing
(between an editor's unlink and rename) is not a change. :meth:`request`
(SIGHUP) re-applies even when nothing changed.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from typing import Callable

__all__ = ["ConfigWatcher", "file_digest"]

log = logging.getLogger("emptcp.watch")


def file_digest(path: str) -> str | None:
    """SHA-256 of the file's content, or None when it cannot be read right now."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class ConfigWatcher(threading.Thread):
    """Calls ``reload(reason)`` from its own thread whenever ``path`` changes
    (``poll=True``) or :meth:`request` is called. ``reload`` must not raise;
    it is called with no other reload running."""

    def __init__(self, path: str, reload: Callable[[str], None], *, poll: bool = True,
                 interval: float = 0.1, settle: float = 0.05,
                 applied: str | None = None) -> None:
        """``applied``: :func:`file_digest` of the content the caller applied (read
        before that apply, so a change made meanwhile is not missed)."""
        super().__init__(name="emptcp-watch", daemon=True)
        self.path, self.reload, self.poll = path, reload, poll
        self.interval, self.settle = interval, settle
        self.last = applied if applied is not None else file_digest(path)
        self._wake = threading.Event()
        self._forced = False
        self._stopping = False

    def request(self) -> None:
        """Re-read and re-apply now, changed or not (safe from a signal handler)."""
        self._forced = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.interval if self.poll else None)
            self._wake.clear()
            if self._stopping:
                return
            forced, self._forced = self._forced, False
            if forced:
                self.last = file_digest(self.path) or self.last
                self._call("SIGHUP")
                continue
            if not self.poll:
                continue
            now = file_digest(self.path)
            if now is None or now == self.last:
                continue
            self._wake.wait(self.settle)  # let a writer finish
            if file_digest(self.path) != now or self._stopping:
                continue  # still moving: look again next round
            self.last = now
            self._call("changed")

    def _call(self, reason: str) -> None:
        try:
            self.reload(reason)
        except Exception:  # never let one reload end the watching
            log.exception("reloading %s failed", self.path)
