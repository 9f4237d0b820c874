"""Ctrl-C before a command has its own handling: one line, exit 130, never a traceback.

The ``daqhub`` command loads for a second or more (plugins, pyarrow, h5py). A SIGINT in that
time used to raise ``KeyboardInterrupt`` wherever the interpreter happened to be, often
inside an extension module's import, and ended in a traceback or in CPython's own
"killed by SIGINT" exit (-2). This module imports only what the interpreter has already
loaded, so the entry point (``daqhub.__main__``) can install :func:`quit_on_interrupt`
before it imports anything heavy.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # not typing's: importing typing alone takes a few ms of the window
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

#: the exit code of a command interrupted before it could finish cleanly (128 + SIGINT)
EXIT_INTERRUPTED = 130


def interrupted() -> NoReturn:
    """Exit 130 at once. Not ``sys.exit``: an interrupt that landed in code a C extension
    runs while importing leaves CPython marked as killed by SIGINT, and it would end with
    -2 instead of the documented code, however the exception was handled. os.write, because
    this may run in a signal handler while the main thread is inside a buffered write."""
    _flush()
    os.write(2, b"daqhub: interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (RuntimeError, OSError, ValueError, AttributeError):
            pass  # re-entered, closed or absent: what was not flushed is lost either way


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    interrupted()


def quit_on_interrupt() -> signal.Handlers | object:
    """Make SIGINT end the process at once with :func:`interrupted`; returns the previous
    handler, for :func:`hand_over`. A SIGINT that the parent set to be ignored (a job
    started with ``&`` by a script) stays ignored."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    return previous


#: the exit code a command has settled on, once it has (see :func:`finished`)
_outcome: list[int] = []


def finished(code: int) -> None:
    """The command has settled on ``code`` (``daqhub run``: its report is out). From now
    on a Ctrl-C in the ``daqhub`` process ends it at once with that code: the command is
    still returning (handlers being put back, the interpreter winding down), and a
    ``KeyboardInterrupt`` there would turn a finished run into exit 130. In a process
    that did not start in ``daqhub.__main__`` (a script calling the CLI) this only notes
    the code."""
    _outcome[:] = [code]


def _on_command_sigint(signum: int, frame: FrameType | None) -> None:
    if _outcome:
        _flush()
        os._exit(_outcome[0])
    raise KeyboardInterrupt  # what Python's own handler does: the command handles it


def hand_over(previous: signal.Handlers | object) -> None:
    """The command is loaded: SIGINT raises ``KeyboardInterrupt`` again (the command's own
    handling takes it from there), until :func:`finished`."""
    _outcome.clear()
    if previous is signal.default_int_handler:
        previous = _on_command_sigint
    signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]


def exit_on_interrupt(code: int) -> None:
    """The command has returned ``code``: a Ctrl-C while the interpreter winds down (atexit,
    joining threads) ends the process at once with that same code, instead of a
    ``KeyboardInterrupt`` traceback from the interpreter's exit."""
    finished(code)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_command_sigint)


def ignore_at_exit() -> None:
    """Registered with ``atexit`` before the command loads, so it runs after every other
    exit function: the command's output is written and its code settled, and what is left
    is the interpreter's teardown, whose first step puts SIGINT back to the default action
    (killed by the signal, exit -2) unless it is ignored. A Ctrl-C in those last
    milliseconds changes nothing; one while threads are joined or earlier exit functions
    run still ends the process at once (:func:`exit_on_interrupt`)."""
    if signal.getsignal(signal.SIGINT) is not None:  # None: set from C, not ours to change
        signal.signal(signal.SIGINT, signal.SIG_IGN)
