"""Sphinx configuration of the airflow-provider-dataforseo documentation.

Built offline by ``scripts/docs.sh`` (``-W --keep-going -n``): no intersphinx, so references to
other projects' classes (Airflow, requests, ...) are listed in ``nitpick_ignore_regex`` below.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_dataforseo import __version__  # noqa: E402

project = "airflow-provider-dataforseo"
author = "airflow-provider-dataforseo developers"
copyright = "the airflow-provider-dataforseo developers"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links to headings

html_theme = "furo"
html_title = f"airflow-provider-dataforseo {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

nitpicky = True
# Offline build: no intersphinx inventories, so names from other projects cannot resolve.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(airflow|requests|urllib3|tenacity|pendulum|fastapi|starlette|uvicorn|msgspec|"
        r"publicsuffixlist|idna|asyncio|concurrent|collections|typing|typing_extensions|datetime|"
        r"logging|threading|socket|pathlib|enum|argparse|hashlib|io|os|types|decimal|http|time|gc)(\..*)?",
    ),
]

# Private helpers (``_search``) that docstrings of public modules mention; not in the reference.
nitpick_ignore_regex.append((r"py:.*", r"(.*\.)?_[a-z]\w*"))
# Names from other projects that docstrings and type hints use unqualified.
nitpick_ignore = [
    (role, name)
    for role in ("py:class", "py:exc", "py:obj", "py:data")
    for name in (
        "AirflowException",
        "AirflowFailException",
        "AirflowSensorTimeout",
        "BaseNotifier",
        "Context",
        "FastAPI",
        "OperatorLineage",
        "PokeReturnValue",
        "TriggerEvent",
        "date",
    )
]
# Our own internal names that docstrings and hints mention but the reference does not document:
# type aliases (fetch.Row = dict[str, Any], ...), a TypeVar, the emulator's internals.
nitpick_ignore += [
    (role, name)
    for role in ("py:class", "py:obj", "py:data", "py:mod", "py:func")
    for name in (
        "Row",
        "PostChunk",
        "Sink",
        "Snapshot",
        "Entry",
        "Change",
        "Piece",
        "T",
        "Future",
        "airflow_provider_dataforseo.responses._T",
        "EmulatorState",
        "START_TIMEOUT_SECONDS",
        "STOP_TIMEOUT_SECONDS",
        "clock",
        "data",
        "data.summary_item",
    )
]


def _resolve_short_name(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve an unqualified name of ours (``DataForSeoHook``) to the one object documented under it.

    Docstrings name the package's classes without their module; Sphinx's Python domain finds
    them only from the same module. A name that ends exactly one documented object's full name
    links to it; anything else is left to the nitpicky warning.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    domain = env.get_domain("py")
    suffix = "." + target
    matches = [name for name in domain.objects if name.endswith(suffix) or name == target]
    if len(matches) != 1:
        return None
    obj = domain.objects[matches[0]]
    from sphinx.util.nodes import make_refnode

    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, matches[0])


def _write_emulator_help() -> None:
    """``dataforseo-emulator --help`` into ``_generated/``, so the emulator page cannot go stale."""
    import contextlib
    import io
    import os

    from airflow_provider_dataforseo.emulator.__main__ import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at $COLUMNS
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        build_parser(environ={}).print_help()
    target = Path(__file__).parent / "_generated" / "emulator-help.txt"
    target.parent.mkdir(exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != out.getvalue():
        target.write_text(out.getvalue(), encoding="utf-8")


#: Modules left out of the API reference: the emulator's internals (its public names are
#: re-exported by ``airflow_provider_dataforseo.emulator``) and the CLI entry point.
INTERNAL_MODULES = {
    "airflow_provider_dataforseo.emulator.__main__",
    "airflow_provider_dataforseo.emulator.app",
    "airflow_provider_dataforseo.emulator.clock",
    "airflow_provider_dataforseo.emulator.data",
    "airflow_provider_dataforseo.emulator.server",
}
#: Sections of the API reference: (file under _generated/, which modules).
API_SECTIONS = {
    "api-package.rst": lambda name: name == "airflow_provider_dataforseo",
    "api-airflow.rst": lambda name: name.split(".")[1] in {"hooks", "operators", "sensors", "triggers"},
    "api-emulator.rst": lambda name: name.split(".")[1] == "emulator",
    "api-pure.rst": lambda name: True,  # everything else
}


def _write_api_sections() -> None:
    """One ``automodule`` per module of the package, by section, so a new module is never left out."""
    import pkgutil

    import airflow_provider_dataforseo

    package = "airflow_provider_dataforseo"
    names = [package] + [
        info.name
        for info in pkgutil.walk_packages(airflow_provider_dataforseo.__path__, f"{package}.")
        if not info.ispkg or info.name.endswith(".emulator")
    ]
    names = [name for name in names if name not in INTERNAL_MODULES]
    placed: set[str] = set()
    out = Path(__file__).parent / "_generated"
    out.mkdir(exist_ok=True)
    for filename, wanted in API_SECTIONS.items():
        mine = [name for name in names if name not in placed and wanted(name)]
        placed.update(mine)
        text = "".join(f".. automodule:: {name}\n" for name in mine)
        target = out / filename
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


def setup(app):  # type: ignore[no-untyped-def]
    _write_emulator_help()
    _write_api_sections()
    app.connect("missing-reference", _resolve_short_name)
