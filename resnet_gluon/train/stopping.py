"""Stopping a training run cleanly: on a signal (Slurm's SIGTERM or ``--signal=B:USR1@120``, a spot machine's
notice), or when a time budget is spent, at a step boundary that every worker agrees on. A second signal of
the same kind is not caught: it ends the process as it would have without ``fit``.

:func:`~resnet_gluon.train.fit.fit` builds a :class:`StopRequest`. Its signal handlers only note the request;
``fit`` asks :meth:`StopRequest.should_stop` after every step (``every`` steps), and with several workers the answer
is one
allreduce of one number, so that every worker stops after the same step even when only one was signalled. ``fit``
then drains the batches in flight, lets the callbacks save (a :class:`~resnet_gluon.train.callbacks.Checkpoint` writes
a mid-epoch checkpoint that a rerun resumes at the next step) and raises :class:`TrainingStopped`, a
``SystemExit`` with status :data:`STOPPED_EXIT_STATUS` (75, ``EX_TEMPFAIL``: try again).

Cost: one signal-flag check per update, plus with several workers one allreduce of a single number (Horovod,
Gloo on CPUs) per ``every`` updates — ``benchmarks/stop_check.py`` measures it against the step time.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
import threading
import time
from typing import Optional, Sequence, Union

from .._core import dist

__all__ = ["STOPPED_EXIT_STATUS", "DEFAULT_SIGNALS", "TrainingStopped", "StopRequest", "parse_duration"]

#: The exit status of a run that stopped on request and can be resumed (``EX_TEMPFAIL`` in ``sysexits.h``).
STOPPED_EXIT_STATUS = 75
#: Signals ``fit`` catches by default: what Slurm sends at a time limit or preemption (SIGTERM; SIGUSR1 with
#: ``--signal=B:USR1@SECONDS``). SIGINT (Ctrl-C) is left alone unless you name it.
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingStopped(SystemExit):
    """Raised by ``fit`` after a clean stop; exits the process with :data:`STOPPED_EXIT_STATUS` unless caught.

    Attributes
    ----------
    epoch : int
        The interrupted epoch (0-based).
    step : int
        Batches of that epoch done (a rerun continues with batch ``step``).
    reason : str
        Why, e.g. ``'signal SIGTERM'`` or ``'--max-run-time 3h50m spent'``.
    """

    def __init__(self, epoch: int, step: int, reason: str):
        super().__init__(STOPPED_EXIT_STATUS)
        self.epoch, self.step, self.reason = epoch, step, reason

    def __str__(self) -> str:
        return f"training stopped ({self.reason}) after step {self.step} of epoch {self.epoch + 1}"


def parse_duration(value: Union[str, float, int, None]) -> Optional[float]:
    """Seconds from ``3h50m``, ``90m``, ``45s``, ``1h``, ``2d``, ``01:30:00`` (Slurm's ``H:MM:SS``) or a number of
    seconds; None stays None.

    Raises
    ------
    ValueError
        Text that is none of these, or a duration that is not positive.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif re.fullmatch(r"\d+(:\d{1,2}){1,2}", text):
            parts = [int(p) for p in text.split(":")]
            seconds = float(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))
        elif re.fullmatch(r"(\d+(\.\d+)?[dhms])+", text):
            seconds = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([dhms])", text))
        else:
            raise ValueError(f"cannot read the duration {value!r}; write it as 3h50m, 90m, 45s, 01:30:00 or seconds")
    if seconds <= 0:
        raise ValueError(f"the duration must be positive, got {value!r}")
    return seconds


_SIGNAL_STACKS = []  # alternate signal stacks handed to the kernel: they must live as long as the process


def _fresh_signal_stack() -> None:
    """Give this thread a new alternate signal stack. Python installs its handlers with ``SA_ONSTACK``, and a
    native library can leave the thread's alternate stack pointing at memory it freed: after OpenVINO and ONNX
    Runtime's INT8 quantization had run in a process, every handled signal crashed it (SIGSEGV in the kernel's
    delivery, seen under pytest). A fresh stack of our own makes the handler safe whatever ran before."""
    class _Stack(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    size = 1 << 16
    memory = ctypes.create_string_buffer(size)
    if ctypes.CDLL(None).sigaltstack(ctypes.byref(_Stack(ctypes.cast(memory, ctypes.c_void_p), 0, size)), None) == 0:
        _SIGNAL_STACKS.append(memory)


class StopRequest:
    """Notes stop signals and a time budget; decides, identically on every worker, whether to stop now.

    Parameters
    ----------
    signals : sequence of int
        Signals to catch (installed only from the main thread; the previous handlers come back with
        :meth:`close`).
    max_run_time : float, optional
        Seconds from construction after which to stop (at the first step boundary past it).
    every : int
        Calls of :meth:`should_stop` between decisions (``fit`` calls it after each optimizer update; each
        decision is an allreduce with several workers).

    Raises
    ------
    ValueError
        For ``every < 1``, or a signal this process cannot catch (the message suggests others).
    """

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS, max_run_time: Optional[float] = None, *,
                 every: int = 1, budget_text: Optional[str] = None):
        if every < 1:
            raise ValueError(f"the stop check's cadence must be >= 1 step, got {every}")
        self.start = time.monotonic()
        self.max_run_time, self.every = max_run_time, every
        self._budget_text = budget_text or (f"{max_run_time:g} s" if max_run_time else "")
        self.reason: Optional[str] = None
        self._steps = 0
        self._previous = {}
        self._received = set()
        if threading.current_thread() is threading.main_thread():
            if signals and sys.platform.startswith("linux"):
                _fresh_signal_stack()
            for sig in signals:
                try:
                    self._previous[sig] = signal.signal(sig, self._note)
                except (OSError, ValueError, RuntimeError) as err:
                    self.close()
                    raise ValueError(f"cannot catch signal {sig!r} ({err}); choose others for stop_signals, e.g. "
                                     "signal.SIGTERM, signal.SIGUSR1") from None

    def _note(self, signum, frame) -> None:
        """The signal handler: the first signal of a kind only records the request; a second of the same kind gets
        the previous handler (by default: the process ends), so a run stuck where it never checks can still be
        stopped. A stop already under way for another reason (the time budget, another worker's vote) does not
        make this worker's first signal a second one: that would kill it while it saves its checkpoint."""
        if signum not in self._received:
            self._received.add(signum)
            if self.reason is None:
                self.reason = f"signal {signal.Signals(signum).name}"
            return
        previous = self._previous.pop(signum, signal.SIG_DFL)
        signal.signal(signum, previous)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)

    def should_stop(self) -> Optional[str]:
        """Call after every step, on every worker: the reason to stop now (the same on every worker), or None."""
        self._steps += 1
        if self._steps % self.every:
            return None
        if self.reason is None and self.max_run_time is not None and \
                time.monotonic() - self.start >= self.max_run_time:
            self.reason = f"the run-time budget of {self._budget_text} is spent"
        if dist.size() == 1:
            return self.reason
        # The decision is the vote's sum alone: a signal handled while the vote is in flight (the handler runs in
        # this thread between bytecodes, so after the allreduce returns) counts at the next step. Answering from
        # self.reason after the vote would stop this worker while the others, which saw no vote, go on to their next
        # collective: a deadlock (seen with SIGTERM to both workers, 1 run in 4).
        mine = self.reason
        anyone = dist.allreduce_sum([1.0 if mine else 0.0], name="resnet_gluon_stop")[0]
        if not anyone:
            return None
        if self.reason is None:
            self.reason = "another worker was asked to stop"
        return self.reason

    def close(self) -> None:
        """Put the previous signal handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
