"""The request planner (:mod:`airflow_provider_dataforseo.chunks`) against an exact solver.

The exact solver is an integer program solved by OR-Tools' CP-SAT (a test dependency only): x[i][b]
targets of main domain i in request b, y[i][b] whether i has a piece in b; every domain fully
placed, every request <= T targets and <= D pieces. The planner must use exactly the fewest
requests the solver finds, on thousands of small tight instances whose limits are scaled down
(T of 6-12 targets, D of 2-4 main domains), where its search never runs out of budget.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from ortools.sat.python import cp_model

from airflow_provider_dataforseo.chunks import lower_bound, plan_chunks, plan_pieces
from airflow_provider_dataforseo.targets import target_main_domain

SUFFIXES = ("com", "co.uk", "de", "blogspot.com", "github.io")


def _feasible(sizes: list[int], k: int, max_targets: int, max_main_domains: int) -> bool:
    """Whether ``k`` requests can hold main domains of these sizes (exact, CP-SAT)."""
    model = cp_model.CpModel()
    x = [
        [model.new_int_var(0, min(size, max_targets), f"x{i}_{b}") for b in range(k)]
        for i, size in enumerate(sizes)
    ]
    y = [[model.new_bool_var(f"y{i}_{b}") for b in range(k)] for i in range(len(sizes))]
    for i, size in enumerate(sizes):
        model.add(sum(x[i]) == size)
        for b in range(k):
            model.add(x[i][b] <= min(size, max_targets) * y[i][b])
    for b in range(k):
        model.add(sum(x[i][b] for i in range(len(sizes))) <= max_targets)
        model.add(sum(y[i][b] for i in range(len(sizes))) <= max_main_domains)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    assert status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.INFEASIBLE)
    return status != cp_model.INFEASIBLE


def _bound(sizes: list[int], max_targets: int, max_main_domains: int) -> int:
    pieces = sum(-(-size // max_targets) for size in sizes)
    return max(math.ceil(sum(sizes) / max_targets), math.ceil(pieces / max_main_domains))


def _optimum(sizes: list[int], max_targets: int, max_main_domains: int) -> int:
    k = _bound(sizes, max_targets, max_main_domains)
    while not _feasible(sizes, k, max_targets, max_main_domains):
        k += 1
    return k


def _assert_valid(
    sizes: list[int], bins: list[list[tuple[int, int, int]]], max_targets: int, max_main_domains: int
) -> None:
    covered: dict[int, list[tuple[int, int]]] = {}
    for pieces in bins:
        assert sum(stop - start for _, start, stop in pieces) <= max_targets
        assert len(pieces) == len({group for group, _, _ in pieces}) <= max_main_domains
        for group, start, stop in pieces:
            covered.setdefault(group, []).append((start, stop))
    for group, size in enumerate(sizes):
        position = 0
        for start, stop in sorted(covered[group]):
            assert start == position < stop
            position = stop
        assert position == size


def _tight(rnd: random.Random) -> tuple[list[int], int, int]:
    """Main-domain sizes whose lower bound k is tight on both limits: d near k*D, n near k*T."""
    max_targets = rnd.choice((6, 10, 12))
    max_main_domains = rnd.choice((2, 3, 4))
    k = rnd.choice((2, 3, 4))
    d = rnd.randint(k * (max_main_domains - 1), k * max_main_domains)
    n = rnd.randint(max(d, k * max_targets - 4), max(d, k * max_targets))
    cuts = sorted(rnd.sample(range(1, n), d - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)], max_targets, max_main_domains


def test_planner_uses_the_fewest_requests_an_exact_solver_finds() -> None:
    rnd = random.Random(15)
    above_bound = in_band = 0
    for _ in range(1500):
        sizes, max_targets, max_main_domains = _tight(rnd)
        bins = plan_pieces(sizes, max_targets, max_main_domains)
        _assert_valid(sizes, bins, max_targets, max_main_domains)
        optimum = _optimum(sizes, max_targets, max_main_domains)
        assert len(bins) == optimum, (sizes, max_targets, max_main_domains)
        k = _bound(sizes, max_targets, max_main_domains)
        pieces = sum(-(-size // max_targets) for size in sizes)
        if pieces <= k * (max_main_domains - 1) + 1:
            assert len(bins) == k  # out of the band: always the lower bound
        else:
            in_band += 1
        above_bound += optimum > k
    # the instances reach the hard band and the cases where no plan of the bound's size exists
    assert in_band > 300
    assert above_bound > 30


def _targets(sizes: list[int], seed: int) -> list[str]:
    """Distinct targets of main domains of the given sizes (domains, subdomains, pages), shuffled."""
    out = []
    for i, size in enumerate(sizes):
        domain = f"d{i}.{SUFFIXES[i % len(SUFFIXES)]}"
        out += [domain] + [f"https://{'www.' if page % 3 else ''}{domain}/p{page}" for page in range(1, size)]
    random.Random(seed).shuffle(out)
    return out


def _assert_valid_chunks(targets: list[str], chunks: list[list[str]]) -> None:
    assert sorted(target for chunk in chunks for target in chunk) == sorted(targets)
    for chunk in chunks:
        assert len(chunk) <= 1000
        assert len({target_main_domain(target) for target in chunk}) <= 100


def test_hard_case_two_requests_of_exactly_100_main_domains_and_1000_targets() -> None:
    """Issue 15's example: n = 2,000, d = 200, bound 2; the three packings before gave 3."""
    sizes = [422, 354, 106, 22] + [1] * 96 + [429, 427, 47] + [1] * 97
    targets = _targets(sizes, seed=15)
    assert lower_bound(len(targets), len(sizes)) == 2
    chunks = plan_chunks(targets)
    assert len(chunks) == 2
    _assert_valid_chunks(targets, chunks)
    assert sorted(len(chunk) for chunk in chunks) == [1000, 1000]


