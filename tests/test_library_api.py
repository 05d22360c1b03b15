"""The project calls TRL, transformers and peft as the installed versions define them.

Users install the GPU set (trl 1.15.0), CI the CPU set (trl 1.16.0); `make test` runs this suite under
both (docs/verified.md). Read from the sources: every name the project imports from these libraries
exists, and every call of one of their functions or classes passes only keywords it accepts. An
argument one pinned version added (trl 1.16's `parse_response(..., tools=)`) fails here in the lane
of the version that lacks it, not on a user's GPU. Keyword dictionaries built at run time (the trainer
configs) are checked by the tests that build the real configs, in both lanes.
"""

import ast
import importlib
import importlib.metadata
import inspect
import os
import re

import pytest

from conftest import ROOT

pytestmark = pytest.mark.both_lanes

LIBRARIES = ("trl", "transformers", "peft")
SOURCES = sorted([*ROOT.glob("*.py"), *ROOT.glob("sql_rlvr/*.py"), *ROOT.glob("bench/*.py")])


def _library_module(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in LIBRARIES


def _resolve(module: str, attribute: str):
    """`attribute` of `module`, or its submodule of that name; raises AttributeError/ImportError if neither."""
    mod = importlib.import_module(module)
    if hasattr(mod, attribute):
        return getattr(mod, attribute)
    return importlib.import_module(f"{module}.{attribute}")


def library_uses(path) -> tuple[list[tuple[int, str, str]], dict[str, str], list[tuple[int, list[str], list[str]]]]:
    """(imports as (line, module, name), {bound name: dotted origin}, calls as (line, dotted chain, keywords))."""
    tree = ast.parse(path.read_text())
    imports, bound = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _library_module(node.module):
            for alias in node.names:
                imports.append((node.lineno, node.module, alias.name))
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _library_module(alias.name):
                    top = alias.name.split(".")[0]
                    bound[alias.asname or top] = alias.name if alias.asname else top
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        chain, func = [], node.func
        while isinstance(func, ast.Attribute):
            chain.insert(0, func.attr)
            func = func.value
        if isinstance(func, ast.Name) and func.id in bound:
            keywords = [k.arg for k in node.keywords if k.arg is not None]  # **kwargs: checked where built
            calls.append((node.lineno, [bound[func.id], *chain], keywords))
    return imports, bound, calls


def _lookup(dotted: str, chain: list[str]):
    module, _, name = dotted.rpartition(".")
    obj = _resolve(module, name) if module else importlib.import_module(name)
    for attribute in chain:
        obj = getattr(obj, attribute)
    return obj


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_library_name_and_keyword_exists_in_the_installed_version(path):
    imports, _, calls = library_uses(path)
    where = path.relative_to(ROOT)
    for line, module, name in imports:
        try:
            _resolve(module, name)
        except (ImportError, AttributeError):
            pytest.fail(f"{where}:{line}: `from {module} import {name}`: not in the installed {module.split('.')[0]}")
    for line, (origin, *chain), keywords in calls:
        try:
            target = _lookup(origin, chain)
        except (ImportError, AttributeError):
            pytest.fail(f"{where}:{line}: {'.'.join([origin, *chain])} does not exist in the installed version")
        if not keywords or not callable(target):
            continue
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            continue
        unknown = [k for k in keywords if k not in parameters]
        assert not unknown, (f"{where}:{line}: {'.'.join([origin, *chain])} takes no {unknown} in the installed "
                             f"version (it takes {list(parameters)})")


def test_the_check_catches_the_trl_116_only_keyword(tmp_path):
    """The check itself: trl 1.15's parse_response has no `tools`; the check must see the keyword."""
    source = tmp_path / "probe.py"
    source.write_text("from trl.chat_template_utils import parse_response as parse\n"
                      "def f(tok, ids):\n    return parse(tok, ids, prefix=None, tools=[])\n")
    _, bound, calls = library_uses(source)
    assert bound == {"parse": "trl.chat_template_utils.parse_response"}
    assert calls == [(3, ["trl.chat_template_utils.parse_response"], ["prefix", "tools"])]
    takes_tools = "tools" in inspect.signature(_lookup("trl.chat_template_utils.parse_response", [])).parameters
    import trl

    assert takes_tools == (trl.__version__ != "1.15.0")  # the GPU set's version lacks it: the lane would fail


@pytest.mark.skipif("SQL_RLVR_REQUIREMENTS" not in os.environ, reason="run by a lane of `make test`, which names its file")
def test_this_lane_runs_exactly_the_versions_its_requirement_file_pins():
    """Each lane of `make test` says which requirement file it stands for (requirements-cpu.txt: CI's CPU
    set; requirements.txt: the GPU set users install): every package that file pins and that is installed
    here has exactly that version, so a green lane speaks for that set."""
    path = ROOT / os.environ["SQL_RLVR_REQUIREMENTS"]
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#;]+)", path.read_text(), re.M))
    assert {"torch", "transformers", "trl", "peft", "accelerate", "datasets"} <= set(pins)
    checked = {}
    for name, pinned in pins.items():
        try:
            checked[name] = importlib.metadata.version(name).split("+")[0]  # torch 2.13.0+cpu is 2.13.0
        except importlib.metadata.PackageNotFoundError:
            assert name in ("vllm", "wandb"), f"{name} (pinned in {path.name}) is not installed"
    wrong = {name: (version, pins[name]) for name, version in checked.items() if version != pins[name]}
    assert not wrong, f"installed vs {path.name}: {wrong}"
