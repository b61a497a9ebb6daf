"""Asset manifest and resolution: mirror, sha256 check, git clone and file:// download (offline)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from emohead_core import assets
from emohead_core.errors import AssetError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture()
def git_repo(tmp_path):
    """A local git repository with two commits of weights/model.bin (binary content)."""
    repo = tmp_path / "upstream"
    (repo / "weights").mkdir(parents=True)
    _git(tmp_path, "init", "-q", str(repo))
    v1 = bytes(range(256)) * 10 + b"\x00v1"
    (repo / "weights" / "model.bin").write_bytes(v1)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "v1")
    c1 = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    v2 = b"\xff" * 100 + b"v2"
    (repo / "weights" / "model.bin").write_bytes(v2)
    _git(repo, "commit", "-q", "-am", "v2")
    return repo, c1, v1, v2


def test_manifest_entries_match_mirror(mirror):
    """Every pinned asset present in the shared mirror has the manifest's sha256 and size."""
    manifest = assets.load_manifest()
    checked = 0
    for a in manifest.values():
        p = mirror / a.mirror
        if a.sha256 is None:
            continue
        assert p.is_file(), f"{a.name}: pinned asset missing from the mirror at {p}"
        assert assets.sha256_file(p) == a.sha256, a.name
        if a.size:
            assert p.stat().st_size == a.size, a.name
        assert a.git_url and a.git_commit and len(a.git_commit) == 40 and a.git_path, a.name
        checked += 1
    assert checked >= 14
    assert {"3ddfa_v2/FaceBoxesProd.pth", "3ddfa_v2/mb05_120x120.pth", "3ddfa_v2/mb1_120x120.pth"} <= set(
        manifest
    )
    assert assets.group("demo_media", manifest)


def test_resolve_from_mirror_copies_and_reuses(mirror, tmp_path):
    name = "3ddfa_v2/param_mean_std_62d_120x120.pkl"
    out = assets.resolve(name, tmp_path / "assets", mirror=mirror)
    assert out == tmp_path / "assets" / name
    assert out.read_bytes() == (mirror / "models/3ddfa_v2/param_mean_std_62d_120x120.pkl").read_bytes()
    # already resolved with the right hash: no mirror needed any more
    out2 = assets.resolve(name, tmp_path / "assets", mirror=tmp_path / "nowhere")
    assert out2 == out
    # in-place resolution (parse-time discovery) points into the mirror
    assert (
        assets.resolve_in_place(name, mirror=mirror)
        == mirror / "models/3ddfa_v2/param_mean_std_62d_120x120.pkl"
    )


def test_corrupted_resolved_copy_is_replaced(mirror, tmp_path):
    name = "3ddfa_v2/mb05_120x120.yml"
    out = assets.resolve(name, tmp_path, mirror=mirror)
    out.write_text("tampered")
    out = assets.resolve(name, tmp_path, mirror=mirror)
    assert assets.sha256_file(out) == assets.load_manifest()[name].sha256


def test_sha_mismatch_in_mirror_is_an_error(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "x").mkdir(parents=True)
    (mirror / "x" / "f.bin").write_bytes(b"corrupted")
    manifest = {"f.bin": assets.Asset(name="f.bin", sha256=_sha(b"good"), mirror="x/f.bin")}
    with pytest.raises(AssetError) as e:
        assets.resolve("f.bin", tmp_path / "res", mirror=mirror, manifest=manifest)
    msg = str(e.value)
    assert "sha256 mismatch" in msg and _sha(b"good") in msg and _sha(b"corrupted") in msg
    assert str(mirror / "x" / "f.bin") in msg
    assert not (tmp_path / "res" / "f.bin").exists()
    with pytest.raises(AssetError):
        assets.resolve_in_place("f.bin", mirror=mirror, manifest=manifest)