def test_no_plan_of_the_bound_s_size_gives_the_next_size() -> None:
    """1000 targets of one main domain plus 199 of 5: bound 2, but no 2-request plan exists."""
    sizes = [1000] + [5] * 199
    assert not _feasible([1000, 5, 5, 5, 5], 1, 1000, 4)  # sanity: the solver says no when no
    targets = _targets(sizes, seed=1)
    chunks = plan_chunks(targets)
    assert len(chunks) == 3
    _assert_valid_chunks(targets, chunks)


def test_adversarial_zipf_at_the_api_limits_reaches_the_bound() -> None:
    """The benchmark's adversarial shape (Zipf sizes, 100,000 targets, ~10,000 main domains):
    the main domains need 10,065 pieces, in the band of 101 requests (9,999 < p <= 10,100)."""
    sites = 10_000
    weights = [1.0 / rank for rank in range(1, sites + 1)]
    scale = (100_000 - sites) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    sizes[0] += 100_000 - sum(sizes)
    pieces = sum(-(-size // 1000) for size in sizes)
    k = max(100, math.ceil(pieces / 100))
    assert k * 99 + 1 < pieces <= k * 100
    bins = plan_pieces(sizes, 1000, 100)
    _assert_valid(sizes, bins, 1000, 100)
    assert len(bins) == k


@pytest.mark.parametrize("seed", range(3))
def test_chunks_keep_input_order_and_are_ordered_by_their_first_target(seed: int) -> None:
    sizes = [random.Random(seed).randint(1, 40) for _ in range(60)]
    targets = _targets(sizes, seed)
    chunks = plan_chunks(targets, max_targets=50, max_main_domains=6)
    position = {target: i for i, target in enumerate(targets)}
    for chunk in chunks:
        assert [position[t] for t in chunk] == sorted(position[t] for t in chunk)
    assert [position[chunk[0]] for chunk in chunks] == sorted(position[chunk[0]] for chunk in chunks)
    counts = Counter(target_main_domain(t) for chunk in chunks for t in chunk)
    assert sum(counts.values()) == len(targets)
