"""The shape of the code: flat modules, one concern each, no import cycle, no private name across modules.

docs/architecture.md draws the graph this test reads from the sources; a cycle, a module that reaches
into another's private names, or a module grown far past its room fails here.
"""

import ast

from conftest import ROOT

MODULES = sorted(p.stem for p in ROOT.glob("*.py"))
ENTRY_SCRIPTS = {"train_sft", "train_grpo", "evaluate"}
MAX_LINES = 950  # "about 900": past it a module holds more than one concern


def project_imports(name: str) -> dict[str, set[str]]:
    """{module it imports: names it uses from it} over the whole file, imports inside functions included."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom) and node.module in MODULES and node.level == 0:
            found.setdefault(node.module, set()).update(alias.name for alias in node.names)
    for node in ast.walk(tree):  # module.attribute uses
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in found:
            found[node.value.id].add(node.attr)
    return found


GRAPH = {name: project_imports(name) for name in MODULES}


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


def test_the_lower_layers_import_nothing_above_them():
    # What each module's docstring promises: the sandbox and the scorer start fast in worker processes,
    # and benchmarks.py no longer imports utils (it used to, both ways). values.py (--value_hints) sits
    # below the prompt code that calls it.
    allowed = {"errors": set(), "config": set(), "hardness": set(), "answers": set(), "sandbox": {"errors"},
               "scoring": {"errors", "hardness", "sandbox"}, "schema": {"errors", "sandbox"},
               "values": {"errors", "sandbox"}, "runs": {"config", "errors"},
               "execution_reward": {"answers", "config", "errors", "sandbox", "scoring"},
               "sql_tool": {"sandbox"}}  # the agentic mode's tool: its worker processes start fast too
    for name, deps in allowed.items():
        assert set(GRAPH[name]) <= deps, f"{name} imports {sorted(set(GRAPH[name]) - deps)}"
    assert "utils" not in GRAPH["benchmarks"]
    assert not {"trainers", "runs", "export"} & set(GRAPH["agent"])  # the agentic mode sits just above utils


def test_every_module_opens_by_saying_what_it_holds_and_stays_within_its_room():
    for name in MODULES:
        text = (ROOT / f"{name}.py").read_text()
        assert ast.get_docstring(ast.parse(text)), f"{name}.py has no module docstring"
        lines = text.count("\n")
        assert lines <= MAX_LINES, f"{name}.py has {lines} lines: split it by concern (docs/architecture.md)"
