"""The shape of the code: five files at the root (config, utils, the entry scripts), the library flat in
sql_rlvr/, one concern a module, no import cycle, no private name across modules.

docs/architecture.md draws the graph this test reads from the sources; a cycle, a module that reaches
into another's private names, or a module grown far past its room fails here.
"""

import ast
import re

from conftest import ROOT

PACKAGE = "sql_rlvr"
ROOT_FILES = {"config", "utils", "train_sft", "train_grpo", "evaluate"}  # the root holds these and no other .py
ENTRY_SCRIPTS = {"train_sft", "train_grpo", "evaluate"}
LIBRARY = sorted(p.stem for p in (ROOT / PACKAGE).glob("*.py") if p.stem != "__init__")
MODULES = sorted([*LIBRARY, *ROOT_FILES])  # a package module by its own name: scoring is sql_rlvr/scoring.py
MAX_LINES = 950  # "about 900": past it a module holds more than one concern


def path_of(name: str):
    return ROOT / f"{name}.py" if name in ROOT_FILES else ROOT / PACKAGE / f"{name}.py"


def imports_of(path) -> dict[str, set[str]]:
    """{module of ours it imports: names it uses from it} over the whole file, imports inside functions included.
    Ours: the root's files (`import utils`, `from config import X`) and the package's modules
    (`from sql_rlvr import scoring`, `from sql_rlvr.scoring import X`)."""
    tree = ast.parse(path.read_text())
    found: dict[str, set[str]] = {}
    bound: dict[str, str] = {}  # a name in the file -> the module of ours it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if alias.name in ROOT_FILES:
                    found.setdefault(alias.name, set())
                    bound[alias.asname or alias.name] = alias.name
                elif len(parts) == 2 and parts[0] == PACKAGE and parts[1] in LIBRARY:
                    found.setdefault(parts[1], set())
                    if alias.asname:
                        bound[alias.asname] = parts[1]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if node.module in ROOT_FILES:
                found.setdefault(node.module, set()).update(alias.name for alias in node.names)
            elif node.module == PACKAGE:
                for alias in node.names:
                    found.setdefault(alias.name, set())
                    bound[alias.asname or alias.name] = alias.name
            elif len(parts) == 2 and parts[0] == PACKAGE and parts[1] in LIBRARY:
                found.setdefault(parts[1], set()).update(alias.name for alias in node.names)
    for node in ast.walk(tree):  # module.attribute uses
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            found[bound[node.value.id]].add(node.attr)
    return found


GRAPH = {name: imports_of(path_of(name)) for name in MODULES}


def test_the_root_holds_five_files_and_the_package_the_rest_flat():
    at_root = {p.stem for p in ROOT.glob("*.py")}
    assert at_root == ROOT_FILES, f"the root holds {sorted(at_root)}: a library module belongs in sql_rlvr/"
    assert not list((ROOT / PACKAGE).glob("*/*.py")), "sql_rlvr/ is flat: no subpackage"
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and len(tree.body) == 1, "sql_rlvr/__init__.py holds only its docstring"
    unlisted = [name for name in LIBRARY if not re.search(rf"^\s*{name}\s", doc, re.M)]
    assert not unlisted, f"sql_rlvr/__init__.py's docstring gives no line to {unlisted}"
    for name, deps in GRAPH.items():
        assert set(deps) <= set(MODULES), f"{name} imports {sorted(set(deps) - set(MODULES))}, which is not a module"


def test_the_modules_import_each_other_without_a_cycle():
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in GRAPH[name]:
            assert state.get(dep) != "open", "import cycle: " + " -> ".join(path + [name, dep])
            if dep not in state:
                visit(dep, path + [name])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [])


def test_no_module_imports_an_entry_script_or_uses_anothers_private_names():
    for name, deps in GRAPH.items():
        assert not (set(deps) & ENTRY_SCRIPTS), f"{name} imports an entry script: {set(deps) & ENTRY_SCRIPTS}"
        for dep, used in deps.items():
            private = sorted(n for n in used if n.startswith("_"))
            assert not private, f"{name} uses private names of {dep}: {private}"


def test_bench_uses_only_public_names():
    # The bench scripts measure the code as a user's script would call it: through its public names.
    for path in sorted((ROOT / "bench").glob("*.py")):
        for dep, used in imports_of(path).items():
            private = sorted(n for n in used if n.startswith("_"))
            assert not private, f"bench/{path.name} uses private names of {dep}: {private}"


def test_the_lower_layers_import_nothing_above_them():
    # What each module's docstring promises: the sandbox and the scorer start fast in worker processes,
    # and benchmarks.py no longer imports utils (it used to, both ways). value_index.py (--value_hints) sits
    # below the prompt code that calls it.
    allowed = {"errors": set(), "config": set(), "hardness": set(), "extract": set(), "progress": set(),
               "sandbox": {"errors"},
               "scoring": {"errors", "hardness", "sandbox"}, "schema": {"errors", "sandbox"},
               "value_index": {"errors", "sandbox"}, "run_folders": {"config", "errors"},
               "execution_reward": {"extract", "config", "errors", "sandbox", "scoring"},
               "sql_tool": {"sandbox"}}  # the agentic mode's tool: its worker processes start fast too
    for name, deps in allowed.items():
        assert set(GRAPH[name]) <= deps, f"{name} imports {sorted(set(GRAPH[name]) - deps)}"
    assert "utils" not in GRAPH["benchmarks"]
    # the agentic mode sits just above utils, below what GRPO and evaluation build on it
    assert not {"training", "run_folders", "export", "dev_check", "pass_rate_filter"} & set(GRAPH["agent"])


def test_every_module_opens_by_saying_what_it_holds_and_stays_within_its_room():
    for name in MODULES:
        text = path_of(name).read_text()
        assert ast.get_docstring(ast.parse(text)), f"{path_of(name).relative_to(ROOT)} has no module docstring"
        lines = text.count("\n")
        assert lines <= MAX_LINES, f"{name}.py has {lines} lines: split it by concern (docs/architecture.md)"


def test_each_entry_scripts_main_reads_top_to_bottom_in_one_screen():
    # A newcomer reads main() as the recipe of its stage (nanoGPT's train.py, TRL's scripts/grpo.py): helpers
    # hold the details, main() stays short enough to follow in one read.
    for name in ENTRY_SCRIPTS:
        tree = ast.parse(path_of(name).read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        length = main.end_lineno - main.lineno + 1
        assert length <= 60, f"{name}.py's main() has {length} lines: move a step's details into a helper"
