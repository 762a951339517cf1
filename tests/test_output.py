"""Output placement: atomic durable writes, paths that cannot escape, sidecars, crash leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from icsd.daemon.output import (
    NAME_MAX,
    TEMP_PREFIX,
    free_name,
    move_durably,
    numbered_name,
    output_name,
    output_names,
    remove_stray_temps,
    safe_join,
    sidecar_name,
    write_atomic,
    write_failure,
)


def test_output_name_mirrors_the_relative_path() -> None:
    assert output_name("a/b/photo.JPG") == "a/b/photo.png"
    assert output_name("photo.png") == "photo.png"
    assert output_name("no_suffix") == "no_suffix.png"


def test_output_names_go_on_past_the_documented_alternative() -> None:
    names = output_names("a/photo.jpg")
    expected = ["a/photo.png", "a/photo.jpg.png", "a/photo.jpg.2.png", "a/photo.jpg.3.png"]
    assert [next(names) for _ in range(4)] == expected
    chained = output_names("a.png")  # a.png's alternative a.png.png may be another input's own output
    assert [next(chained) for _ in range(3)] == ["a.png", "a.png.png", "a.png.2.png"]


def test_every_generated_name_fits_one_path_component() -> None:
    long_stem = "é" * 126  # 252 bytes: the input name x.jpg is 256 - 1 ... at the limit with .jpg
    rel = f"deep/{long_stem[:-1]}.jpg"  # 250 + 4 bytes = 254, a valid name
    names = output_names(rel)
    for name in [next(names) for _ in range(3)] + [numbered_name(rel, 12), sidecar_name(rel)]:
        folder, _, last = name.rpartition("/")
        assert folder == "deep" and len(os.fsencode(last)) <= NAME_MAX, name
        last.encode("utf-8")  # cut at a character boundary, never inside é
    assert next(output_names(rel)) == f"deep/{long_stem[:-1]}.png"  # the natural name is never shortened
    assert sidecar_name(rel).endswith(".error.json") and numbered_name(rel, 12).endswith(".12.jpg")


def test_free_name_never_picks_a_name_in_use(tmp_path: Path) -> None:
    assert free_name(tmp_path, "cam/IMG_1.JPG") == "cam/IMG_1.JPG"
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "IMG_1.JPG").write_bytes(b"first")
    (tmp_path / "cam" / "IMG_1.2.JPG.error.json").write_bytes(b"{}")  # a report whose original is gone
    (tmp_path / "cam" / "IMG_1.3.JPG").symlink_to(tmp_path / "nowhere")  # dangling, still a name in use
    assert free_name(tmp_path, "cam/IMG_1.JPG") == "cam/IMG_1.4.JPG"
    assert numbered_name("no_suffix", 2) == "no_suffix.2"


@pytest.mark.parametrize("rel", ["../x.png", "/etc/passwd", "a/../../x.png", ""])
def test_safe_join_refuses_escapes(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ValueError, match="path"):
        safe_join(tmp_path, rel)


def test_safe_join_refuses_symlinked_folder_leading_out(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="escapes"):
        safe_join(tmp_path / "root", "link/x.png")


def test_safe_join_allows_links_that_stay_inside_and_refuses_links_out_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real" / "deeper").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    (root / "alias").symlink_to(root / "real")  # inside: as good as the real folder
    assert safe_join(root, "alias/deeper/x.png") == root / "alias" / "deeper" / "x.png"
    (root / "real" / "deeper" / "out").symlink_to(tmp_path / "elsewhere")  # two levels down, leading out
    with pytest.raises(ValueError, match="escapes"):
        safe_join(root, "real/deeper/out/x.png")
    (root / "real" / "name.png").symlink_to(tmp_path / "elsewhere" / "secret")  # the output's own name
    with pytest.raises(ValueError, match="escapes"):
        safe_join(root, "real/name.png")
    assert safe_join(root, "not/made/yet.png") == root / "not" / "made" / "yet.png"


def test_safe_join_refuses_a_root_replaced_by_a_link_leading_elsewhere(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert safe_join(root, "a.png") == root / "a.png"  # the root's real path is remembered
    root.rename(tmp_path / "moved")
    root.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="escapes"):
        safe_join(root, "a.png")


def test_write_atomic_creates_folders_and_leaves_no_temp(tmp_path: Path) -> None:
    target = write_atomic(tmp_path, "deep/er/out.png", b"payload")
    assert target.read_bytes() == b"payload"
    assert [p.name for p in target.parent.iterdir()] == ["out.png"]
    write_atomic(tmp_path, "deep/er/out.png", b"replaced")
    assert target.read_bytes() == b"replaced"


def test_write_atomic_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    """A write that hits the file-size limit (like a full disk) must not touch the old output."""
    write_atomic(tmp_path, "out.png", b"old")
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from icsd.daemon.output import write_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n"
        "    write_atomic(Path(sys.argv[1]), 'out.png', b'x' * 5000)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(__import__("errno").EFBIG), done.stderr
    assert (tmp_path / "out.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_move_durably_within_file_system(tmp_path: Path) -> None:
    source = tmp_path / "in" / "a.jpg"
    source.parent.mkdir()
    source.write_bytes(b"jpeg")
    moved = move_durably(source, tmp_path / "failed", "sub/a.jpg")
    assert moved == tmp_path / "failed" / "sub" / "a.jpg"
    assert moved.read_bytes() == b"jpeg" and not source.exists()


def test_move_durably_across_file_systems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than tmp_path")
    source = shm / f"icsd-test-{os.getpid()}.jpg"
    source.write_bytes(b"jpeg bytes")
    try:
        moved = move_durably(source, tmp_path / "archive", "x/y.jpg")
        assert moved.read_bytes() == b"jpeg bytes" and not source.exists()
        assert [p.name for p in moved.parent.iterdir()] == ["y.jpg"]
    finally:
        source.unlink(missing_ok=True)


def test_failure_sidecar_is_json_beside_the_original(tmp_path: Path) -> None:
    path = write_failure(tmp_path, "a/b.jpg", {"error": "truncated", "attempts": 1})
    assert path == tmp_path / "a" / "b.jpg.error.json"
    assert json.loads(path.read_text()) == {"attempts": 1, "error": "truncated"}


def test_remove_stray_temps_only_removes_ours(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"{TEMP_PREFIX}xyz").write_bytes(b"partial")
    (tmp_path / f"{TEMP_PREFIX}1").write_bytes(b"partial")
    (tmp_path / "a" / "keep.png").write_bytes(b"done")
    assert remove_stray_temps(tmp_path) == 2
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.png"]
    assert remove_stray_temps(tmp_path / "missing") == 0


def test_written_file_mode_respects_umask(tmp_path: Path) -> None:
    target = write_atomic(tmp_path, "m.png", b"x")
    mode = target.stat().st_mode & 0o777
    assert mode & 0o600 == 0o600 and not mode & 0o022 & ~0o644  # readable output, never group/world writable


def test_numbered_names_at_the_length_limit_keep_their_number_in_their_reports(tmp_path: Path) -> None:
    """A 240-byte stem: cutting the report's name dropped the number, every numbered name then shared the first
    one's report, each counted as taken, and free_name looped for ever (a batch spun at 100 % CPU)."""
    rel = "y" * 240 + ".jpg"
    names = [rel, *(numbered_name(rel, n) for n in (2, 3, 10, 100))]
    reports = [sidecar_name(name) for name in names]
    assert len(set(names)) == len(set(reports)) == len(names)
    assert all(len(os.fsencode(name)) <= NAME_MAX for name in names + reports)
    for number, name in zip((2, 3, 10, 100), names[1:], strict=True):
        assert name.endswith(f".{number}.jpg") and sidecar_name(name).endswith(f".{number}.jpg.error.json")
    for name in names[:3]:  # two failed originals of that name already, each with its report
        write_failure(tmp_path, name, {"error": "x"})
        (tmp_path / name).write_bytes(b"x")
    assert free_name(tmp_path, rel) == numbered_name(rel, 4)


def test_free_name_gives_up_instead_of_looping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("icsd.daemon.output.MAX_NUMBERED", 3)
    for name in ("a.jpg", "a.2.jpg", "a.3.jpg"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"3 files named like a\.jpg"):
        free_name(tmp_path, "a.jpg")
