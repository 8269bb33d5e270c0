"""Build the release files and check them as a user would get them.

1. ``python -m build``: the sdist and the wheel, in a temporary folder.
2. ``twine check --strict``: the metadata and README PyPI would show.
3. The files: LICENSE and NOTICE in both, ``py.typed`` in the wheel, no tests or example DAGs in it,
   the version of ``airflow_provider_dataforseo.__version__``.
4. A fresh virtualenv (uv) with the wheel and only its declared dependencies, then in it:
   ``airflow providers list`` shows the provider, its entry points load, ``dataforseo-emulator
   --help`` works and the emulator answers on ``--port 0``, and the checkout's example DAGs import
   with the wheel's package (example DAGs are not in the wheel).

Run by ``scripts/release_check.sh`` (and so by ``.ci/run``). Exits non-zero naming the failed check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "airflow-provider-dataforseo"
PACKAGE = "airflow_provider_dataforseo"


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run a command; return its stdout; fail with its output when it fails."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900, check=False
    )
    if done.returncode != 0:
        command = " ".join(map(str, args))
        sys.exit(f"release check: {command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"release check FAILED: {what}")
    print(f"ok: {what}")


def version() -> str:
    text = (REPO / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, flags=re.MULTILINE)
    assert match is not None
    return match.group(1)


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def build(dist: Path) -> tuple[Path, Path]:
    run(sys.executable, "-m", "build", "--installer", "uv", "--outdir", dist, REPO, cwd=REPO)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    check(
        len(wheels) == 1 and len(sdists) == 1,
        f"python -m build made one wheel and one sdist: {os.listdir(dist)}",
    )
    return wheels[0], sdists[0]


def check_files(wheel: Path, sdist: Path, ver: str) -> None:
    check(wheel.name == f"{PACKAGE}-{ver}-py3-none-any.whl", f"wheel named for version {ver}: {wheel.name}")
    names = zipfile.ZipFile(wheel).namelist()
    info = f"{PACKAGE}-{ver}.dist-info"
    check(
        f"{info}/licenses/LICENSE" in names and f"{info}/licenses/NOTICE" in names,
        "LICENSE and NOTICE in the wheel",
    )
    check(f"{PACKAGE}/py.typed" in names, "py.typed in the wheel")
    check(
        not [n for n in names if n.startswith(("tests/", "example_dags/", "benchmarks/", "docs/"))],
        "no tests, example DAGs, benchmarks or docs in the wheel",
    )
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    check("License-Expression: Apache-2.0" in metadata, "License-Expression: Apache-2.0 in the metadata")
    check("Project-URL: Documentation, https://" in metadata, "a Documentation project URL in the metadata")
    license_text = zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE").decode()
    check(
        license_text == (REPO / "LICENSE").read_text(encoding="utf-8")
        and "Version 2.0, January 2004" in license_text,
        "the wheel's LICENSE is the Apache License 2.0 text of the checkout",
    )
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    root = f"{PACKAGE}-{ver}"
    check(f"{root}/LICENSE" in members and f"{root}/NOTICE" in members, "LICENSE and NOTICE in the sdist")


def check_installed(wheel: Path, work: Path) -> None:
    venv = work / "venv"
    run(*uv(), "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(*uv(), "pip", "install", "--quiet", "--python", python, wheel)  # only its declared dependencies
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "HOME": str(work),
        "AIRFLOW_HOME": str(work / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
    }
    where = run(python, "-I", "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)", env=env, cwd=work)
    check(
        where.strip().startswith(str(venv)),
        f"the package is imported from the fresh virtualenv: {where.strip()}",
    )

    providers = json.loads(
        run(venv / "bin" / "airflow", "providers", "list", "-o", "json", env=env, cwd=work)
    )
    ours = [p for p in providers if p["package_name"] == DIST_NAME]
    check(
        len(ours) == 1 and ours[0]["version"] == version(),
        f"airflow providers list shows {DIST_NAME} {version()}",
    )

    entry_points = run(
        python,
        "-I",
        "-c",
        """
import json
from importlib.metadata import entry_points
ours = "airflow_provider_dataforseo"
provider = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith(ours)]
script = [e for e in entry_points(group="console_scripts") if e.name == "dataforseo-emulator"]
info = provider[0].load()()
print(json.dumps({"provider": [e.value for e in provider], "script": [e.value for e in script],
                  "hook": info["connection-types"][0]["hook-class-name"], "doc": info["documentation-url"]}))
""",
        env=env,
        cwd=work,
    )
    found = json.loads(entry_points)
    check(
        found["provider"] == ["airflow_provider_dataforseo:get_provider_info"],
        "the apache_airflow_provider entry point loads",
    )
    check(
        found["script"] == ["airflow_provider_dataforseo.emulator.__main__:main"],
        "the dataforseo-emulator console script is declared",
    )
    check(
        found["doc"] is not None and found["doc"].startswith("https://"),
        f"documentation-url in the provider info: {found['doc']}",
    )

    helptext = run(venv / "bin" / "dataforseo-emulator", "--help", env=env, cwd=work)
    check(
        helptext.startswith("usage: dataforseo-emulator") and "--port" in helptext,
        "dataforseo-emulator --help",
    )
    check_emulator_serves(venv, env, work)

    dags = run(
        python,
        "-I",
        "-c",
        f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(REPO / "example_dags")!r})
import {PACKAGE}
print(json.dumps({{"dags": sorted(bag.dag_ids), "errors": bag.import_errors, "package": {PACKAGE}.__file__}}))
""",
        env=env,
        cwd=work,
    )
    found = json.loads(dags.strip().splitlines()[-1])
    check(not found["errors"], f"the checkout's example DAGs import with the wheel: errors {found['errors']}")
    check("example_dataforseo_bulk_pages_summary" in found["dags"], f"example DAGs found: {found['dags']}")
    check(found["package"].startswith(str(venv)), "the example DAGs used the wheel's package")


def check_emulator_serves(venv: Path, env: dict[str, str], work: Path) -> None:
    """Start the installed emulator on --port 0, read its URL, ask it for user_data, stop it."""
    import urllib.request
    from base64 import b64encode

    emulator = subprocess.Popen(
        [str(venv / "bin" / "dataforseo-emulator"), "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=work,
    )
    try:
        assert emulator.stdout is not None
        first = emulator.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        check(match is not None, f"the emulator prints its URL on --port 0: {first.strip()}")
        assert match is not None
        request = urllib.request.Request(
            f"{match.group(1)}/v3/appendix/user_data",
            headers={"Authorization": "Basic " + b64encode(b"emulator:emulator").decode()},
        )
        deadline = time.monotonic() + 30
        while True:  # poll until it answers
            try:
                with urllib.request.urlopen(request, timeout=2) as reply:
                    body = json.load(reply)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        check(body["status_code"] == 20000, "the installed emulator answers user_data")
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


def main() -> None:
    ver = version()
    with tempfile.TemporaryDirectory(prefix="dataforseo-release-") as tmp:
        work = Path(tmp)
        wheel, sdist = build(work / "dist")
        run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
        print("ok: twine check --strict")
        check_files(wheel, sdist, ver)
        check_installed(wheel, work)
    print(f"release check: {DIST_NAME} {ver} passed")


if __name__ == "__main__":
    main()
