"""Pure-Python route timing: earliest/latest start times and O(1) insertion checks.

Used by the construction heuristic (first solutions with two-caregiver visits), by urgent
insertion, and by replanning. A route is a list of items: visits (one copy of a visit), reload
stops at the station, and the caregiver's floating break. The break has no place of its own: it is
taken where the caregiver is (after the previous stop), so travel into it is 0 and travel out of it
starts at the previous stop's location. This matches the checker's rule (a gap must hold the
travel plus the break).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .problem import Caregiver, Problem, Visit

Window = tuple[int, int]


def next_point(wins: Sequence[Window], t: int) -> int | None:
    """The earliest time >= t inside one of the (sorted, disjoint-ish) windows."""
    for lo, hi in wins:
        if t <= hi:
            return max(t, lo)
    return None


def prev_point(wins: Sequence[Window], t: int) -> int | None:
    """The latest time <= t inside one of the windows."""
    for lo, hi in reversed(wins):
        if t >= lo:
            return min(t, hi)
    return None


def visit_windows(visit: Visit) -> tuple[Window, ...]:
    if visit.pinned_start is not None:
        return ((visit.pinned_start, visit.pinned_start),)
    return tuple(sorted((w.start, w.end) for w in visit.windows))


@dataclass(slots=True)
class Item:
    kind: str  # "visit" | "break" | "reload"
    loc: int  # break: -1 (takes the previous item's place)
    dur: int
    wins: tuple[Window, ...]
    visit_id: str | None = None
    copy: int = 0
    demand: int = 0


@dataclass(slots=True)
class Candidate:
    vehicle: int
    pos: int  # insert before items[pos]
    cost: int  # added travel
    earliest: int  # earliest start of the new visit there
    latest: int  # latest start of the new visit there


@dataclass
class RouteState:
    """One caregiver's route with cached earliest (a) and latest (z) start times per item."""

    problem: Problem
    cg: Caregiver
    items: list[Item] = field(default_factory=list)
    # Earliest departure from the station (shift start, or later when replanning).
    depart_min: int | None = None
    a: list[int] = field(default_factory=list)
    z: list[int] = field(default_factory=list)
    eloc: list[int] = field(default_factory=list)
    load: int = 0
    feasible: bool = True

    def __post_init__(self) -> None:
        self.mat = self.problem.travel_times[self.cg.travel_mode]
        self.refresh()

    @property
    def start_min(self) -> int:
        return self.cg.shift.start if self.depart_min is None else self.depart_min

    def refresh(self) -> bool:
        """Recompute a, z, effective locations and load; False when the route is infeasible."""
        mat, items = self.mat, self.items
        n = len(items)
        a = [0] * n
        eloc = [0] * n
        prev_loc, prev_end = self.cg.start_location, self.start_min
        ok = True
        for k, it in enumerate(items):
            if it.kind == "break":
                arr = prev_end
                eloc[k] = prev_loc
            else:
                arr = prev_end + mat[prev_loc][it.loc]
                eloc[k] = it.loc
                prev_loc = it.loc
            s = next_point(it.wins, arr)
            if s is None:
                ok = False
                s = arr
            a[k] = s
            prev_end = s + it.dur
        self.end_earliest = prev_end + mat[prev_loc][self.cg.return_location]
        if self.end_earliest > self.cg.shift.end:
            ok = False
        z = [0] * n
        nxt_latest, nxt_loc = self.cg.shift.end, self.cg.return_location
        nxt_is_break = False
        for k in range(n - 1, -1, -1):
            it = items[k]
            travel = 0 if nxt_is_break else mat[eloc[k]][nxt_loc]
            s = prev_point(it.wins, nxt_latest - travel - it.dur)
            if s is None or s < a[k]:
                ok = False
                s = a[k] if s is None else s
            z[k] = s
            nxt_latest = s
            nxt_is_break = it.kind == "break"
            # A break passes the travel on from its own effective place.
            nxt_loc = it.loc if it.kind != "break" else nxt_loc
        self.a, self.z, self.eloc = a, z, eloc
        self.load = self._max_load()
        cap = self.cg.meal_box_capacity
        if cap is not None and self.load > cap:
            ok = False
        self.feasible = ok
        return ok

    def _max_load(self) -> int:
        best = cur = 0
        for it in self.items:
            if it.kind == "reload":
                cur = 0
            else:
                cur += it.demand
                best = max(best, cur)
        return best

    def span(self) -> int:
        """Shortest possible time away from the station (leave as late as the route allows)."""
        if not any(it.kind != "break" for it in self.items):
            return 0
        mat, cg = self.mat, self.cg
        first = self.items[0]
        go = 0 if first.kind == "break" else mat[cg.start_location][first.loc]
        depart = max(self.start_min, self.z[0] - go)
        return self.schedule(depart)[1] - depart

    def schedule(self, depart: int) -> tuple[list[int], int]:
        """Earliest start of every item when leaving at ``depart``, and the return time."""
        mat, cg = self.mat, self.cg
        prev_loc, prev_end = cg.start_location, depart
        starts = []
        for it in self.items:
            arr = prev_end if it.kind == "break" else prev_end + mat[prev_loc][it.loc]
            s = next_point(it.wins, arr)
            s = arr if s is None else s
            starts.append(s)
            prev_end = s + it.dur
            if it.kind != "break":
                prev_loc = it.loc
        return starts, prev_end + mat[prev_loc][cg.return_location]

    # ---------------------------------------------------------------------------------
    # Insertion.

    def candidates(self, vehicle: int, loc: int, dur: int, wins: Sequence[Window],
                   demand: int = 0, min_pos: int = 0) -> list[Candidate]:
        """Every feasible place for a new visit (windows, shift, capacity; not max work)."""
        cap = self.cg.meal_box_capacity
        if cap is not None and demand and self.load + demand > cap and not any(
                it.kind == "reload" for it in self.items):
            return []
        mat, items, a, z, eloc = self.mat, self.items, self.a, self.z, self.eloc
        n = len(items)
        out: list[Candidate] = []
        station, ret = self.cg.start_location, self.cg.return_location
        shift_end = self.cg.shift.end
        for pos in range(min_pos, n + 1):
            if pos == 0:
                out_loc, end_x = station, self.start_min
            else:
                x = items[pos - 1]
                out_loc, end_x = eloc[pos - 1], a[pos - 1] + x.dur
            s = next_point(wins, end_x + mat[out_loc][loc])
            if s is None:
                if end_x > wins[-1][1]:
                    break  # later positions only start later
                continue
            # Latest start of the new visit so that what follows still fits.
            if pos == n:
                bound = shift_end - mat[loc][ret] - dur
                after_loc = ret
            else:
                y = items[pos]
                if y.kind == "break":
                    # u -> break -> y2: the break leaves from u's place.
                    if pos + 1 < n:
                        y2_loc, y2_latest = items[pos + 1].loc, z[pos + 1]
                        if items[pos + 1].kind == "break":  # never two breaks in a row
                            continue
                    else:
                        y2_loc, y2_latest = ret, shift_end
                    b_latest = prev_point(y.wins, y2_latest - mat[loc][y2_loc] - y.dur)
                    if b_latest is None:
                        continue
                    bound = b_latest - dur
                    after_loc = y2_loc
                else:
                    bound = z[pos] - mat[loc][y.loc] - dur
                    after_loc = y.loc
            latest = prev_point(wins, bound)
            if latest is None or latest < s:
                continue
            if cap is not None and demand and not self._capacity_ok(pos, demand, cap):
                continue
            cost = mat[out_loc][loc] + mat[loc][after_loc] - mat[out_loc][after_loc]
            out.append(Candidate(vehicle, pos, cost, s, latest))
        return out

    def _capacity_ok(self, pos: int, demand: int, cap: int) -> bool:
        # Load of the trip (between reloads) the new stop joins.
        lo = pos
        while lo > 0 and self.items[lo - 1].kind != "reload":
            lo -= 1
        hi = pos
        while hi < len(self.items) and self.items[hi].kind != "reload":
            hi += 1
        trip = sum(it.demand for it in self.items[lo:hi] if it.kind == "visit")
        return trip + demand <= cap

    def insert(self, pos: int, item: Item) -> bool:
        """Insert and refresh; on failure (e.g. max work) undo and return False."""
        self.items.insert(pos, item)
        ok = self.refresh()
        if ok and self.cg.max_work_minutes is not None and self.span() > self.cg.max_work_minutes:
            ok = False
        if not ok:
            del self.items[pos]
            self.refresh()
        return ok