def test_git_clone_path_full_and_short_commit(git_repo, tmp_path):
    repo, c1, v1, v2 = git_repo
    for commit in (c1, c1[:7]):
        manifest = {
            "m.bin": assets.Asset(
                name="m.bin",
                sha256=_sha(v1),
                mirror="models/m.bin",
                git_url=f"file://{repo}",
                git_commit=commit,
                git_path="weights/model.bin",
            )
        }
        dest = tmp_path / f"res-{len(commit)}"
        # a mirror without the file falls through to the git upstream
        out = assets.resolve("m.bin", dest, mirror=tmp_path / "empty-mirror", manifest=manifest)
        assert out.read_bytes() == v1  # the pinned commit, not HEAD (v2)


def test_git_clone_checksum_and_missing_commit(git_repo, tmp_path):
    repo, c1, v1, v2 = git_repo
    bad_sha = {
        "m.bin": assets.Asset(
            name="m.bin", sha256=_sha(v2), git_url=str(repo), git_commit=c1, git_path="weights/model.bin"
        )
    }
    with pytest.raises(AssetError, match="sha256 mismatch"):
        assets.resolve("m.bin", tmp_path / "a", manifest=bad_sha)
    assert not (tmp_path / "a" / "m.bin").exists()
    missing = {
        "m.bin": assets.Asset(
            name="m.bin",
            sha256=_sha(v1),
            git_url=str(repo),
            git_commit="0" * 40,
            git_path="weights/model.bin",
        )
    }
    with pytest.raises(AssetError, match="not found"):
        assets.resolve("m.bin", tmp_path / "b", manifest=missing)
    wrong_path = {
        "m.bin": assets.Asset(
            name="m.bin", sha256=_sha(v1), git_url=str(repo), git_commit=c1, git_path="weights/nope.bin"
        )
    }
    with pytest.raises(AssetError, match="nope.bin"):
        assets.resolve("m.bin", tmp_path / "c", manifest=wrong_path)
    unreachable = {
        "m.bin": assets.Asset(
            name="m.bin",
            sha256=_sha(v1),
            git_url=str(tmp_path / "no-repo"),
            git_commit=c1,
            git_path="weights/model.bin",
        )
    }
    with pytest.raises(AssetError, match="git"):
        assets.resolve("m.bin", tmp_path / "d", manifest=unreachable)


def test_file_url_download(tmp_path):
    src = tmp_path / "upstream.bin"
    src.write_bytes(b"weights" * 1000)
    manifest = {"w.bin": assets.Asset(name="w.bin", sha256=_sha(src.read_bytes()), url=src.as_uri())}
    out = assets.resolve("w.bin", tmp_path / "res", manifest=manifest)
    assert out.read_bytes() == src.read_bytes()
    bad = {"w.bin": assets.Asset(name="w.bin", sha256=_sha(b"other"), url=src.as_uri())}
    with pytest.raises(AssetError, match="sha256 mismatch"):
        assets.resolve("w.bin", tmp_path / "res2", manifest=bad)
    gone = {"w.bin": assets.Asset(name="w.bin", sha256=_sha(b"x"), url=(tmp_path / "missing").as_uri())}
    with pytest.raises(AssetError, match="download"):
        assets.resolve("w.bin", tmp_path / "res3", manifest=gone)
    assert not (tmp_path / "res2" / "w.bin").exists()


def test_unknown_asset_and_no_source(tmp_path):
    with pytest.raises(AssetError, match="unknown asset"):
        assets.resolve("nope/x.bin", tmp_path)
    manifest = {"x": assets.Asset(name="x", sha256=_sha(b"x"), mirror="x")}
    with pytest.raises(AssetError, match="no upstream"):
        assets.resolve("x", tmp_path, mirror=tmp_path, manifest=manifest)


def test_unpinned_asset_resolves_with_warning(tmp_path, caplog):
    src = tmp_path / "u.bin"
    src.write_bytes(b"unpinned")
    manifest = {"u.bin": assets.Asset(name="u.bin", sha256=None, url=src.as_uri())}
    out = assets.resolve("u.bin", tmp_path / "res", manifest=manifest)
    assert out.read_bytes() == b"unpinned"
    assert _sha(b"unpinned") in caplog.text
