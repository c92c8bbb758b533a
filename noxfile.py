"""Build and test sessions for the threadline monorepo.

`nox -s tests` runs everything CI runs: the core tests, then every framework
session (newest and oldest), `cross`, `packaging`, `docs`, `lint` and `typecheck`.
`nox -l` lists the sessions.

Framework support is driven by the FRAMEWORKS table below. Each entry makes
two sessions, `<name>-newest` and `<name>-oldest`:

* ``newest``: requirements installed as written (uv picks the highest
  versions allowed).
* ``oldest``: requirement ranges; the session first resolves them with
  ``uv pip compile --resolution lowest-direct`` to the *lowest* versions that
  install together, then pins those. Raise the lower bound here (and in the
  package's pyproject.toml) when support for an old release is dropped.
* ``test_deps``: extra test-only requirements for that framework's tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypedDict

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


class Framework(TypedDict):
    package: str
    newest: list[str]
    oldest: list[str]
    test_deps: list[str]


# pydantic_ai: 1.71.0 is the first release with the capability API. Its oldest run
# pins openai and genai-prices itself (the lowest pins drop the [openai] extra, and
# genai-prices >= 0.1 no longer reads OpenAI usage for pydantic-ai 1.71).
# langchain: the HTTP client's instrumentation and OpenLLMetry's OpenAI one, beside which a model
# call must stay one chat span.
# fmt: off
FRAMEWORKS: dict[str, Framework] = {
    "langchain":   {"package": "threadline-langchain",   "newest": ["langchain-core==1.7.2", "langgraph>=1,<2", "langchain>=1,<2", "langchain-openai>=1,<2"], "oldest": ["langchain-core>=0.3,<0.4", "langgraph>=0.2,<0.3", "langchain-openai>=0.3,<0.4"], "test_deps": ["opentelemetry-instrumentation-httpx", "opentelemetry-distro", "opentelemetry-instrumentation-openai"]},  # noqa: E501
    "llamaindex":  {"package": "threadline-llamaindex",  "newest": ["llama-index-core>=0.14,<0.15", "llama-index-llms-openai>=0.6,<0.9", "llama-index-embeddings-openai>=0.5,<0.8"], "oldest": ["llama-index-core>=0.12,<0.13", "llama-index-llms-openai>=0.3,<0.5", "llama-index-embeddings-openai>=0.3,<0.4"], "test_deps": []},  # noqa: E501
    "pydantic_ai": {"package": "threadline-pydantic-ai", "newest": ["pydantic-ai-slim[openai]>=2,<3"],           "oldest": ["pydantic-ai-slim[openai]>=1.71.0,<2", "openai>=2.29,<3", "genai-prices>=0.0.73,<0.1"], "test_deps": []},  # noqa: E501
    "mcp":         {"package": "threadline-mcp",         "newest": ["mcp>=2.3,<2.4"],                            "oldest": ["mcp>=1.30,<2"],                                     "test_deps": ["websockets>=15.0.1"]},  # noqa: E501
}
# fmt: on

# The callback and hook fuzzing of tests/reliability, run against a framework's oldest release
# too, where its hooks differ (Pydantic AI 1.x runs the error hooks after the wrappers). With a
# fixed seed: `cross` and `reliability` explore new examples on every run, against the newest.
OLDEST_FUZZ = {
    "langchain": ["tests/reliability/test_fuzz_callbacks.py", "-k", "langchain"],
    "llamaindex": ["tests/reliability/test_fuzz_callbacks.py", "-k", "llamaindex"],
    "pydantic_ai": ["tests/reliability/test_fuzz_hooks.py", "-k", "pydantic"],
}

# Framework versions for the shared environment of `cross`, `typecheck` and
# `demo`: one set that installs together. pydantic-ai-slim comes without its
# [openai] extra (>=2.32 needs openai>=3.31, llama-index-llms-openai pins
# openai<3): the demo and the cross tests use fake models only.
CROSS_PINS = [
    "langchain-core==1.7.2",
    "langgraph>=1,<2",
    "llama-index-core>=0.14,<0.15",
    "pydantic-ai-slim>=2,<3",
    "mcp==2.3.0",
]

# `opentelemetry-instrument` (zero-code tests in `cross`), and the FastMCP client under Pydantic
# AI's MCP toolset (the range its `mcp` extra takes; FastMCP 4 is the one for mcp 2.x).
CROSS_TEST_DEPS = [
    "opentelemetry-distro",
    "opentelemetry-instrumentation",
    "fastmcp-slim[client]>=4,<4.2.6",
]

# Test dependencies common to every framework session and `cross`.
TEST_DEPS = ["pytest", "hypothesis", "vcrpy", "pytest-asyncio"]

# Tool versions, pinned so lint and type results do not drift.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
TYPE_STUBS = ["types-jsonschema"]

ROOT = Path(__file__).parent
CORE = "packages/threadline"
INTEGRATIONS = [fw["package"] for fw in FRAMEWORKS.values()]
SRC_DIRS = [f"packages/{dist}/src" for dist in ["threadline", *INTEGRATIONS]]

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _editable(*paths: str) -> list[str]:
    args: list[str] = []
    for path in paths:
        args += ["-e", path]
    return args


def _integrations() -> list[str]:
    return _editable(*(f"packages/{dist}" for dist in INTEGRATIONS))


def _requirement_name(req: str) -> str:
    return canonicalize_name(Requirement(req).name)


def _lowest(session: nox.Session, requirements: list[str], packages: list[str]) -> list[str]:
    """Pin `requirements` to the lowest versions that install together with `packages`."""
    requirements_in = Path(session.create_tmp()) / "oldest.in"
    editables = [f"-e {ROOT / package}" for package in packages]
    requirements_in.write_text("\n".join([*editables, *requirements]) + "\n")
    compiled = session.run(
        "uv",
        "pip",
        "compile",
        "--quiet",
        "--no-header",
        "--no-annotate",
        "--resolution",
        "lowest-direct",
        "--python",
        os.path.join(session.bin, "python"),
        str(requirements_in),
        silent=True,
        external=True,
    )
    assert isinstance(compiled, str)
    # The compiled pins carry no extras: take them back from the requirements.
    extras: dict[str, set[str]] = {}
    for req in requirements:
        extras.setdefault(_requirement_name(req), set()).update(Requirement(req).extras)
    pins: list[str] = []
    for raw in compiled.splitlines():
        line = raw.strip()
        if "==" not in line or line.startswith("-"):
            continue
        pin = Requirement(line)
        name = canonicalize_name(pin.name)
        if name in extras:
            extra = f"[{','.join(sorted(extras[name]))}]" if extras[name] else ""
            pins.append(f"{name}{extra}{pin.specifier}")
    missing = set(extras) - {_requirement_name(pin) for pin in pins}
    if missing:
        session.error(f"lowest resolution gave no pin for {sorted(missing)}:\n{compiled}")
    return pins


def _show_versions(session: nox.Session, requirements: list[str]) -> None:
    """Log the installed versions of the given requirements' packages."""
    wanted = {_requirement_name(req) for req in requirements}
    frozen = session.run("uv", "pip", "freeze", silent=True, external=True)
    assert isinstance(frozen, str)
    for line in frozen.splitlines():
        if "==" in line and not line.startswith("-") and _requirement_name(line) in wanted:
            session.log(f"resolved: {line.strip()}")


