"""asyncio support: the awaitable returned by the ``*_async`` methods, and :func:`on_loop`."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Generator, Generic, Optional, TypeVar

T = TypeVar("T")

_log = logging.getLogger("tenure")


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class _ClosedAtExit(Generic[T]):
    """``async with`` over an awaitable whose result is a handle: awaits it, and closes the
    handle at the end of the block (``close_async()`` when the handle has it, else
    ``close()``)."""

    __slots__ = ()
    _value: Optional[T]

    async def __aenter__(self) -> T:
        self._value = await self
        return self._value

    async def __aexit__(self, *exc: Any) -> None:
        value, self._value = self._value, None
        if value is None:
            return
        close_async = getattr(value, "close_async", None)
        if close_async is not None:
            await close_async()
        else:
            value.close()  # type: ignore[attr-defined]


class Op(_ClosedAtExit[T]):
    """A call of tenure in flight, as an awaitable.

    ``await op`` gives its result (or raises its exception). Cancelling the awaiting task gives
    the call up: whatever it produces (a granted lock, a connected client, ...) is released.
    The call starts when the ``*_async`` method is called, not when it is awaited; an ``Op``
    that is never awaited is given up when garbage-collected.

    When the result is a handle (a ``Lock``, ``Election``, ``Membership``, ``Client``,
    ``Server``, ...), ``async with`` awaits it and closes the handle at the end of the block
    (``close_async()`` when the handle has it, else ``close()``).
    """

    __slots__ = ("_pending", "_wrap", "_value")

    def __init__(self, pending: Any, wrap: Optional[Callable[[Any], T]] = None) -> None:
        self._pending = pending
        self._wrap = wrap
        self._value: Optional[T] = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def wake() -> None:  # on tenure's completion thread
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # the loop is closed; nobody waits any more
                pass

        self._pending.add_done_callback(wake)
        try:
            await fut
        except BaseException:
            self._pending.cancel()
            raise
        value = self._pending.result()
        return value if self._wrap is None else self._wrap(value)

    def cancel(self) -> None:
        """Gives the call up (what it produces is released)."""
        self._pending.cancel()

    def done(self) -> bool:
        """True once the call has finished."""
        return bool(self._pending.done())

    def __repr__(self) -> str:
        return f"<tenure.Op {self._pending!r}>"


def on_loop(
    callback: Callable[[Any], Any],
    loop: Optional[asyncio.AbstractEventLoop] = None,
) -> Callable[[Any], None]:
    """Wraps ``callback`` so that tenure's dispatcher thread hands each event to ``loop``.

    The wrapper calls ``loop.call_soon_threadsafe(callback, event)``; when ``callback`` is a
    coroutine function, a task running ``callback(event)`` is created on the loop instead.
    ``loop`` defaults to the running loop (call ``on_loop`` from a coroutine, or pass it).
    Events that come after the loop is closed are dropped. Exceptions in ``callback`` are the
    loop's to report (its exception handler), as for any callback it runs.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    target = loop
    if not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    tasks: "set[asyncio.Task[Any]]" = set()

    if inspect.iscoroutinefunction(callback):

        def start(event: Any) -> None:
            task = target.create_task(callback(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def forward(event: Any) -> None:
            try:
                target.call_soon_threadsafe(start, event)
            except RuntimeError:
                _log.debug("event loop closed; %s event dropped", getattr(event, "kind", "?"))

    else:

        def forward(event: Any) -> None:
            try:
                target.call_soon_threadsafe(callback, event)
            except RuntimeError:
                _log.debug("event loop closed; %s event dropped", getattr(event, "kind", "?"))

    return forward


class Blocking(_ClosedAtExit[T]):
    """Starting or stopping an in-process ``Server`` or ``Detector``, as an awaitable.

    It does not wait on the service (it binds, reads its data directory, joins its threads),
    so it runs when awaited, in the event loop's default executor: no thread is made for it.
    """

    __slots__ = ("_call", "_what", "_value")

    def __init__(self, call: Callable[[], T], what: str) -> None:
        self._call = call
        self._what = what
        self._value: Optional[T] = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._run().__await__()

    async def _run(self) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, self._call)

    def __repr__(self) -> str:
        return f"<tenure.Blocking {self._what}>"


__all__ = ["Blocking", "Op", "on_loop"]
