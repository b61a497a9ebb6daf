"""Snakemake profiles (profiles/local, profiles/slurm, tests/cluster/profile): they parse, name
only rules that exist, GPU rules ask for GPUs the way the SLURM plugin accepts, and the test
profile turns every GPU request off (the test cluster has no GPUs). The real SLURM run is
tests/cluster/test_slurm.py (marker `cluster`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "profiles" / "slurm" / "config.yaml"
LOCAL = REPO / "profiles" / "local" / "config.yaml"
TEST = REPO / "tests" / "cluster" / "profile" / "config.yaml"


def _load(p: Path) -> dict:
    return yaml.safe_load(p.read_text())


@pytest.fixture(scope="module")
def rule_names(mirror):
    r = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--list-rules", "--configfile", "config/demo.yaml"],
        cwd=REPO,
        env=dict(os.environ, EMOHEAD_MIRROR=str(mirror)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    names = {ln.strip() for ln in r.stdout.splitlines() if re.fullmatch(r"\s*[A-Za-z_]\w*\s*", ln)}
    assert {"crop_video", "extract_audio", "all_preprocess"} <= names
    return names


def _gpu_rules() -> set[str]:
    """Rules whose own `resources:` mention gpu (rules/*.smk)."""
    out = set()
    for f in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", f.read_text()):
            m = re.match(r"rule (\w+):", block)
            if m and re.search(r"^\s+gpu\s*=", block, re.M):
                out.add(m[1])
    return out


def test_profiles_are_snakemake9_profiles():
    for p in (LOCAL, SLURM, TEST):
        assert p.name == "config.yaml" and isinstance(_load(p), dict)
    local = _load(LOCAL)
    assert "gpu" in local["resources"] and local["cores"]
    slurm = _load(SLURM)
    assert slurm["executor"] == "slurm" and slurm["jobs"] >= 1 and slurm["retries"] >= 1
    assert {"slurm_partition", "runtime", "mem_mb"} <= set(slurm["default-resources"])


def test_slurm_gpu_requests(rule_names):
    slurm = _load(SLURM)
    sr = slurm["set-resources"]
    for rule, res in sr.items():
        assert "--gres" not in str(res.get("slurm_extra", "")), (
            f"{rule}: the plugin rejects --gres in slurm_extra"
        )
    gpu = {r for r, res in sr.items() if res.get("gpu", 0)}
    assert _gpu_rules() <= gpu, f"GPU rules without gpu: 1 in the slurm profile: {_gpu_rules() - gpu}"
    for r in gpu:
        assert sr[r]["gpu"] == 1 and sr[r].get("cpus_per_gpu", 0) >= 1, r
    # every rule named in the profile exists (a renamed rule would silently lose its settings)
    named = set(sr) | set(slurm.get("groups", {}))
    assert named <= rule_names, f"profile names unknown rules: {named - rule_names}"
    # grouping: GPU jobs carry their CPU-light preparation; per-clip steps are packed
    groups = slurm["groups"]
    render = {r for r in rule_names if r.startswith("render_")}
    assert {groups.get(r) for r in render} == {groups["render_train"]}, (
        "every render rule in the subject's job"
    )
    # one SLURM job per group component: its rules must agree on every string resource
    # (Snakemake: "Error grouping resources ... not all jobs in group require the same value")
    for g in set(groups.values()):
        members = [r for r, gg in groups.items() if gg == g]
        for key in ("slurm_partition", "gpu_model", "slurm_account"):
            vals = {str(sr.get(r, {}).get(key, slurm["default-resources"].get(key))) for r in members}
            assert len(vals) == 1, f"group {g}: rules {members} ask for different {key}: {vals}"
    assert (
        groups["crop_video"] == groups["extract_audio"]
        and slurm["group-components"][groups["crop_video"]] > 1
    )


def test_test_profile_switches_gpus_off_and_fits_the_test_cluster():
    slurm, test = _load(SLURM), _load(TEST)
    gpu = {r for r, res in slurm["set-resources"].items() if res.get("gpu", 0)}
    for r in gpu:
        assert test["set-resources"].get(r, {}).get("gpu") == 0, (
            f"{r} would submit --gpus to a GPU-less cluster"
        )
        assert "gpu_model" not in test["set-resources"][r]
    assert test["slurm-status-command"] == "squeue" and test["slurm-no-account"] is True
    assert test["slurm-init-seconds-before-status-checks"] <= 10
    assert test["default-resources"]["slurm_partition"] == "debug"  # start_slurm.sh's partition
    assert "PartitionName=$PARTITION" in (REPO / "tests/cluster/start_slurm.sh").read_text()


@pytest.mark.parametrize("profiles", [["profiles/slurm"], ["profiles/slurm", "tests/cluster/profile"]])
def test_full_demo_dag_builds_with_the_slurm_profiles(profiles, tmp_path, mirror):
    """The job groups of the profile are valid for the whole workflow (Snakemake rejects a group
    whose jobs depend on it through an outside job only when it builds the DAG, and a group whose
    jobs ask for different partitions only when it combines their resources: not with
    `--quiet progress`, which stops right after the DAG)."""
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config/config.yaml"),
        str(REPO / "config/demo.yaml"),
        "-n",
        "--quiet",
        "rules",
    ]
    for p in profiles:
        cmd += ["--profile", str(REPO / p)]
    r = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=dict(os.environ, EMOHEAD_MIRROR=str(mirror)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "Error in group" not in r.stdout + r.stderr
    assert "Error grouping resources" not in r.stdout + r.stderr
    assert "render_driven" in r.stdout  # the group with the GPU rules was really combined