def _run_core_tests(session: nox.Session) -> None:
    session.install(*_editable(f"{CORE}[testing,sdk,otlp,cost]"), "hypothesis", "pytest")
    session.run("pytest", f"{CORE}/tests", *session.posargs)


@nox.session
def core(session: nox.Session) -> None:
    """Core library tests."""
    _run_core_tests(session)


def _framework_session(name: str, variant: str) -> None:
    fw = FRAMEWORKS[name]

    @nox.session(name=f"{name}-{variant}", tags=["frameworks", name, variant])
    def run(session: nox.Session) -> None:
        packages = [f"{CORE}[testing,sdk]", f"packages/{fw['package']}"]
        if variant == "oldest":
            requirements = fw["oldest"]
            pins = _lowest(session, requirements, packages)
        else:
            requirements = pins = fw["newest"]
        session.install(
            *_editable(*packages),
            *pins,
            *TEST_DEPS,
            *fw["test_deps"],
        )
        _show_versions(session, requirements)
        session.run("pytest", f"packages/{fw['package']}/tests", *session.posargs)
        if variant == "oldest" and name in OLDEST_FUZZ:
            session.run("pytest", *OLDEST_FUZZ[name], "--hypothesis-seed=0")

    run.__doc__ = f"{fw['package']} tests against the {variant} supported {name}."


for _name in FRAMEWORKS:
    for _variant in ("newest", "oldest"):
        _framework_session(_name, _variant)


@nox.session
def cross(session: nox.Session) -> None:
    """Cross-framework tests (tests/) with every integration in one environment: the
    `threadline demo` run and zero-code instrumentation under `opentelemetry-instrument`."""
    session.install(
        *_editable(f"{CORE}[testing,sdk,otlp]"),
        *_integrations(),
        *CROSS_PINS,
        *TEST_DEPS,
        *(dep for fw in FRAMEWORKS.values() for dep in fw["test_deps"]),
        *CROSS_TEST_DEPS,
    )
    _show_versions(session, CROSS_PINS)
    session.run("pytest", "tests", "-m", "not packaging", *session.posargs)


