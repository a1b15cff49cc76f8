"""Move this process's wall clock, for tests that prove an output does not depend on when it was made.

    shift_clock(monkeypatch, DAY)  # time.time(), strftime(), datetime.now() ... now read a day later

Every Python-level reading of the wall clock is moved (the `time` functions and `datetime.datetime` /
`datetime.date` as looked up through the `datetime` module); monotonic clocks are left alone. Not moved:
what the kernel stamps itself (file mtimes), which no staged file's bytes carry.
"""

from __future__ import annotations

import datetime
import time

DAY = 86_400.0  # seconds


def shift_clock(monkeypatch, seconds: float) -> None:
    real_time, real_localtime, real_gmtime = time.time, time.localtime, time.gmtime
    real_strftime, real_ctime = time.strftime, time.ctime

    def now() -> float:
        return real_time() + seconds

    def at(fn):  # a time-tuple function whose default instant is the moved one
        return lambda secs=None: fn(now() if secs is None else secs)

    monkeypatch.setattr(time, "time", now)
    monkeypatch.setattr(time, "time_ns", lambda: int(now() * 1e9))
    monkeypatch.setattr(time, "localtime", at(real_localtime))
    monkeypatch.setattr(time, "gmtime", at(real_gmtime))
    monkeypatch.setattr(time, "ctime", at(real_ctime))
    monkeypatch.setattr(time, "strftime",
                        lambda fmt, t=None: real_strftime(fmt, real_localtime(now()) if t is None else t))

    class MovedDateTime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(now(), tz)

        @classmethod
        def utcnow(cls):
            return cls.fromtimestamp(now(), datetime.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return cls.fromtimestamp(now())

    class MovedDate(datetime.date):
        @classmethod
        def today(cls):
            return cls.fromtimestamp(now())

    monkeypatch.setattr(datetime, "datetime", MovedDateTime)
    monkeypatch.setattr(datetime, "date", MovedDate)
