"""Quotas per user: how many sandboxes, running sandboxes, vCPUs, memory and home disk one owner may hold.

The manager asks `SandboxQuota.check` before every change that makes an owner hold more: a create (the
REST API, a kernel's start, the CLI), a claim from the warm pool, a start, a change of limits or a
recreate with a new spec. A refusal is one error, `QuotaExceeded`, whose message names the quota, the
numbers and how to free some. All limits are 0 (unlimited) by default: single-machine mode has none
but `SandboxManager.max_sandboxes_per_owner`; the sandbox service's operator sets them.

CPU and memory count over running sandboxes (a stopped one holds neither), sandboxes and disk over all
of them (a stopped sandbox keeps its home). A change that does not make the owner hold more is never
refused, so that an operator who lowers a quota does not keep users from stopping or shrinking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from traitlets import Dict, Float, Int, TraitError, Unicode, Union, validate
from traitlets.config import LoggingConfigurable

from . import errors
from .docker_backend import SandboxError
from .spec import format_size, parse_size

# The owner label of the sandbox service's users (service/users.py makes them): overrides may name
# the user without it.
HUB_OWNER_PREFIX = "hub-user:"
QUOTA_NAMES = ("max_sandboxes", "max_running", "max_cpu", "max_memory", "max_disk")


class QuotaExceeded(SandboxError, errors.Conflict):
    """The owner would hold more than a quota allows. A SandboxError too, so that the kernel and the
    CLI, which catch the manager's errors, show it as they show the others."""


class OwnerLimit(QuotaExceeded):
    """The quota on the number of sandboxes (SandboxQuota.max_sandboxes, SandboxManager.max_sandboxes_per_owner)."""


@dataclass(frozen=True)
class Holding:
    """What one sandbox takes from its owner's quota."""

    running: bool
    cpu: float
    memory: int
    disk: int


@dataclass(frozen=True)
class QuotaLimits:
    """One owner's limits; 0 is unlimited."""

    max_sandboxes: int = 0
    max_running: int = 0
    max_cpu: float = 0.0
    max_memory: int = 0
    max_disk: int = 0

    @property
    def unlimited(self) -> bool:
        return not any((self.max_sandboxes, self.max_running, self.max_cpu, self.max_memory, self.max_disk))

    @property
    def needs_resources(self) -> bool:
        """Whether checking needs each sandbox's cpu, memory and disk (not only counts)."""
        return bool(self.max_cpu or self.max_memory or self.max_disk)


def _size(value: Any, name: str) -> int:
    if value in (0, "", "0", None):
        return 0
    try:
        return parse_size(value, name)
    except Exception as exc:
        raise TraitError(f"SandboxQuota.{name}: {exc}") from None


def _cpus(value: float) -> str:
    return f"{value:g} vCPU" + ("" if value == 1 else "s")


