"""One registry type for every "name -> thing" table (strategies, scores, queries, exporters, ...).

Why one type: each table used to carry its own lookup-and-raise, with its own wording and no
hint when a name was mistyped. A `Registry` is a dict (so `list(REG)`, `REG.items()` and
`name in REG` keep working) whose `get` raises one `HeadstartError` naming what is
registered, with a did-you-mean guess from difflib, and whose `register` refuses a name
twice (a second module silently replacing an entry is a bug that shows up far away).

    QUERIES = Registry("active-learning query")

    @QUERIES.register("margin")
    class Margin: ...

    QUERIES.get("margn")  # HeadstartError: unknown active-learning query 'margn'; did you mean margin?
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from .errors import HeadstartError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A named table of registered things; `what` names one entry in messages ("strategy")."""

    def __init__(self, what: str, *, hint: str | None = None, extra_choices: Iterable[str] = ()):
        super().__init__()
        self.what = what
        self._hint = hint  # what to run to see the choices, when listing them all is too long
        self.extra_choices = tuple(extra_choices)  # names accepted beside the entries ("auto")

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`, as it is."""

        def decorate(obj: T) -> T:
            self.add(name, obj, replace=replace)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, replace: bool = False) -> T:
        if name in self and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self[name] = obj
        return obj

    def get(self, name: str, default=...) -> T:  # type: ignore[override]
        """The entry `name`; an unknown name raises a HeadstartError with the choices and a
        did-you-mean guess (or returns `default` when one is given)."""
        if name in self:
            return self[name]
        if default is not ...:
            return default
        raise self.unknown(name)

    def copy(self) -> "Registry[T]":
        """A registry with the same entries and wording (tests register into a copy)."""
        twin = Registry(self.what, hint=self._hint, extra_choices=self.extra_choices)
        twin.update(self)
        return twin

    def choices(self) -> list[str]:
        """What a command line may name: the extra choices ("auto") and every entry."""
        return [*self.extra_choices, *self]

    def unknown(self, name: str) -> HeadstartError:
        """The error for a name that is not registered (for callers that look up themselves)."""
        choices = self.choices()
        # an extra choice ("auto") reaching here was meant to be resolved by the caller: do not
        # suggest the very name that failed
        close = difflib.get_close_matches(str(name), [c for c in choices if c != name], n=1, cutoff=0.6)
        guess = f"did you mean {close[0]}? " if close else ""
        listed = self._hint or f"choose one of: {', '.join(choices)}"
        return HeadstartError(f"unknown {self.what} {name!r}", hint=guess + listed)
