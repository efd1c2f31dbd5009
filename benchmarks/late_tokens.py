"""Where a run's late tokens came from: one stall of the whole stack, or scattered delays.

A process that stands still (a garbage collection, a busy event loop, a descheduled thread)
delays every stream it carries at once, and their tokens then arrive together; delays of one
client or one connection arrive alone. Grouping the late tokens by when they arrived tells
the two apart, and gives the instants to hold against the workers' GC pauses (gc_pauses.py).
"""

from typing import Any

LATE_S = 0.020  # the delivery-lag target
BURST_S = 0.050  # late tokens that arrived this close together are one burst
SHOWN = 5


def late_bursts(lags: list[float], received_at: list[float], start: float) -> dict[str, Any]:
    """The tokens over LATE_S late, grouped into bursts by arrival; the largest bursts, in ms
    after `start` (wall clock)."""
    late = sorted((at, lag) for lag, at in zip(lags, received_at, strict=True) if lag > LATE_S)
    bursts: list[list[tuple[float, float]]] = []
    for at, lag in late:
        if bursts and at - bursts[-1][-1][0] <= BURST_S:
            bursts[-1].append((at, lag))
        else:
            bursts.append([(at, lag)])
    largest = sorted(bursts, key=len, reverse=True)[:SHOWN]
    return {
        "late_tokens": len(late),
        "bursts": len(bursts),
        "largest": [
            {
                "at_ms": round((burst[0][0] - start) * 1000),
                "tokens": len(burst),
                "max_lag_ms": round(max(lag for _, lag in burst) * 1000, 1),
            }
            for burst in largest
        ],
    }


def describe(found: dict[str, Any]) -> str:
    """One line for the Markdown report."""
    if not found["late_tokens"]:
        return f"No token arrived more than {LATE_S * 1000:g} ms after it was made."
    listed = "; ".join(
        f"{burst['tokens']} at {burst['at_ms']} ms (up to {burst['max_lag_ms']} ms late)"
        for burst in found["largest"]
    )
    return (
        f"{found['late_tokens']} tokens arrived more than {LATE_S * 1000:g} ms after they were "
        f"made, in {found['bursts']} bursts (arrivals within {BURST_S * 1000:g} ms of each "
        f"other); the largest, in ms after the first submit: {listed}."
    )
