"""Conda envs (`--use-conda`): every rule names an env, the env files parse, agree with the pins of
requirements.txt, install emohead_core through their post-deploy script, and provide every
third-party package the rule's script imports at import time (directly or through
emohead_core; imports inside functions are optional paths and not checked).

Conda channels are not reachable here, so the envs are not created in CI (README).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ENVS = sorted((REPO / "envs").glob("*.yaml"))

RULES_SCRIPT = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, Quietness
repo = Path(sys.argv[1])
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[repo / "config/config.yaml", repo / "config/demo.yaml"]),
        snakefile=repo / "Snakefile",
        workdir=Path.cwd(),
    )._workflow
    rules = [
        {"name": r.name, "conda": r.conda_env, "run": bool(r.is_run), "script": r.script,
         "norun": bool(r.norun), "file": str(r.snakefile)}
        for r in wf.rules
    ]
print("RULES_JSON=" + json.dumps(rules, default=str))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            n, v = line.split("==", 1)
            pins[_norm(n)] = v.strip()
    return pins


@pytest.fixture(scope="module")
def rules(tmp_path_factory, mirror):
    wd = tmp_path_factory.mktemp("rules")
    env = dict(os.environ, EMOHEAD_MIRROR=str(mirror), OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-c", RULES_SCRIPT, str(REPO)],
        cwd=wd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RULES_JSON=")]
    assert r.returncode == 0 and line, r.stderr[-3000:]
    return json.loads(line[0][len("RULES_JSON=") :])


def _env_file(rule: dict) -> Path:
    return (Path(rule["file"]).parent / rule["conda"]).resolve()


def test_every_rule_names_an_existing_env(rules):
    acting = [r for r in rules if not r["norun"]]
    assert len(acting) >= 10
    missing = [r["name"] for r in acting if not r["conda"]]
    assert not missing, f"rules without `conda:`: {missing}"
    run_rules = [r["name"] for r in acting if r["run"]]
    assert not run_rules, f"`run:` rules ignore --use-conda, use `script:`: {run_rules}"
    for r in acting:
        f = _env_file(r)
        assert f.is_file() and f.parent == REPO / "envs", (r["name"], f)


def test_env_files_parse_and_agree_with_requirements():
    req = _pins(REPO / "requirements.txt")
    nodeps = _pins(REPO / "requirements-nodeps.txt") if (REPO / "requirements-nodeps.txt").is_file() else {}
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert {p.stem for p in ENVS} >= {
        "preprocess",
        "expression",
        "features",
        "audio2exp",
        "render",
        "metrics",
    }
    for path in ENVS:
        env = yaml.safe_load(path.read_text())
        assert "conda-forge" in env["channels"], path.name
        deps = env["dependencies"]
        assert f"python={py}" in deps, f"{path.name}: conda python must be python={py} like .venv"
        pip = [d for d in deps if isinstance(d, dict)]
        assert len(pip) == 1 and "pip" in deps, path.name
        for entry in pip[0]["pip"]:
            if entry.startswith("--extra-index-url") or entry.startswith("--index-url"):
                continue
            assert not entry.startswith("-e") and "/" not in entry, (
                f"{path.name}: {entry!r}: Snakemake copies env files to .snakemake/conda/, relative "
                "paths break; install the repo in the post-deploy script"
            )
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", entry.strip())
            assert m, f"{path.name}: {entry!r} is not pinned as name==version"
            name, version = _norm(m[1]), m[2]
            pinned = req.get(name, nodeps.get(name))
            assert pinned is not None, f"{path.name}: {m[1]} is not pinned in requirements.txt"
            assert version == pinned, f"{path.name}: {m[1]}=={version} but requirements pin {pinned}"
        assert not any(_norm(e.split("==")[0]) in ("torchaudio", "torchvision") for e in pip[0]["pip"])


def test_post_deploy_installs_emohead_core():
    for path in ENVS:
        script = path.with_name(path.stem + ".post-deploy.sh")
        assert script.is_file(), f"{script.name} missing: nothing installs emohead_core in {path.name}"
        text = script.read_text()
        assert text.startswith("#!") and "pip install --no-deps -e" in text, script.name
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    # the guard works: outside the repo the script refuses instead of installing something else
    r = subprocess.run(
        ["bash", str(ENVS[0].with_name(ENVS[0].stem + ".post-deploy.sh"))],
        cwd="/",
        env=dict(os.environ, EMOHEAD_ROOT="/"),
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "not the EmoHead repository" in r.stderr


# ------------------------------------------------------------- imports of each rule's script


def _import_time_nodes(tree: ast.AST):
    """Import statements executed when the module is imported (function bodies excluded: lazy
    imports serve optional paths, e.g. a CUDA backend)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


@cache
def _module_imports(path: Path) -> tuple[frozenset, frozenset]:
    """(top-level third-party names, emohead_core module files) imported when `path` is
    imported."""
    tree = ast.parse(path.read_text())
    pkg = None
    if REPO / "emohead_core" in path.parents:
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        pkg = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names, local = set(), set()

    def add_local(dotted: list[str]):
        base = REPO.joinpath(*dotted)
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                local.add(cand)
        # also the packages on the way (their __init__ runs on import)
        for i in range(1, len(dotted)):
            init = REPO.joinpath(*dotted[:i], "__init__.py")
            if init.is_file():
                local.add(init)

    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                (add_local(parts) if parts[0] == "emohead_core" else names.add(parts[0]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if pkg is None:
                    continue
                base = pkg[: len(pkg) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
            elif node.module:
                mod = node.module.split(".")
            else:
                continue
            if mod[0] == "emohead_core":
                add_local(mod)
                for a in node.names:
                    add_local(mod + [a.name])
            else:
                names.add(mod[0])
    return frozenset(names), frozenset(local)


def _script_third_party(script: Path) -> set[str]:
    seen, todo, names = set(), [script], set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        n, local = _module_imports(f)
        names |= n
        todo.extend(local)
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("emohead_core", "__future__")}


def _requires_closure(dists: set[str]) -> set[str]:
    out, todo = set(), list(dists)
    while todo:
        d = todo.pop()
        if d in out:
            continue
        out.add(d)
        try:
            reqs = md.requires(d) or []
        except md.PackageNotFoundError:
            continue
        for r in reqs:
            if "extra ==" in r:
                continue
            todo.append(_norm(re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0]))
    return out


def test_each_env_provides_what_its_rules_import(rules):
    mod2dist = {m: {_norm(d) for d in ds} for m, ds in md.packages_distributions().items()}
    problems, checked = [], {}
    for r in rules:
        if r["norun"] or not r["script"]:
            continue
        script = (Path(r["file"]).parent / r["script"]).resolve()
        env = yaml.safe_load(_env_file(r).read_text())
        pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
        listed = {_norm(e.split("==")[0]) for e in pip if "==" in e}
        provided = _requires_closure(listed) | {"snakemake"}  # snakemake is listed in every env
        checked[r["name"]] = _script_third_party(script)
        for mod in sorted(checked[r["name"]]):
            dists = mod2dist.get(mod)
            if not dists:
                continue  # not installed here either (optional backend, e.g. tinycudann on CUDA)
            if not dists & provided:
                problems.append(f"{r['name']} ({_env_file(r).name}): imports {mod} from {sorted(dists)}")
    assert {"numpy", "pandas"} <= checked["crop_video"], checked["crop_video"]  # the scan sees imports
    assert not problems, "envs lack packages their rules import:\n" + "\n".join(problems)
