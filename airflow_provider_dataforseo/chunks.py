"""Request chunks: the one planner that splits normalised targets into as few valid requests as it can.

Pure module: no Airflow import, no network. The limits come from the endpoint's doc
(``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/``, field ``targets``): one
request holds at most 1000 targets (T) from at most 100 different main domains (D). A main domain
may be split over several requests; each piece takes one main-domain slot of its request.

Write n for the number of targets and p for the number of pieces the main domains need at least
(the sum over main domains of ``ceil(size/T)``; p = d, the number of main domains, when none has
more than T targets). No plan has fewer than ``k = max(ceil(n/T), ceil(p/D))`` requests (the lower
bound, :func:`lower_bound` at the API's limits). :func:`plan_chunks` tries k, then k+1, ... and
returns the first plan that one of these finds (cheapest first):

1. worst-fit decreasing with splitting;
2. round robin;
3. balanced splitting, which always succeeds when ``n <= k*T`` and ``p <= k*(D-1) + 1`` (proof
   at ``_pack_balanced``);
4. full chunks, only in the narrow band ``k*(D-1) + 1 < p <= k*D`` where splits are scarce: with
   ``e = p - k*(D-1) - 1``, e chunks of D whole main domains, the rest to 3 (which then has its
   guarantee's room). Two ways to pick them, the cheaper first: one window of e*D consecutive
   sizes dealt largest first to the lightest chunk, then swaps (``_pack_dealt``); or greedily,
   each as full as a window of smallest and largest main domains plus one-for-one upgrades
   makes it (``_pack_full_chunks``);
5. an exhaustive search (``_search``), complete but capped at :data:`SEARCH_BUDGET` units of
   work per plan size (a candidate chunk costs the number of distinct sizes left). It picks one
   chunk at a time among the chunks that are full (D pieces, or T targets with at most one piece
   of a main domain that goes on to later chunks, or all that is left), memoising the multisets
   of remaining sizes that failed.

Why 5 is complete: in any plan, moving targets of split main domains around a cycle of chunks
(chunk 1 -A- chunk 2 -B- ... -Z- chunk 1) keeps every chunk's size and can empty one piece, so some
optimal plan's split graph is a forest; its leaves are chunks with at most one piece of a split
main domain; removing one leaves a smaller instance. A leaf chunk may be made full (a target more
in it only shrinks what is left), so only full chunks need trying.

**When the count can exceed the lower bound while a plan of that size exists:** only when k is in
the band ``k*(D-1) + 1 < p <= k*D`` AND packings 1-4 fail AND the search runs out of its budget
before it finds a plan or proves there is none; the planner then moves on to k+1, which packing 3
guarantees when ``k <= D`` (up to 100 requests at the API's limits). Out of the band (at the
API's limits: whenever the main domains need at most ``99*k + 1`` pieces) the count is the lower
bound. In the band the search finishes when the sizes take few distinct values (it works on
multisets), as in issue 15's hard case (two chunks of exactly 100 main domains and 1000
targets); the benchmark's adversarial 100,000 targets (10,065 pieces, band of 101) are packed by
4. tests/test_chunks.py checks the count against an exact solver on 1,500 small tight instances.

Order is deterministic: targets keep their input order inside a chunk, chunks are ordered by their
earliest target. Memory: the planner works on integer positions (4 bytes a target).
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from typing import TYPE_CHECKING

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.targets import main_domain, target_host

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: Work the exhaustive search (packing 5) may do for one plan size before it gives up and lets the
#: planner try one request more: each candidate chunk costs the number of distinct piece sizes
#: left (about 0.1 s of CPU per plan size at most).
SEARCH_BUDGET = 100_000

#: A piece of a plan: ``(group, start, stop)``, the group's positions ``start:stop``.
Piece = tuple[int, int, int]


def lower_bound(n_targets: int, n_main_domains: int) -> int:
    """The fewest requests any plan can use: ``max(ceil(n/1000), ceil(d/100))``."""
    return max(
        math.ceil(n_targets / api.MAX_TARGETS_PER_REQUEST),
        math.ceil(n_main_domains / api.MAX_MAIN_DOMAINS_PER_REQUEST),
    )


def plan_chunks(
    targets: Sequence[str],
    *,
    max_targets: int = api.MAX_TARGETS_PER_REQUEST,
    max_main_domains: int = api.MAX_MAIN_DOMAINS_PER_REQUEST,
) -> list[list[str]]:
    """Split normalised targets into as few valid requests as the planner finds (see the module doc).

    Each chunk holds at most ``max_targets`` targets from at most ``max_main_domains`` main
    domains (by :func:`~airflow_provider_dataforseo.targets.target_main_domain`).

    :param targets: normalised, de-duplicated targets (see
        :func:`~airflow_provider_dataforseo.targets.normalise_targets`).
    :param max_targets: targets per request (the API's limit by default).
    :param max_main_domains: main domains per request (the API's limit by default).
    :return: the chunks; empty when there are no targets.
    """
    if not targets:
        return []
    # Integer positions only, no per-target dict or list entry: main domains are numbered in
    # first-seen order and group g is the array of its targets' positions, ascending (4 bytes a
    # target; 1,000,000 targets take ~4 MB here, where a position dict took ~70 MB).
    code = "i" if len(targets) < 2**31 else "q"
    groups: list[array[int]] = []
    numbers: dict[str, int] = {}  # main domain -> group number
    # a target's origin (target_origin) -> its main domain's group: one slice a target, one PSL
    # look-up a host (http and https origins share one), kept out of main_domain()'s cache
    by_origin: dict[str, array[int]] = {}
    by_host: dict[str, array[int]] = {}
    for i, target in enumerate(targets):
        end = target.find("/", 8)  # target_origin(target), inlined: a call costs ~5 ms a 100,000
        origin = target if end < 0 else target[:end]
        group = by_origin.get(origin)
        if group is None:
            host = target_host(target)
            group = by_host.get(host)
            if group is None:
                domain = main_domain.__wrapped__(host) or host  # target_main_domain(), not memoised
                number = numbers.get(domain)
                if number is None:
                    number = numbers[domain] = len(groups)
                    groups.append(array(code))
                group = by_host[host] = groups[number]
            by_origin[origin] = group
        group.append(i)
    del by_origin, by_host, numbers
    bins = plan_pieces([len(group) for group in groups], max_targets, max_main_domains)
    # targets in input order inside a chunk, chunks ordered by their earliest target
    chunks: list[array[int]] = []
    for pieces in bins:
        positions = array(code)
        for number, start, stop in pieces:
            positions.extend(groups[number][start:stop])
        if positions:
            chunks.append(array(code, sorted(positions)))  # 4 bytes a target, not a Python int
    del groups
    chunks.sort(key=lambda positions: positions[0])
    return [[targets[i] for i in positions] for positions in chunks]


def plan_pieces(
    sizes: Sequence[int], max_targets: int, max_main_domains: int, *, budget: int = SEARCH_BUDGET
) -> list[list[Piece]]:
    """The plan for main domains of the given sizes, as pieces (see the module doc).

    :param sizes: group number -> its number of targets (each >= 1), groups in first-seen order.
    :param max_targets: targets per request (T, >= 1).
    :param max_main_domains: pieces per request (D, >= 1).
    :param budget: candidate chunks the exhaustive search may try per plan size.
    :return: the chunks, each a list of ``(group, start, stop)`` pieces; a group's pieces cover
        ``0:size`` once.
    """
    if not sizes:
        return []
    # largest first, ties by group number (sorted() is stable)
    order = sorted(range(len(sizes)), key=[-size for size in sizes].__getitem__)
    n = sum(sizes)
    pieces = sum(-(-size // max_targets) for size in sizes)
    k = max(math.ceil(n / max_targets), math.ceil(pieces / max_main_domains))
    while True:
        bins = (
            _pack(order, sizes, k, max_targets, max_main_domains)
            or _pack_round_robin(order, sizes, k, max_targets, max_main_domains)
            or _pack_balanced(order, sizes, k, max_targets, max_main_domains)
        )
        if bins is None and pieces > k * (max_main_domains - 1) + 1:
            # the dealt window first: ~4x cheaper, and enough for the benchmark's adversarial input
            bins = _pack_dealt(order, sizes, k, max_targets, max_main_domains) or _pack_full_chunks(
                order, sizes, k, max_targets, max_main_domains
            )
            if bins is None:
                bins = _search(order, sizes, k, max_targets, max_main_domains, budget)
        if bins is not None:
            return bins
        k += 1


def _pack(
    order: Sequence[int], sizes: Sequence[int], k: int, max_targets: int, max_main_domains: int
) -> list[list[Piece]] | None:
    """Worst-fit decreasing with splitting into ``k`` bins, or ``None`` when the groups do not fit.

    Each group (largest first) goes into the bin with the most room for targets that still has a
    slot, and is split over the emptiest bins only when it does not fit.
    """
    bins: list[list[Piece]] = [[] for _ in range(k)]
    slots = [max_main_domains] * k
    heap = [(-max_targets, i) for i in range(k)]  # (-room, bin) of bins with a slot and room
    for group in order:
        start, size = 0, sizes[group]
        while start < size:
            if not heap:
                return None
            neg_room, i = heapq.heappop(heap)
            amount = min(-neg_room, size - start)
            bins[i].append((group, start, start + amount))
            start += amount
            slots[i] -= 1
            room = -neg_room - amount
            if slots[i] and room:
                heapq.heappush(heap, (-room, i))
    return bins


def _pack_round_robin(
    order: Sequence[int], sizes: Sequence[int], k: int, max_targets: int, max_main_domains: int
) -> list[list[Piece]] | None:
    """Deal the groups (largest first) to ``k`` bins in turn, unsplit, or ``None``.

    It fits whenever ``d <= k*D`` and ``n <= k*(T - s_max)`` (bin i gets at most s_max plus, for
    each later group, at most the mean of the k larger groups dealt just before it).
    """
    if len(order) > k * max_main_domains:
        return None
    bins: list[list[Piece]] = [[] for _ in range(k)]
    totals = [0] * k
    for i, group in enumerate(order):
        bins[i % k].append((group, 0, sizes[group]))
        totals[i % k] += sizes[group]
    return bins if max(totals) <= max_targets else None


def _pack_balanced(
    order: Sequence[int],
    sizes: Sequence[int],
    k: int,
    max_targets: int,
    max_main_domains: int,
    offsets: Sequence[int] | None = None,
) -> list[list[Piece]] | None:
    """Balanced splitting into ``k`` bins, or ``None``; fits whenever n <= k*T and d <= k*(D-1) + 1.

    Each bin (``r`` bins left) takes ``m = floor(d/r)`` whole groups, the ``j`` smallest and
    ``m - j`` largest besides the largest group ``L``, with the fewest large ones that leave at most
    ``(r-1)*T`` targets, plus the piece of ``L`` still needed; the rest of ``L`` goes back in.
    While ``d > r*(D-1) + 1`` (never, when it holds at the start) a bin takes ``D`` whole groups
    chosen the same way instead, when some choice fits: a best effort beyond the guarantee.

    Proof of the guarantee by induction on k (k = 1 is trivial): with sizes sorted, the first bin
    takes m whole groups W and a piece a = clamp(n - (k-1)*T - sum(W), 0, s_L) of L. Averages give
    sum(m smallest) <= m*n/d <= T and, as m+1 > d/k, sum(the d-1-m smallest) <= (k-1)*T, so sum(W)
    walks from <= T up to >= n - (k-1)*T - s_L in steps < s_L, and the window between those two
    values is >= s_L wide: some j puts sum(W) inside it. The bin then has m+1 <= D pieces and <= T
    targets, and what is left has <= (k-1)*T targets and d - m <= (k-1)*(D-1) + 1 groups.

    :param order: group numbers, largest group first (their remaining sizes).
    :param sizes: group number -> its remaining size.
    :param offsets: group number -> the position its remaining targets start at (0 by default).
    """
    n = sum(sizes[group] for group in order)
    if n > k * max_targets or len(order) > k * max_main_domains:
        return None
    taken = [0 if offsets is None else offsets[group] for group in order]

    def take(chunk: list[Piece], index: int, amount: int) -> None:
        start = taken[index]
        taken[index] = start + amount
        chunk.append((order[index], start, start + amount))

    # (remaining size, index) ascending; alive[lo:] is what is left
    alive = sorted((sizes[group], i) for i, group in enumerate(order))
    lo = 0
    rest = n
    bins: list[list[Piece]] = []
    for r in range(k, 1, -1):
        count = len(alive) - lo
        if not count:
            break
        chunk: list[Piece] = []
        if count > r * (max_main_domains - 1) + 1:  # no room for splits: D whole groups
            m, top, j = max_main_domains, len(alive), max_main_domains
            total = sum(size for size, _ in alive[lo : lo + m])
            while total < rest - (r - 1) * max_targets and j > 0:
                j -= 1
                total += alive[top - (m - j)][0] - alive[lo + j][0]
            if total > max_targets or total < rest - (r - 1) * max_targets:
                return None
            for size, index in alive[lo : lo + j] + alive[top - (m - j) : top]:
                take(chunk, index, size)
            bins.append(chunk)
            lo += j
            del alive[top - (m - j) : top]
            rest -= total
            continue
        size_l, index_l = alive.pop()
        top = len(alive)
        m = count // r
        need = rest - (r - 1) * max_targets
        j = m
        total = sum(size for size, _ in alive[lo : lo + m])
        while total < need - size_l and j > 0:
            j -= 1
            total += alive[top - (m - j)][0] - alive[lo + j][0]
        amount = min(size_l, max(0, need - total))
        chosen = alive[lo : lo + j] + alive[top - (m - j) : top]
        for size, index in chosen:
            take(chunk, index, size)
        if amount:
            take(chunk, index_l, amount)
        held = sum(stop - start for _, start, stop in chunk)
        if held > max_targets or len(chunk) > max_main_domains:
            return None  # cannot happen under the condition above; never return an invalid plan
        bins.append(chunk)
        lo += j
        del alive[top - (m - j) : top]
        rest -= held
        if size_l > amount:
            bisect.insort(alive, (size_l - amount, index_l), lo=lo)
    last: list[Piece] = []
    for size, index in alive[lo:]:
        take(last, index, size)
    if sum(size for size, _ in alive[lo:]) > max_targets or len(last) > max_main_domains:
        return None
    bins.append(last)
    return bins


def _full_chunk(alive: list[tuple[int, int]], max_targets: int, m: int) -> list[int] | None:
    """Indices into ``alive`` (ascending sizes) of ``m`` entries with the largest sum <= ``max_targets``
    this finds (a window of the j smallest and m-j largest, then one-for-one upgrades), or ``None``.
    """
    size = len(alive)
    if size < m or sum(s for s, _ in alive[:m]) > max_targets:
        return None
    j = m  # the j smallest and the m-j largest
    total = sum(s for s, _ in alive[:m])
    while j > 0:
        step = alive[size - (m - j) - 1][0] - alive[j - 1][0]
        if total + step > max_targets:
            break
        total += step
        j -= 1
    chosen = list(range(j)) + list(range(size - (m - j), size))
    middle_lo, middle_hi = j, size - (m - j)  # unchosen: alive[middle_lo:middle_hi]
    keys = [s for s, _ in alive]
    used: set[int] = set()
    slack = max_targets - total
    for slot in range(j - 1, -1, -1):  # upgrade the small ones, largest first
        if not slack or middle_lo >= middle_hi:
            break
        current = alive[chosen[slot]][0]
        q = bisect.bisect_right(keys, current + slack, middle_lo, middle_hi) - 1
        while q >= middle_lo and q in used:
            q -= 1
        if q >= middle_lo and keys[q] > current:
            used.add(q)
            slack -= keys[q] - current
            chosen[slot] = q
    return chosen


def _pack_full_chunks(
    order: Sequence[int], sizes: Sequence[int], k: int, max_targets: int, max_main_domains: int
) -> list[list[Piece]] | None:
    """Packing 4 of the module doc: e chunks of D whole groups, then balanced splitting, or ``None``."""
    alive = sorted((sizes[group], group) for group in order)
    pieces = sum(-(-size // max_targets) for size in sizes)
    bins: list[list[Piece]] = []
    r = k
    while r > 1 and pieces > r * (max_main_domains - 1) + 1:
        chosen = _full_chunk(alive, max_targets, max_main_domains)
        if chosen is None:
            return None
        bins.append([(alive[i][1], 0, alive[i][0]) for i in chosen])
        pieces -= len(chosen)  # whole groups of at most T targets: one piece each
        taken = set(chosen)
        alive = [entry for i, entry in enumerate(alive) if i not in taken]
        r -= 1
    left = [group for _, group in sorted(alive, key=lambda entry: (-entry[0], entry[1]))]
    tail = _pack_balanced(left, sizes, r, max_targets, max_main_domains)
    if tail is None:
        return None
    return bins + tail


def _pack_dealt(
    order: Sequence[int], sizes: Sequence[int], k: int, max_targets: int, max_main_domains: int
) -> list[list[Piece]] | None:
    """Packing 4, second form: e chunks of D whole groups dealt from one window, then balanced splitting.

    With ``r = k - e`` chunks left for balanced splitting, the e full chunks must hold at least
    ``n - r*T`` targets and each at most T. The e*D groups are a window of consecutive sizes
    (ascending order), the highest whose sum is at most e*T, dealt to the e chunks by
    ``_deal``; lower windows are tried while that fails (at most 64 windows).
    """
    n = sum(sizes)
    pieces = sum(-(-size // max_targets) for size in sizes)
    e = pieces - k * (max_main_domains - 1) - 1
    r = k - e
    m = e * max_main_domains
    eligible = sorted((sizes[group], group) for group in order if sizes[group] <= max_targets)
    if e <= 0 or r < 1 or len(eligible) < m:
        return None
    least = n - r * max_targets
    prefix = [0]
    for size, _ in eligible:
        prefix.append(prefix[-1] + size)
    top = len(eligible) - m
    while top >= 0 and prefix[top + m] - prefix[top] > e * max_targets:
        top -= 1
    for start in range(top, max(-1, top - 64), -1):
        if prefix[start + m] - prefix[start] < least:
            return None
        window = eligible[start : start + m][::-1]
        bins = _deal(window, e, max_targets, max_main_domains)
        if bins is None:
            continue
        inside = {group for _, group in window}
        left = [group for group in order if group not in inside]
        tail = _pack_balanced(left, sizes, r, max_targets, max_main_domains)
        return None if tail is None else bins + tail
    return None


def _deal(
    window: list[tuple[int, int]], e: int, max_targets: int, max_main_domains: int
) -> list[list[Piece]] | None:
    """Deal ``e * D`` groups (``(size, group)``, largest first) into e chunks of D, each <= T, or None.

    Largest first to the lightest chunk with a slot left (LPT), then one-for-one swaps between the
    heaviest and the lightest chunk while the heaviest is over T (at most 50 swaps a chunk).
    """
    heap = [(0, chunk) for chunk in range(e)]
    members: list[list[tuple[int, int]]] = [[] for _ in range(e)]
    totals = [0] * e
    for size, group in window:
        _, chunk = heapq.heappop(heap)
        members[chunk].append((size, group))
        totals[chunk] += size
        if len(members[chunk]) < max_main_domains:
            heapq.heappush(heap, (totals[chunk], chunk))
    for _ in range(50 * e):
        hi = max(range(e), key=totals.__getitem__)
        over = totals[hi] - max_targets
        if over <= 0:
            return [[(group, 0, size) for size, group in chunk] for chunk in members]
        lo = min(range(e), key=totals.__getitem__)
        limit = min(over, max_targets - totals[lo])  # the lightest chunk stays <= T
        small = sorted(members[lo])
        keys = [size for size, _ in small]
        swap = None
        best = 0
        for a_index, (a, _) in enumerate(members[hi]):
            # the smallest b >= a - limit: the heaviest loses a - b <= limit
            b_index = bisect.bisect_left(keys, a - limit)
            if b_index < len(keys) and a - keys[b_index] > best:
                best = a - keys[b_index]
                swap = (a_index, small[b_index])
                if best == limit:
                    break
        if swap is None:
            return None
        a_index, b_entry = swap
        a_entry = members[hi][a_index]
        members[hi][a_index] = b_entry
        members[lo].remove(b_entry)
        members[lo].append(a_entry)
        totals[hi] += b_entry[0] - a_entry[0]
        totals[lo] += a_entry[0] - b_entry[0]
    return None


class _BudgetExceeded(Exception):
    """The exhaustive search tried its budget of candidate chunks."""


def _search(
    order: Sequence[int],
    sizes: Sequence[int],
    k: int,
    max_targets: int,
    max_main_domains: int,
    budget: int,
) -> list[list[Piece]] | None:
    """Packing 5 of the module doc: a ``k``-bin plan, or ``None`` when none exists or the budget ran out.

    The search works on the multiset of remaining piece sizes (size -> how many); the groups are
    put back into the chunks it found at the end.
    """
    tried = 0
    failed: set[tuple[int, tuple[tuple[int, int], ...]]] = set()
    Choice = tuple[list[tuple[int, int]], "tuple[int, int] | None"]

    def solve(counts: dict[int, int], r: int) -> list[Choice] | None:
        nonlocal tried
        total = sum(size * count for size, count in counts.items())
        pieces = sum(count for count in counts.values())
        if total <= max_targets and pieces <= max_main_domains:
            return [(sorted(counts.items()), None)]  # all that is left, in one chunk
        need = sum(-(-size // max_targets) * count for size, count in counts.items())
        if r <= 1 or total > r * max_targets or need > r * max_main_domains:
            return None
        key = (r, tuple(sorted(counts.items())))
        if key in failed:
            return None
        values = sorted(counts, reverse=True)
        for whole, partial in _candidates(values, counts, max_targets, max_main_domains):
            tried += len(counts)  # a candidate costs about one copy of the counts
            if tried > budget:
                raise _BudgetExceeded
            left = dict(counts)
            for size, count in whole:
                left[size] -= count
            if partial is not None:
                size, amount = partial
                left[size] -= 1
                if size > amount:
                    left[size - amount] = left.get(size - amount, 0) + 1
            plan = solve({size: count for size, count in left.items() if count}, r - 1)
            if plan is not None:
                return [(whole, partial), *plan]
        failed.add(key)
        return None

    counts: dict[int, int] = {}
    for group in order:
        counts[sizes[group]] = counts.get(sizes[group], 0) + 1
    try:
        choices = solve(counts, k)
    except _BudgetExceeded:
        return None
    if choices is None:
        return None
    # put the groups back: size -> the (group, start) of each remaining piece of that size
    items: dict[int, list[tuple[int, int]]] = {}
    for group in reversed(order):
        items.setdefault(sizes[group], []).append((group, 0))
    bins: list[list[Piece]] = []
    for whole, partial in choices:
        chunk: list[Piece] = []
        for size, count in whole:
            for _ in range(count):
                group, start = items[size].pop()
                chunk.append((group, start, start + size))
        if partial is not None:
            size, amount = partial
            group, start = items[size].pop()
            chunk.append((group, start, start + amount))
            if size > amount:
                items.setdefault(size - amount, []).append((group, start + amount))
        bins.append(chunk)
    return bins


def _candidates(
    values: list[int], counts: dict[int, int], max_targets: int, max_main_domains: int
) -> Iterator[tuple[list[tuple[int, int]], tuple[int, int] | None]]:
    """The full chunks of the search: ``(whole, partial)`` with whole = [(size, how many)] and
    partial = (size, amount taken) or ``None``, larger sizes first.

    Full: D whole pieces, or T targets with at most one partial piece. (A chunk holding all that is
    left is the search's last chunk, taken there.)

    :param values: the distinct sizes, descending.
    """
    chosen: list[tuple[int, int]] = []

    def walk(i: int, used: int, total: int) -> Iterator[tuple[list[tuple[int, int]], tuple[int, int] | None]]:
        if used == max_main_domains:
            yield list(chosen), None
            return
        gap = max_targets - total
        # a partial piece filling the chunk: a size > gap (taking gap)
        for size in values:
            if size <= gap:
                break
            if counts[size] > sum(c for s, c in chosen if s == size):
                yield list(chosen), (size, gap)
        for index in range(i, len(values)):
            size = values[index]
            if size > gap:
                continue
            most = min(counts[size], max_main_domains - used, gap // size)
            for count in range(most, 0, -1):
                chosen.append((size, count))
                if size * count == gap:
                    yield list(chosen), None  # exactly T targets
                else:
                    yield from walk(index + 1, used + count, total + size * count)
                chosen.pop()

    yield from walk(0, 0, 0)


__all__ = ["SEARCH_BUDGET", "lower_bound", "plan_chunks", "plan_pieces"]
