"""Find the targets the API refuses with 40501, in few requests: adaptive group testing.

Pure module: no Airflow import, no network. One refused target fails its whole task with 40501
``Invalid Field: 'targets'.`` and the message does not say which one
(``https://docs.dataforseo.com/v3/appendix/errors/``; whether the real API names it is
unconfirmed, so nothing here relies on it). A refused task costs nothing; a task that succeeds
is charged and its rows are kept, so every test that passes also fetches its targets.

:class:`RefusalSearch` is the search over one refused request of ``n`` targets holding an
unknown number ``d >= 1`` of refused ones. It alternates two moves (binary splitting with an
adaptive group size, after Hwang's generalised binary splitting, for an unknown ``d``):

- **halving** a group known to hold a refused target: send its first half; if that half is
  refused, keep searching it and put the other half back among the unknown targets; if it
  passes (its rows are kept), the refused target is in the other half, which needs no request
  to know it. A known-refused group of one target is a refused target.
- **sweeping** the unknown targets in groups of ``g``: a group that passes doubles ``g``; a
  refused one is halved down to one refused target, then ``g`` is halved.

So the group size settles near ``n / d`` and the whole search takes about
``d * log2(n / d) + O(d)`` requests (:func:`request_bound` gives the bound the tests hold it
to), against ``2 * d * log2(n)`` for plain bisection that sends both halves of every refused
piece. Roughly half of the requests pass and are charged 0.02 USD each.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The ``O(d)`` part of :func:`request_bound`: requests per refused target beyond ``log2(n / d)``
#: (measured worst case of :class:`RefusalSearch` is about 3.3; the property test holds it to this).
EXTRA_REQUESTS_PER_REFUSED: Final = 3.5


def request_bound(n: int, d: int) -> int:
    """The most requests a search over ``n`` targets with ``d`` refused ones takes, the first included.

    ``1 + d * log2(n / d) + 3.5 * d`` (rounded down), and 1 when ``d`` is 0 (the request passes).

    :param n: targets in the refused request (>= 1).
    :param d: refused targets among them (0 to ``n``).
    """
    if d <= 0:
        return 1
    return 1 + math.floor(d * math.log2(n / d) + EXTRA_REQUESTS_PER_REFUSED * d)


class RefusalSearch:
    """The search over one request the API refused; drive it with :meth:`next_group` / :meth:`record`.

    ::

        search = RefusalSearch(chunk)  # the chunk was refused with 40501
        while (group := search.next_group()) is not None:
            refused = send(group)  # True for a 40501, else the group's rows are kept
            search.record(refused)
        search.refused  # the refused targets, in the order found

    Every target ends in exactly one of: a group that passed, :attr:`refused`, or (when the caller
    stops early) :meth:`unresolved`.

    :param targets: the refused request's targets (at least one of them is refused).
    :raises ValueError: when ``targets`` is empty.
    """

    def __init__(self, targets: Sequence[str]) -> None:
        if not targets:
            raise ValueError("a refused request has at least one target")
        #: Targets found refused, in the order found (a caller may take them out as they come).
        self.refused: list[str] = []
        #: Requests sent by the search (the refused request it started from not included).
        self.requests = 0
        self._suspect: list[str] | None = list(targets)  # holds at least one refused target
        self._unknown: deque[str] = deque()
        self._group_size = len(targets)  # halved once the first refused target is found
        self._sent: list[str] | None = None
        self._sent_is_half = False
        self._settle_singletons()

    @property
    def done(self) -> bool:
        """Whether every target is either cleared or refused."""
        return self._sent is None and self._suspect is None and not self._unknown

    def unresolved(self) -> list[str]:
        """Targets neither cleared nor found refused yet (the group in flight included)."""
        head = list(self._sent) if self._sent is not None and not self._sent_is_half else []
        return [*head, *(self._suspect or ()), *self._unknown]

    def next_group(self) -> list[str] | None:
        """The next group to send, or ``None`` when the search is over.

        :raises RuntimeError: when the previous group's outcome was not recorded.
        """
        if self._sent is not None:
            raise RuntimeError("record() the outcome of the group sent before asking for the next")
        self._settle_singletons()
        if self._suspect is not None:
            half = len(self._suspect) // 2
            self._sent, self._sent_is_half = self._suspect[:half], True
        elif self._unknown:
            size = min(self._group_size, len(self._unknown))
            self._sent = [self._unknown.popleft() for _ in range(size)]
            self._sent_is_half = False
        else:
            return None
        self.requests += 1
        return list(self._sent)

    def record(self, refused: bool) -> None:
        """The outcome of the group from :meth:`next_group`: refused (40501) or passed.

        :raises RuntimeError: when no group is waiting for its outcome.
        """
        sent = self._sent
        if sent is None:
            raise RuntimeError("no group was sent")
        self._sent = None
        if self._sent_is_half:
            assert self._suspect is not None
            rest = self._suspect[len(sent) :]
            if refused:  # the other half is unknown again
                self._unknown.extendleft(reversed(rest))
                self._suspect = sent
            else:  # the refused target is in the other half
                self._suspect = rest
        elif refused:
            self._suspect = sent
            self._group_size = len(sent)
        else:
            self._group_size *= 2
        self._settle_singletons()

    def _settle_singletons(self) -> None:
        """A known-refused group of one target is a refused target: no request needed."""
        if self._suspect is not None and len(self._suspect) == 1:
            self.refused.append(self._suspect[0])
            self._suspect = None
            self._group_size = max(1, self._group_size // 2)
