"""Build every distribution and install it the way users do, in clean virtualenvs.

Run by `nox -s packaging`; the `packaging` marker keeps it out of `nox -s cross`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
INTEGRATIONS = {
    "threadline-langchain": "langchain",
    "threadline-llamaindex": "llamaindex",
    "threadline-pydantic-ai": "pydantic_ai",
    "threadline-mcp": "mcp",
}
EXTRAS = ["sdk", "otlp", "cost", "testing", "langchain", "llamaindex", "pydantic-ai", "mcp", "all"]

# Run inside the fresh virtualenv; prints what the assertions below need.
PROBE = """
import importlib.metadata as md
import importlib.resources
import json

import langchain_core
import threadline
import threadline.langchain


def installed(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


schemas = importlib.resources.files("threadline") / "testing" / "schemas"
print(json.dumps({
    "threadline_file": threadline.__file__,
    "langchain_file": threadline.langchain.__file__,
    "langchain_name": threadline.langchain.__name__,
    "schemas": sorted(p.name for p in schemas.iterdir() if p.name.endswith(".json")),
    "scripts": [ep.value for ep in md.entry_points(group="console_scripts", name="threadline")],
    "versions": {name: installed(name) for name in [
        "threadline", "threadline-langchain", "langchain-core",
        "threadline-llamaindex", "llama-index-core",
        "threadline-pydantic-ai", "pydantic-ai-slim", "threadline-mcp", "mcp",
    ]},
}))
"""


def _run(*args: str | Path, cwd: Path = ROOT) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc.stdout


def _uv() -> str:
    uv = shutil.which("uv")
    assert uv is not None, "uv must be installed (the packaging session installs it)"
    return uv


def _venv(path: Path) -> Path:
    """A clean virtualenv made by the standard library, outside the workspace."""
    _run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


def _probe(python: Path) -> dict[str, object]:
    result: dict[str, object] = json.loads(_run(python, "-c", PROBE, cwd=python.parent))
    return result


def _dist_filename(dist: str) -> str:
    return dist.replace("-", "_")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    # Default `uv build`: sdist first, then the wheel built from that sdist.
    _run(_uv(), "build", "--all-packages", "--out-dir", out)
    return out


def _wheel(wheelhouse: Path, dist: str) -> zipfile.ZipFile:
    (path,) = wheelhouse.glob(f"{_dist_filename(dist)}-0.1.0-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile, dist: str) -> tuple[list[str], dict[str, list[str]]]:
    """(payload files, METADATA headers) of a wheel."""
    dist_info = f"{_dist_filename(dist)}-0.1.0.dist-info/"
    names = wheel.namelist()
    message = Parser().parsestr(wheel.read(dist_info + "METADATA").decode())
    headers: dict[str, list[str]] = {}
    for key, value in message.items():
        headers.setdefault(key, []).append(value)
    return [n for n in names if not n.startswith(dist_info)], headers


@pytest.mark.parametrize("dist", ["threadline", *sorted(INTEGRATIONS)])
def test_license_in_every_distribution(wheelhouse: Path, dist: str) -> None:
    stem = _dist_filename(dist)
    with _wheel(wheelhouse, dist) as wheel:
        _, meta = _metadata(wheel, dist)
        license_text = wheel.read(f"{stem}-0.1.0.dist-info/licenses/LICENSE").decode()
    assert meta["License-Expression"] == ["Apache-2.0"]
    assert "Apache License\n                           Version 2.0" in license_text
    (sdist,) = wheelhouse.glob(f"{stem}-0.1.0.tar.gz")
    with tarfile.open(sdist) as archive:
        assert f"{stem}-0.1.0/LICENSE" in archive.getnames()


def test_all_distributions_built(wheelhouse: Path) -> None:
    dists = ["threadline", *INTEGRATIONS]
    assert sorted(p.name for p in wheelhouse.glob("*.whl")) == sorted(
        f"{_dist_filename(d)}-0.1.0-py3-none-any.whl" for d in dists
    )
    assert sorted(p.name for p in wheelhouse.glob("*.tar.gz")) == sorted(
        f"{_dist_filename(d)}-0.1.0.tar.gz" for d in dists
    )


def test_core_wheel_contents(wheelhouse: Path) -> None:
    with _wheel(wheelhouse, "threadline") as wheel:
        files, meta = _metadata(wheel, "threadline")
        entry_points = wheel.read("threadline-0.1.0.dist-info/entry_points.txt").decode()
    assert all(f.startswith("threadline/") for f in files), files
    assert "threadline/__init__.py" in files
    assert "threadline/py.typed" in files
    assert any(f.startswith("threadline/testing/schemas/") and f.endswith(".json") for f in files)
    for name in INTEGRATIONS.values():
        assert not any(f.startswith(f"threadline/{name}/") for f in files)
    assert "threadline = threadline.__main__:main" in entry_points
    assert sorted(meta["Provides-Extra"]) == sorted(EXTRAS)
    assert meta["Requires-Python"] == [">=3.10"]


@pytest.mark.parametrize("dist", sorted(INTEGRATIONS))
def test_integration_wheel_contents(wheelhouse: Path, dist: str) -> None:
    name = INTEGRATIONS[dist]
    with _wheel(wheelhouse, dist) as wheel:
        files, meta = _metadata(wheel, dist)
    # Only threadline/<name>/: threadline/__init__.py belongs to the core wheel.
    assert files, dist
    assert all(f.startswith(f"threadline/{name}/") for f in files), files
    assert f"threadline/{name}/__init__.py" in files
    assert f"threadline/{name}/py.typed" in files
    assert "threadline==0.1.0" in meta["Requires-Dist"]


def test_wheel_install_with_extra(wheelhouse: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _run(
        python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        "--find-links", wheelhouse, "threadline[langchain]",
    )  # fmt: skip
    probe = _probe(python)
    site = Path(str(probe["threadline_file"])).parent.parent
    assert site.name == "site-packages"
    assert site.is_relative_to(tmp_path / "venv")
    assert probe["langchain_file"] == str(site / "threadline" / "langchain" / "__init__.py")
    assert probe["langchain_name"] == "threadline.langchain"
    assert probe["schemas"], "JSON schemas missing from the installed core package"
    assert probe["scripts"] == ["threadline.__main__:main"]
    assert (tmp_path / "venv" / "bin" / "threadline").exists()
    versions = probe["versions"]
    assert isinstance(versions, dict)
    assert versions["threadline"] == versions["threadline-langchain"] == "0.1.0"
    assert versions["langchain-core"] is not None
    for absent in ["threadline-llamaindex", "llama-index-core", "threadline-pydantic-ai",
                   "pydantic-ai-slim", "threadline-mcp", "mcp"]:  # fmt: skip
        assert versions[absent] is None, f"{absent} should not come with threadline[langchain]"


def test_editable_install(tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _run(
        _uv(), "pip", "install", "--quiet", "--python", python,
        "-e", ROOT / "packages" / "threadline", "-e", ROOT / "packages" / "threadline-langchain",
    )  # fmt: skip
    probe = _probe(python)
    core_src = ROOT / "packages" / "threadline" / "src"
    langchain_src = ROOT / "packages" / "threadline-langchain" / "src"
    assert probe["threadline_file"] == str(core_src / "threadline" / "__init__.py")
    assert probe["langchain_file"] == str(
        langchain_src / "threadline" / "langchain" / "__init__.py"
    )
    assert probe["schemas"]
    assert probe["scripts"] == ["threadline.__main__:main"]
    versions = probe["versions"]
    assert isinstance(versions, dict)
    assert versions["langchain-core"] is not None
    assert versions["threadline-llamaindex"] is None
    assert versions["llama-index-core"] is None
