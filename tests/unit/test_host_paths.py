"""Where a file from the sandbox may land on the host (kernel/downloads.py), without a sandbox.

The name of a download comes from the sandbox or from a line it may have planted, so it is hostile:
these are the shapes an attacker would try (climbing out, absolute paths, hidden and importable names,
names Windows turns into devices, control characters) and the symlinks a local process could lay in
the way. Each must be refused with a message that says why, and nothing may be written outside
`<notebook folder>/sandbox-downloads/<sandbox id>/`."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from jupyter_sandbox.kernel import downloads
from jupyter_sandbox.sandbox.spec import SpecError

BOX = "0123456789ab"
FOLDER = ["sandbox-downloads"]


def filler(data: bytes) -> Callable[[IO[bytes]], int]:
    def fill(handle: IO[bytes]) -> int:
        handle.write(data)
        return len(data)

    return fill


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "name, message",
    [
        ("../numpy.py", "'..' is not allowed"),
        ("a/../../b", "'..' is not allowed"),
        ("/etc/passwd", "is absolute"),
        ("~/x", "is absolute"),
        ("\\\\server\\share", "is absolute"),
        ("C:evil", "is absolute"),
        (".bashrc", "hidden files"),
        ("a/.git/config", "hidden files"),
        ("a//b", "empty or '.' part"),
        ("./x", "empty or '.' part"),
        ("x\nimport os", "control or formatting character U+000A"),
        ("report\u202egnp.py", "control or formatting character U+202E"),
        ("a\x00b", "NUL is not allowed"),
        ("CON", "reserved device name"),
        ("nul.txt", "reserved device name"),
        ("COM1 .log", "reserved device name"),
        ("a:b", "is absolute"),  # a drive letter, to Windows
        ("x<y", "'<' is not allowed"),
        ("what?", "'?' is not allowed"),
        ("trailing.", "end with a dot or a space"),
        (" leading", "begin with a space"),
        ("x" * 256, "at most 255 bytes"),
        ("/".join(["d"] * 17), "at most 16 folders deep"),
        ("", "a host path is needed"),
    ],
)
def test_hostile_names_are_refused_with_the_reason(name: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        downloads.name_parts(name, "/home/sandbox/whatever", allow_hidden=False)


def test_the_sandbox_files_name_is_checked_as_well() -> None:
    # No host name given: the sandbox file's own name is used, and it is just as hostile.
    with pytest.raises(SpecError, match="hidden files"):
        downloads.name_parts(None, "/home/sandbox/.profile", allow_hidden=False)
    assert downloads.name_parts(None, "/home/sandbox/out/results.csv", allow_hidden=False) == ["results.csv"]
    assert downloads.name_parts(None, "/home/sandbox/out/", allow_hidden=False) == ["out"]


def test_hidden_names_only_when_asked_for() -> None:
    assert downloads.name_parts(".env", "/x", allow_hidden=True) == [".env"]
    with pytest.raises(SpecError, match=re.escape("'..' is not allowed")):
        downloads.name_parts("..", "/x", allow_hidden=True)


def test_ordinary_names_pass_as_they_are() -> None:
    assert downloads.name_parts("data/2024 results.csv", "/x", allow_hidden=False) == ["data", "2024 results.csv"]
    assert downloads.name_parts("résumé.pdf", "/x", allow_hidden=False) == ["résumé.pdf"]


@pytest.mark.parametrize(
    "folder, message",
    [
        ("downloads", "Python could import"),
        ("/tmp/x", "must be a relative path"),
        ("", "must be a relative path"),
        ("../outside", "'..' is not allowed"),
        (".hidden", "hidden files"),
    ],
)
def test_the_operators_folder_must_not_be_importable_or_outside(folder: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        downloads.check_folder(folder)


def test_a_download_lands_in_its_own_folder_whole_and_not_executable(tmp_path: Path) -> None:
    destination, size = downloads.write(str(tmp_path), FOLDER, BOX, ["numpy.py"], False, filler(b"print(1)\n"))
    assert destination == tmp_path / "sandbox-downloads" / BOX / "numpy.py"
    assert size == 9 and destination.read_bytes() == b"print(1)\n"
    assert stat.S_IMODE(destination.stat().st_mode) & 0o111 == 0
    # Nothing but the file and its folders; no temporary file left behind.
    assert everything_under(tmp_path) == {
        "sandbox-downloads",
        f"sandbox-downloads/{BOX}",
        f"sandbox-downloads/{BOX}/numpy.py",
    }


def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    downloads.write(str(tmp_path), FOLDER, BOX, ["a.txt"], False, filler(b"first"))
    with pytest.raises(SpecError, match="exists; add --force to replace it"):
        downloads.write(str(tmp_path), FOLDER, BOX, ["a.txt"], False, filler(b"second"))
    target = tmp_path / "sandbox-downloads" / BOX / "a.txt"
    assert target.read_bytes() == b"first"
    downloads.write(str(tmp_path), FOLDER, BOX, ["a.txt"], True, filler(b"second"))
    assert target.read_bytes() == b"second"


def test_a_symlinked_folder_on_the_way_is_not_followed(tmp_path: Path) -> None:
    notebook, elsewhere = tmp_path / "notebook", tmp_path / "elsewhere"
    notebook.mkdir()
    elsewhere.mkdir()
    (notebook / "sandbox-downloads").mkdir()
    os.symlink(elsewhere, notebook / "sandbox-downloads" / BOX)
    with pytest.raises(SpecError, match="is a symlink; downloads do not go through it"):
        downloads.write(str(notebook), FOLDER, BOX, ["x.txt"], False, filler(b"x"))
    assert not any(elsewhere.iterdir())


def test_a_symlink_in_the_files_place_is_neither_followed_nor_replaced(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    place = tmp_path / "sandbox-downloads" / BOX
    place.mkdir(parents=True)
    os.symlink(victim, place / "x.txt")
    for force in (False, True):
        with pytest.raises(SpecError, match="is a symlink; not writing through it"):
            downloads.write(str(tmp_path), FOLDER, BOX, ["x.txt"], force, filler(b"overwritten"))
    assert victim.read_bytes() == b"keep me"
    assert (place / "x.txt").is_symlink()


def test_a_folder_in_the_files_place_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sandbox-downloads" / BOX / "x").mkdir(parents=True)
    with pytest.raises(SpecError, match="exists and is not a file"):
        downloads.write(str(tmp_path), FOLDER, BOX, ["x"], True, filler(b"x"))


def test_a_failed_transfer_leaves_nothing(tmp_path: Path) -> None:
    def broken(handle: IO[bytes]) -> int:
        handle.write(b"half")
        raise OSError("the sandbox went away")

    with pytest.raises(OSError, match="went away"):
        downloads.write(str(tmp_path), FOLDER, BOX, ["half.bin"], False, broken)
    assert not list((tmp_path / "sandbox-downloads" / BOX).iterdir())


def test_nested_names_make_their_folders_inside_the_sandboxs_folder(tmp_path: Path) -> None:
    destination, _ = downloads.write(str(tmp_path), FOLDER, BOX, ["a", "b", "c.txt"], False, filler(b""))
    assert destination == tmp_path / "sandbox-downloads" / BOX / "a" / "b" / "c.txt"
    assert destination.read_bytes() == b""
