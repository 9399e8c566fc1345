"""Progressive delivery: `promote --steps 5,25,50,100 --interval 10m`.

The plan is written into the route's ``analysis:`` block (so the routes file says what is
going on, and `platform canary watch` can pick it up again), then the canary analysis
walks it: each interval a pass moves to the next step, a breach rolls back.
"""

from __future__ import annotations

from collections.abc import Callable

from lorafleet.core.errors import InputError
from lorafleet.core.units import parse_duration_s as _parse_duration_s
from lorafleet.platform.control.promotion import Promoter, parse_percent
from lorafleet.platform.control.routes_edit import edit_route
from lorafleet.serving.routes import Analysis, Route

__all__ = ["parse_steps", "parse_duration_s", "run_steps"]



def parse_steps(text: str) -> list[float]:
    steps = [parse_percent(x) for x in text.split(",") if x.strip()]
    if not steps or steps != sorted(set(steps)) or steps[0] <= 0:
        raise InputError("--steps", text, "must be increasing percentages, e.g. 5,25,50,100")
    return steps


def parse_duration_s(text: str) -> float:
    """``--interval``: a duration such as 30s, 10m or 1h."""
    return _parse_duration_s(text, "--interval")


def run_steps(promoter: Promoter, route: str, remaining: list[float], interval_s: float,
              say: Callable[[str], None] = print, gateway_url: str | None = None) -> str:
    from lorafleet.platform.control.analysis import CanaryWatcher
    from lorafleet.platform.errors import PlatformError
    from lorafleet.serving.routes_source import load_routes
    from lorafleet.serving.pidfile import read_pid_file

    def plan(current: Route | None) -> Route:
        if current is None or current.canary is None:
            raise PlatformError(f"route {route} has no canary to step")
        base = current.analysis or Analysis()
        current.analysis = base.model_copy(update={"interval_s": interval_s,
                                                   "steps": [current.canary.weight, *remaining] or [100.0]})
        return current

    edit_route(promoter.routes, route, plan, actor=promoter.actor, reason="progressive delivery plan",
               kind="plan")
    if gateway_url is None:
        record = read_pid_file(promoter.settings)
        if record is None:
            raise PlatformError("progressive delivery needs a running gateway (`platform serve --detach`)")
        gateway_url = record["url"].removesuffix("/v1")
    watcher = CanaryWatcher(
        gateway_url, route, lambda: load_routes(promoter.routes).routes.get(route),
        step_to=lambda pct, why: say(promoter.step(route, pct, why).diff),
        promote=lambda why: say(promoter.full(route, why).diff),
        rollback=lambda why: say(promoter.rollback(route, why).diff),
        say=say,
    )
    outcome = watcher.run()
    say(f"outcome: {outcome}")
    return outcome
