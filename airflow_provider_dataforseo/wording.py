"""Counted nouns for log lines and messages: ``1 request``, ``2 requests``, ``0 targets``.

Pure: no Airflow import. Log calls stay lazy (``log.info("Done: %s", counted(n, "request"))``):
only the small count string is built eagerly.
"""

from __future__ import annotations

__all__ = ["counted"]


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun``, the noun plural unless ``number`` is exactly 1.

    :param number: how many (any integer; ``0`` and negatives take the plural).
    :param noun: the singular, e.g. ``"request"`` or ``"target without data"``.
    :param plural: the plural when it is not ``noun + "s"``, e.g. ``"targets without data"``.
    :return: e.g. ``"1 request"``, ``"2 requests"``, ``"1 target without data"``.
    """
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"