class SandboxQuota(LoggingConfigurable):
    """The operator's quotas per user (owner). 0 or empty: unlimited."""

    max_sandboxes = Int(
        0,
        config=True,
        help="Most sandboxes one user may have, running or stopped (the unclaimed warm pool does not count). 0: no limit.",
    )
    max_running = Int(0, config=True, help="Most running sandboxes one user may have at once. 0: no limit.")
    max_cpu = Float(0.0, config=True, help="Most vCPUs one user's running sandboxes may have together. 0: no limit.")
    max_memory = Union(
        [Int(), Unicode()],
        default_value=0,
        config=True,
        help="Most memory one user's running sandboxes may have together, e.g. '8g'. 0: no limit.",
    )
    max_disk = Union(
        [Int(), Unicode()],
        default_value=0,
        config=True,
        help="Most home disk one user's sandboxes (stopped ones too) may have together, e.g. '50g'. 0: no limit.",
    )
    overrides = Dict(
        value_trait=Dict(),
        config=True,
        help=(
            "Quotas of particular users, over the defaults above: {'alice': {'max_running': 10, "
            "'max_memory': '32g'}}. Keys are user names (the sandbox service's users; 'hub-user:alice' "
            "works too) or owner labels; each value sets any of max_sandboxes, max_running, max_cpu, "
            "max_memory, max_disk (0: unlimited for that user)."
        ),
    )

    @validate("max_memory", "max_disk")
    def _valid_size(self, proposal: Any) -> Any:
        _size(proposal["value"], proposal["trait"].name)
        return proposal["value"]

    @validate("overrides")
    def _valid_overrides(self, proposal: Any) -> Any:
        for who, values in proposal["value"].items():
            unknown = set(values) - set(QUOTA_NAMES)
            if unknown:
                raise TraitError(
                    f"SandboxQuota.overrides[{who!r}]: unknown quota(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"known: {', '.join(QUOTA_NAMES)}"
                )
            self._limits(values)  # sizes and numbers that do not parse are refused at start
        return proposal["value"]

    def _limits(self, values: dict[str, Any]) -> QuotaLimits:
        try:
            return QuotaLimits(
                max_sandboxes=int(values.get("max_sandboxes", 0)),
                max_running=int(values.get("max_running", 0)),
                max_cpu=float(values.get("max_cpu", 0.0)),
                max_memory=_size(values.get("max_memory", 0), "max_memory"),
                max_disk=_size(values.get("max_disk", 0), "max_disk"),
            )
        except (TypeError, ValueError) as exc:
            raise TraitError(f"SandboxQuota: {exc}") from None

    def limits_for(self, owner: str) -> QuotaLimits:
        """The limits of `owner` (an owner label): the defaults with its override on top."""
        values: dict[str, Any] = {name: getattr(self, name) for name in QUOTA_NAMES}
        name = owner[len(HUB_OWNER_PREFIX) :] if owner.startswith(HUB_OWNER_PREFIX) else owner
        for key in (name, owner):
            values.update(self.overrides.get(key, {}))
        return self._limits(values)

    def check(
        self,
        owner: str,
        held: Iterable[Holding],
        adding: Holding | None,
        replacing: Holding | None = None,
        extra_count_limit: int = 0,
    ) -> None:
        """Refuse (QuotaExceeded) when holding `held`, less `replacing`, plus `adding` is over a limit
        that the change raises. `extra_count_limit`: the manager's max_sandboxes_per_owner, one more
        bound on the number of sandboxes (the smaller one is named)."""
        limits = self.limits_for(owner)
        if limits.unlimited and extra_count_limit <= 0:
            return
        held = list(held)
        before = _totals(held)
        after = _totals([*held, *([adding] if adding else [])], minus=replacing)
        count_limit = min((n for n in (limits.max_sandboxes, extra_count_limit) if n > 0), default=0)
        if count_limit and after.count > before.count and after.count > count_limit:
            knob = (
                "SandboxQuota.max_sandboxes"
                if count_limit == limits.max_sandboxes
                else "SandboxManager.max_sandboxes_per_owner"
            )
            raise OwnerLimit(
                f"quota {knob} = {count_limit}: {owner} already has {before.count} sandboxes, the most one user "
                "may have (running or stopped): delete one "
                "(DELETE /sandbox/api/sandboxes/ID, the sidebar's Delete, or `jupyter sandbox rm ID`) "
                "before making another"
            )
        if limits.max_running and after.running > before.running and after.running > limits.max_running:
            raise QuotaExceeded(
                f"quota SandboxQuota.max_running = {limits.max_running}: at most {limits.max_running} running sandboxes per user "
                f"(you have {before.running}): stop one (POST /sandbox/api/sandboxes/ID/stop, the sidebar's "
                "Stop) or delete one"
            )
        if limits.max_cpu and after.cpu > before.cpu + 1e-9 and after.cpu > limits.max_cpu + 1e-9:
            raise QuotaExceeded(
                f"quota SandboxQuota.max_cpu = {limits.max_cpu:g}: at most {_cpus(limits.max_cpu)} across your running sandboxes "
                f"(they have {_cpus(before.cpu)}; this needs {_cpus(after.cpu)} in all): stop one, or ask for "
                "fewer vCPUs (cpu)"
            )
        if limits.max_memory and after.memory > before.memory and after.memory > limits.max_memory:
            raise QuotaExceeded(
                f"quota SandboxQuota.max_memory = {format_size(limits.max_memory)}: at most {format_size(limits.max_memory)} of memory across "
                f"your running sandboxes (they have {format_size(before.memory)}; this needs "
                f"{format_size(after.memory)} in all): stop one, or ask for less memory"
            )
        if limits.max_disk and after.disk > before.disk and after.disk > limits.max_disk:
            raise QuotaExceeded(
                f"quota SandboxQuota.max_disk = {format_size(limits.max_disk)}: at most {format_size(limits.max_disk)} of home disk across your "
                f"sandboxes (they have {format_size(before.disk)}; this needs {format_size(after.disk)} in "
                "all): delete one (its files go with it), or ask for a smaller disk"
            )


@dataclass
class _Totals:
    count: int = 0
    running: int = 0
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0


def _totals(holdings: list[Holding], minus: Holding | None = None) -> _Totals:
    totals = _Totals()
    for holding in holdings:
        totals.count += 1
        totals.disk += holding.disk
        if holding.running:
            totals.running += 1
            totals.cpu += holding.cpu
            totals.memory += holding.memory
    if minus is not None:
        totals.count -= 1
        totals.disk -= minus.disk
        if minus.running:
            totals.running -= 1
            totals.cpu -= minus.cpu
            totals.memory -= minus.memory
    return totals