@nox.session
def packaging(session: nox.Session) -> None:
    """Build all wheels and install them (and editables) into clean virtualenvs."""
    session.install("pytest", "uv")
    session.run("pytest", "tests/packaging", "-m", "packaging", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check; uv.lock must match the pyproject.toml files."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("uv", "lock", "--check", external=True)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's src/."""
    session.install(
        MYPY,
        *TYPE_STUBS,
        *_editable(f"{CORE}[testing,sdk,otlp,cost]"),
        *_integrations(),
        *CROSS_PINS,
    )
    # The threadline namespace spans several src/ directories: mypy resolves
    # it only with all of them on its search path (also set in pyproject.toml).
    session.run(
        "mypy",
        "--strict",
        *SRC_DIRS,
        *session.posargs,
        env={"MYPYPATH": os.pathsep.join(SRC_DIRS)},
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Run `threadline demo` with every integration installed (arguments pass on, e.g.
    `nox -s demo -- --otlp http://localhost:4318/v1/traces`)."""
    session.install(*_editable(f"{CORE}[all]"), *_integrations(), *CROSS_PINS)
    session.run("threadline", "demo", *session.posargs)


@nox.session
def phoenix(session: nox.Session) -> None:
    """Run the demo against Arize Phoenix (a real OTLP backend from PyPI) and check through its
    REST API that the trace is there with the gen_ai attributes Phoenix understands. Not part of
    `tests`: Phoenix is a large install."""
    session.install("arize-phoenix", *_editable(f"{CORE}[all]"), *_integrations(), *CROSS_PINS)
    session.run("python", "tests/phoenix/check_phoenix.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors (the span reference is regenerated
    first and must match the committed page)."""
    session.install("mkdocs==1.6.1", "mkdocs-material==9.8.1", *_editable(CORE))
    session.run("python", "docs/gen_reference.py")
    session.run("git", "diff", "--exit-code", "docs/reference/spans.md", external=True)
    session.run("mkdocs", "build", "--strict", "--quiet", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def reliability(session: nox.Session) -> None:
    """The whole reliability suite (tests/reliability): fault injection, cancelled and
    abandoned streams, callback fuzzing, isolation, 100k runs per integration and a 10-minute
    RSS soak (`THREADLINE_SOAK_SECONDS` changes it). Its fast part also runs in `cross`."""
    session.install(
        *_editable(f"{CORE}[testing,sdk]"),
        *_integrations(),
        *CROSS_PINS,
        *TEST_DEPS,
        *(dep for fw in FRAMEWORKS.values() for dep in fw["test_deps"]),
    )
    _show_versions(session, CROSS_PINS)
    session.run(
        "pytest",
        "tests/reliability",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"THREADLINE_RELIABILITY_FULL": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Overhead benchmarks against the peers (slow; not part of `tests`). One virtualenv per
    framework (benchmarks/requirements/<group>.txt: its peers), then benchmarks/run.py; the
    arguments pass on, e.g. `nox -s bench -- --rounds 9 --only langchain`. Results land in
    benchmarks/results/."""
    session.install(*_editable(f"{CORE}[sdk]"))
    pythons = [f"core={os.path.join(session.bin, 'python')}"]
    for requirements in sorted(Path("benchmarks/requirements").glob("*.txt")):
        group = requirements.stem
        if group == "core":
            continue
        venv = Path(session.virtualenv.location).parent / f"bench-{group}"
        session.run(
            "uv", "venv", "--quiet", "--allow-existing", "--python",
            os.path.join(session.bin, "python"), str(venv),
            external=True,
        )  # fmt: skip
        python = str(venv / "bin" / "python")
        session.run(
            "uv", "pip", "install", "--quiet", "--python", python,
            *_editable(f"{CORE}[sdk]", f"packages/{FRAMEWORKS[group]['package']}"),
            "-r", str(requirements),
            external=True,
        )  # fmt: skip
        pythons.append(f"{group}={python}")
    python_args = [arg for python in pythons for arg in ("--python", python)]
    session.run("python", "benchmarks/run.py", *python_args, *session.posargs)
    session.run("python", "benchmarks/startup.py", *python_args, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Everything CI runs: core tests here, then every other test session."""
    for name in FRAMEWORKS:
        for variant in ("newest", "oldest"):
            session.notify(f"{name}-{variant}")
    for other in ("cross", "packaging", "docs"):
        session.notify(other)
    # Positional arguments given to `tests` are pytest's; keep them from ruff and mypy.
    for other in ("lint", "typecheck"):
        session.notify(other, posargs=[])
    _run_core_tests(session)
