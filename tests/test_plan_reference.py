"""plan_chunks works on integer positions (for memory); its chunks equal those of the string version.

``_reference_plan_chunks`` is the implementation before that change (a position dict over all
targets, groups as lists of strings, three packings), kept here verbatim but for names: the new one
must give IDENTICAL chunks, same order and content, whenever it uses as many requests; it may use
fewer (the full-chunk packing and the exhaustive search of :mod:`airflow_provider_dataforseo.chunks`
reach the lower bound where the three packings missed it), never more.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.targets import target_main_domain

if TYPE_CHECKING:
    from collections.abc import Sequence

SUFFIXES = ("com", "co.uk", "de", "blogspot.com", "github.io")


def _reference_plan_chunks(
    targets: Sequence[str], *, max_targets: int = 1000, max_main_domains: int = 100
) -> list[list[str]]:
    if not targets:
        return []
    position = {target: i for i, target in enumerate(targets)}
    groups: dict[str, list[str]] = {}
    for target in targets:
        groups.setdefault(target_main_domain(target), []).append(target)
    domains = sorted(groups, key=lambda d: (-len(groups[d]), position[groups[d][0]]))
    pieces = sum(-(-len(group) // max_targets) for group in groups.values())
    k = max(math.ceil(len(targets) / max_targets), math.ceil(pieces / max_main_domains))
    while True:
        bins = _ref_pack(domains, groups, k, max_targets, max_main_domains)
        if bins is None:
            bins = _ref_pack_round_robin(domains, groups, k, max_targets, max_main_domains)
        if bins is None:
            bins = _ref_pack_balanced(domains, groups, k, max_targets, max_main_domains)
        if bins is not None:
            break
        k += 1
    chunks = [sorted(chunk, key=position.__getitem__) for chunk in bins if chunk]
    chunks.sort(key=lambda chunk: position[chunk[0]])
    return chunks


def _ref_pack(
    domains: Sequence[str], groups: dict[str, list[str]], k: int, max_targets: int, max_main_domains: int
) -> list[list[str]] | None:
    bins: list[list[str]] = [[] for _ in range(k)]
    slots = [max_main_domains] * k
    heap = [(-max_targets, i) for i in range(k)]
    for domain in domains:
        rest = groups[domain]
        while rest:
            if not heap:
                return None
            neg_room, i = heapq.heappop(heap)
            room = -neg_room
            placed, rest = rest[:room], rest[room:]
            bins[i].extend(placed)
            slots[i] -= 1
            room -= len(placed)
            if slots[i] and room:
                heapq.heappush(heap, (-room, i))
    return bins


def _ref_pack_round_robin(
    domains: Sequence[str], groups: dict[str, list[str]], k: int, max_targets: int, max_main_domains: int
) -> list[list[str]] | None:
    if len(domains) > k * max_main_domains:
        return None
    bins: list[list[str]] = [[] for _ in range(k)]
    for i, domain in enumerate(domains):
        bins[i % k].extend(groups[domain])
    return bins if all(len(chunk) <= max_targets for chunk in bins) else None


def _ref_pack_balanced(
    domains: Sequence[str], groups: dict[str, list[str]], k: int, max_targets: int, max_main_domains: int
) -> list[list[str]] | None:
    n = sum(len(groups[domain]) for domain in domains)
    if n > k * max_targets or len(domains) > k * max_main_domains:
        return None
    taken = [0] * len(domains)

    def take(index: int, amount: int) -> list[str]:
        start = taken[index]
        taken[index] = start + amount
        return groups[domains[index]][start : start + amount]

    alive = sorted((len(groups[domain]), i) for i, domain in enumerate(domains))
    lo = 0
    rest = n
    bins: list[list[str]] = []
    for r in range(k, 1, -1):
        count = len(alive) - lo
        if not count:
            break
        if count > r * (max_main_domains - 1) + 1:
            m, top, j = max_main_domains, len(alive), max_main_domains
            total = sum(size for size, _ in alive[lo : lo + m])
            while total < rest - (r - 1) * max_targets and j > 0:
                j -= 1
                total += alive[top - (m - j)][0] - alive[lo + j][0]
            if total > max_targets or total < rest - (r - 1) * max_targets:
                return None
            chosen = alive[lo : lo + j] + alive[top - (m - j) : top]
            bins.append([target for size, index in chosen for target in take(index, size)])
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
        chunk = [target for size, index in chosen for target in take(index, size)]
        if amount:
            chunk.extend(take(index_l, amount))
        if len(chunk) > max_targets or len(chosen) + (amount > 0) > max_main_domains:
            return None
        bins.append(chunk)
        lo += j
        del alive[top - (m - j) : top]
        rest -= len(chunk)
        if size_l > amount:
            bisect.insort(alive, (size_l - amount, index_l), lo=lo)
    last = [target for size, index in alive[lo:] for target in take(index, size)]
    if len(last) > max_targets or len(alive) - lo > max_main_domains:
        return None
    bins.append(last)
    return bins


def _targets(sizes: list[int], order: str, seed: int) -> list[str]:
    """Distinct targets of main domains of the given sizes: domains, subdomains, pages (www or not)."""
    combos = [(i, page) for i, size in enumerate(sizes) for page in range(size)]
    if order == "interleaved":
        combos.sort(key=lambda combo: (combo[1], combo[0]))
    elif order == "shuffled":
        random.Random(seed).shuffle(combos)
    out = []
    for i, page in combos:
        domain = f"d{i}.{SUFFIXES[i % len(SUFFIXES)]}"
        if page == 0:
            out.append(domain)
        elif page % 7 == 1:
            out.append(f"s{page}.{domain}")
        else:
            out.append(f"https://{'www.' if page % 3 == 0 else ''}{domain}/p{page}")
    return out


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[str], int, int]:
    """Targets and limits that reach every packing: worst fit, round robin, balanced, k > bound."""
    max_targets = draw(st.integers(1, 60))
    max_main_domains = draw(st.integers(1, 8))
    big = draw(st.lists(st.integers(1, 3 * max_targets), max_size=3))
    small = draw(st.lists(st.integers(1, max(1, max_targets // 4)), max_size=60))
    sizes = big + small
    if not sizes:
        sizes = [1]
    rnd = draw(st.randoms(use_true_random=False))
    rnd.shuffle(sizes)
    order = draw(st.sampled_from(("grouped", "interleaved", "shuffled")))
    return _targets(sizes, order, draw(st.integers(0, 2**16))), max_targets, max_main_domains


def _assert_same_or_better(chunks: list[list[str]], reference: list[list[str]]) -> None:
    assert len(chunks) <= len(reference)
    if len(chunks) == len(reference):
        assert chunks == reference


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
@example((_targets([1, 1, 73], "grouped", 0), 36, 2))  # worst fit fails, round robin / balanced
@example((_targets([4, 1, 1], "grouped", 0), 3, 2))
@example((_targets([5, 2, 7], "shuffled", 0), 3, 1))
def test_plan_chunks_equals_the_string_implementation(instance: tuple[list[str], int, int]) -> None:
    targets, max_targets, max_main_domains = instance
    limits = {"max_targets": max_targets, "max_main_domains": max_main_domains}
    _assert_same_or_better(plan_chunks(targets, **limits), _reference_plan_chunks(targets, **limits))


def test_plan_chunks_equals_the_string_implementation_at_api_limits() -> None:
    rnd = random.Random(5)
    for seed, order in enumerate(("grouped", "interleaved", "shuffled") * 2):
        # a Zipf-like mix: a few main domains over 1000 targets, a long tail of small ones
        sizes = [rnd.randint(1000, 2500) for _ in range(2)] + [1 + int(400 / r) for r in range(1, 600)]
        targets = _targets(sizes, order, seed)
        _assert_same_or_better(plan_chunks(targets), _reference_plan_chunks(targets))
    # the bound counterexample (a full domain plus 199 small ones) and a single target
    for sizes in ([1000] + [5] * 199, [1]):
        targets = _targets(sizes, "shuffled", 1)
        _assert_same_or_better(plan_chunks(targets), _reference_plan_chunks(targets))
