"""How a call of the native module becomes the two methods of the public API.

Every call of tenure is one native method, ``*_start``, that starts the core's pending call and
returns its ``Pending`` (no thread waits for it). :func:`blocking` makes the blocking method of
it, "start, then wait" (the wait releases the GIL and lets Ctrl-C through, which gives the call
up); :func:`awaitable` makes the ``*_async`` method, an :class:`~tenure._aio.Op` awaiting the
same ``Pending``. ``wrap`` turns the native result into the public one (a native lock into a
:class:`tenure.Lock`, ...), on whichever side takes it.

:class:`Handle` is what every handle shares: ``close()``, ``close_async()``, ``with`` and its
``repr``, once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, TypeVar

from ._aio import Op

if TYPE_CHECKING:  # typing_extensions only for type checkers (Python 3.9 has no ParamSpec)
    from typing_extensions import Concatenate, ParamSpec

    P = ParamSpec("P")

T = TypeVar("T")
S = TypeVar("S")
H = TypeVar("H", bound="Handle")


def nothing(_: Any) -> None:
    """The public result of a call whose native result is None."""
    return None


def same(value: Any) -> Any:
    """The public result of a call whose native result is public already (a ``Master``, a
    ``View``)."""
    return value


def blocking(
    start: "Callable[Concatenate[S, P], Any]", wrap: Callable[[Any], T]
) -> "Callable[Concatenate[S, P], T]":
    """The blocking method of the call ``start``: start, then wait."""

    @functools.wraps(start)
    def call(self: S, *args: Any, **kwargs: Any) -> T:
        return wrap(start(self, *args, **kwargs).wait())

    call.__name__ = call.__qualname__ = start.__name__.lstrip("_")
    return call  # type: ignore[return-value]


def awaitable(
    start: "Callable[Concatenate[S, P], Any]", wrap: Callable[[Any], T]
) -> "Callable[Concatenate[S, P], Op[T]]":
    """The ``*_async`` method of the call ``start``: an awaitable over the same pending call.
    Cancelling the awaiting task gives the call up; what it would have produced is released."""

    @functools.wraps(start)
    def call(self: S, *args: Any, **kwargs: Any) -> Op[T]:
        return Op(start(self, *args, **kwargs), wrap)

    name = start.__name__.lstrip("_")
    call.__name__ = call.__qualname__ = name + "_async"
    call.__doc__ = f"Awaitable variant of ``{name}``: ``await`` it, or ``async with`` it."
    return call  # type: ignore[return-value]


def calls(
    start: "Callable[Concatenate[S, P], Any]", wrap: Callable[[Any], T]
) -> "Tuple[Callable[Concatenate[S, P], T], Callable[Concatenate[S, P], Op[T]]]":
    """Both methods of the call ``start``: ``lock, lock_async = calls(_lock, Lock._of)``."""
    return blocking(start, wrap), awaitable(start, wrap)


def native(name: str, doc: str) -> Any:
    """A read-only attribute of the wrapped native object (typed by its annotation where it
    is used: ``name: str = native("name", "...")``)."""
    return property(lambda self: getattr(self._n, name), doc=doc)


class Handle:
    """What every handle (client, lock, election, observer, membership, group watch) shares:
    the native object it wraps, ``close()``/``close_async()`` over the one native call that
    gives it up (``_close_start``), ``with`` and ``repr``."""

    __slots__ = ("_n", "__weakref__")

    def __init__(self, native_object: Any) -> None:
        self._n = native_object

    @classmethod
    def _of(cls: "type[H]", native_object: Any) -> H:
        """The public handle of a native one (the result of a call)."""
        h = cls.__new__(cls)
        Handle.__init__(h, native_object)
        return h

    def _close_start(self) -> Any:
        return self._n.close_start()

    def _close(self) -> Any:
        """Gives the handle up (see the class). Idempotent."""
        return self._close_start()

    close, close_async = calls(_close, nothing)

    def __enter__(self: H) -> H:
        return self

    def __exit__(self, *_exc: Any) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return repr(self._n)


def maybe(wrap: Callable[[Any], T]) -> Callable[[Any], Optional[T]]:
    """``wrap`` for a result that may be None."""

    def of(value: Any) -> Optional[T]:
        return None if value is None else wrap(value)

    return of
