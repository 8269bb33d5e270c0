"""Typed request options as DAG authors and templates give them: one reading for every class.

Pure module: no Airflow import. The operator, the change sensor and its trigger read
``include_subdomains`` and ``rank_scale`` through these functions, so ``"false"`` (a rendered
template or a Param) means ``False`` everywhere, and a value that means neither is refused with
its name before any request is sent.
"""

from __future__ import annotations

from typing import Final

from airflow_provider_dataforseo import api

#: Texts read as true (any case, spaces around allowed).
TRUE_WORDS: Final = frozenset({"true", "1", "yes", "on"})
#: Texts read as false (any case, spaces around allowed).
FALSE_WORDS: Final = frozenset({"false", "0", "no", "off"})


def as_bool(value: object, name: str) -> bool:
    """A boolean argument as given, or as a template or Param renders it.

    :param value: a bool; the integers 1 and 0; or a string ``"true"``/``"false"``,
        ``"1"``/``"0"``, ``"yes"``/``"no"``, ``"on"``/``"off"`` in any case (``"False"`` as Jinja
        renders ``False``).
    :param name: the argument's name, for the error.
    :return: the boolean.
    :raises ValueError: naming the argument and the value when it means neither true nor false
        (``None``, ``""``, ``2``, ``"sometimes"``...).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_rank_scale(value: object, name: str = "rank_scale") -> str | None:
    """The ``rank_scale`` request option, or ``None`` to leave it out (the API's default).

    :param value: ``None``, ``""`` (a template that rendered nothing), ``"one_thousand"`` (ranks
        0-1000, the API's default) or ``"one_hundred"`` (0-100); spaces around and any case are
        accepted (endpoint doc, field ``rank_scale``).
    :param name: the argument's name, for the error.
    :return: ``None`` or one of :data:`airflow_provider_dataforseo.api.RANK_SCALES`.
    :raises ValueError: naming the argument and the value otherwise.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in api.RANK_SCALES:
            return text
    raise ValueError(f"{name} must be one of {', '.join(api.RANK_SCALES)}, got {value!r}")