def break_item(cg: Caregiver) -> Item | None:
    b = cg.rest_break
    if b is None:
        return None
    return Item("break", -1, b.minutes, ((b.window.start, b.window.end - b.minutes),))


def visit_item(visit: Visit, copy: int = 0, start: int | None = None) -> Item:
    wins = ((start, start),) if start is not None else visit_windows(visit)
    return Item("visit", visit.location, visit.duration, wins, visit.id, copy, visit.meal_boxes)


def common_start(wins: Sequence[Window], c1: Candidate, c2: Candidate) -> int | None:
    """The earliest start both places allow (for a two-caregiver visit)."""
    lo, hi = max(c1.earliest, c2.earliest), min(c1.latest, c2.latest)
    s = next_point(wins, lo)
    return s if s is not None and s <= hi else None


def place_break(state: RouteState) -> None:
    """Put the break item where it fits best: try each position, keep the first feasible one
    with the earliest return (routes built without a break, e.g. from a plan)."""
    item = break_item(state.cg)
    if item is None or any(it.kind == "break" for it in state.items):
        return
    best: tuple[int, int] | None = None
    max_work = state.cg.max_work_minutes
    for pos in range(len(state.items) + 1):
        state.items.insert(pos, item)
        if state.refresh() and (max_work is None or state.span() <= max_work):
            key = state.end_earliest
            if best is None or key < best[0]:
                best = (key, pos)
        del state.items[pos]
    if best is not None:
        state.items.insert(best[1], item)
    state.refresh()


__all__ = ["Candidate", "Item", "RouteState", "break_item", "common_start", "next_point",
           "place_break", "prev_point", "visit_item", "visit_windows"]
