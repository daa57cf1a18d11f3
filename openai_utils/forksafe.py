"""What a forked child must not inherit from its parent: connections, locks and slots.

`os.fork()` (a fork-based `multiprocessing.Pool`, the default on Linux before Python 3.14)
copies the whole process but only the thread that forked. Three kinds of state go wrong in the
child:

* pooled keep-alive connections: parent and child would write requests on the same socket and
  read each other's answers, as successes;
* locks that another parent thread held at that moment: nobody in the child will release them;
* counts of resources held by those threads (concurrency slots): nobody will give them back.

Objects holding such state register here once (`renew_in_child(self)`); right after a fork, in
the child only, each one's `_renew_after_fork()` runs, before any other code. The parent is
untouched.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

__all__ = ["Renewable", "renew_in_child", "keep_forever"]


class Renewable(Protocol):
    def _renew_after_fork(self) -> None:
        """Replace locks, forget the parent's connections and holders; called in the child only."""


_registered: weakref.WeakSet[Any] = weakref.WeakSet()
_kept: list[Any] = []


def renew_in_child(obj: Renewable) -> None:
    """Have `obj._renew_after_fork()` run in every child forked from now on, while `obj` lives."""
    _registered.add(obj)


def keep_forever(obj: Any) -> None:
    """Keep something inherited from the parent alive, unused, for the rest of the child's life.

    For SDK clients: closing one in the child, or letting the garbage collector do it, could
    end the parent's session on the shared socket (an async TLS close writes a close_notify).
    Forgotten but referenced, it costs a little memory and touches nothing.
    """
    _kept.append(obj)


def _renew_all() -> None:
    for obj in list(_registered):
        obj._renew_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX: there is no fork elsewhere
    os.register_at_fork(after_in_child=_renew_all)
