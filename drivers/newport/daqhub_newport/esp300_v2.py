"""ESP300 axis, v2 flavor: blocking methods, each one :class:`AxisSession` operation."""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

from daqhub.instrument import DriverError, V2Instrument, now_ns
from daqhub.measurement import Measurement, Scalar
from daqhub.specs import InstrumentContext

from .esp300_axis import AxisSession, ErrorRouter
from .esp300_config import AxisSettings
from .lineio import Op, run_op, serial_port_of

T = TypeVar("T")
log = logging.getLogger(__name__)


class Esp300AxisV2(V2Instrument):
    """One axis of an ESP300 (Motion capability), blocking.

    Thread-safe: :meth:`stop` and :meth:`abort` may be called from another thread while this
    one waits in :meth:`wait_until_done` or :meth:`home`; they take the port's urgent lane.
    """

    def __init__(self, ctx: InstrumentContext) -> None:
        super().__init__(ctx)
        self.serial_port = serial_port_of(ctx)
        self.axis_settings = AxisSettings.from_config(ctx.config)
        router = self.serial_port.shared(ErrorRouter.KEY, ErrorRouter)
        self.session = AxisSession(self.id, self.axis_settings, router)

    def _do(self, op: Op[T]) -> T:
        return run_op(self.serial_port, self.id, op)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        self._do(self.session.connect())

    def read(self) -> list[Measurement]:
        position, meta = self._do(self.session.poll())
        return [Measurement(self.id, "position", now_ns(), Scalar(position, self.session.unit),
                            meta)]

    def close(self) -> None:
        """Stop this axis: nothing should keep moving once nobody watches it."""
        try:
            self.stop()
        except DriverError as exc:
            log.warning("%s: could not stop axis %d on close: %s", self.id, self.session.axis,
                        exc)

    # ------------------------------------------------------------------ Motion
    def move_absolute(self, position: float) -> None:
        self._do(self.session.move_absolute(position))

    def move_relative(self, distance: float) -> None:
        self._do(self.session.move_relative(distance))

    def home(self, timeout: float = 30.0) -> None:
        """Search home (``OR``) and wait for it; on timeout stop the axis and raise."""
        self._do(self.session.start_home())
        if not self._wait(timeout):
            self.stop()
            raise self.session.motion_timeout(timeout, homing=True)
        self.session.raise_faults()

    def stop(self) -> None:
        self._do(self.session.stop())

    def position(self) -> float:
        return self._do(self.session.query_float("TP?"))

    def is_moving(self) -> bool:
        return not self._do(self.session.motion_done())

    def wait_until_done(self, timeout: float = 30.0) -> float:
        """Block until the axis stops; raise what went wrong during the motion; final position."""
        if not self._wait(timeout):
            raise self.session.motion_timeout(timeout, homing=False)
        self.session.raise_faults()
        return self.position()

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._do(self.session.motion_done()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.axis_settings.poll_interval, left))
        return True

    # ------------------------------------------------------------------ more of the ESP300
    def abort(self) -> None:
        """``AB``: abort the motion of EVERY axis of the controller at once (no deceleration)."""
        self._do(self.session.abort())

    def units(self) -> str:
        """The axis' unit as the controller reports it (``SN?``), e.g. ``mm`` or ``deg``."""
        return self._do(self.session.units())

    def motor_on(self) -> None:
        self._do(self.session.set_value("MO"))

    def motor_off(self) -> None:
        self._do(self.session.set_value("MF"))

    def set_velocity(self, velocity: float) -> None:
        self._do(self.session.set_value("VA", velocity))

    def velocity(self) -> float:
        return self._do(self.session.query_float("VA?"))

    def set_acceleration(self, acceleration: float) -> None:
        self._do(self.session.set_value("AC", acceleration))

    def acceleration(self) -> float:
        return self._do(self.session.query_float("AC?"))

    def set_limits(self, left: float, right: float) -> None:
        """Software travel limits (``SL``, ``SR``) in the axis' units."""
        self._do(self.session.set_value("SL", left))
        self._do(self.session.set_value("SR", right))

    def limits(self) -> tuple[float, float]:
        return self._do(self.session.query_float("SL?")), self._do(self.session.query_float("SR?"))

    def raw_command(self, text: str) -> None:
        """Send a command this driver does not wrap (no axis prefix added); raise its errors."""
        self._do(self.session.raw_command(text))

    def raw_query(self, text: str) -> str:
        """Send a query this driver does not wrap and return its reply line."""
        return self._do(self.session.raw_query(text))

    # ------------------------------------------------------------------ settings snapshot
    def settings(self) -> dict[str, Any]:
        left, right = self.limits()
        return {"model": "Newport ESP300", "units": self.units(), "velocity": self.velocity(),
                "acceleration": self.acceleration(), "limits": [left, right],
                "position": self.position()}
