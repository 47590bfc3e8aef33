"""Files a sandbox hands to the host (`%sandbox download`): where they land, and what they cannot do there."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SandboxKernel, start_sandbox_kernel

from jupyter_sandbox.sandbox.spec import SpecError

FOLDER = "sandbox-downloads"
# Code a sandbox would like the host to run: importing it leaves a mark on the host.
PLANT = "import pathlib; pathlib.Path({mark!r}).write_text('ran on the host')\n"


@pytest.fixture(scope="module")
def notebook_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("notebook-folder")
    (root / "analysis.ipynb").write_text("{}")
    return root


@pytest.fixture(scope="module")
def kernel(
    sandbox_image: str, notebook_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxKernel]:
    started = start_sandbox_kernel(
        extra_argv=[f"--SandboxKernel.host_root={notebook_folder}", "--SandboxKernel.max_transfer_size=200k"],
        tmp_path=tmp_path_factory.mktemp("spec"),
    )
    yield started
    started.shutdown()


@pytest.fixture(scope="module")
def sandbox_id(kernel: SandboxKernel) -> str:
    kernel.run("pass")  # the first cell starts the sandbox (and says so)
    return json.loads(kernel.run("%sandbox status --json").stdout)["id"]


def error_of(run) -> str:
    assert run.status == "error", run.stdout
    return run.reply["content"]["evalue"]


def everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_a_download_lands_in_its_own_folder_and_shadows_no_import(
    kernel: SandboxKernel, notebook_folder: Path, sandbox_id: str, tmp_path: Path
) -> None:
    mark = tmp_path / "mark"
    kernel.run(
        "import os; os.makedirs('/home/sandbox/pandas', exist_ok=True)\n"
        f"for name in ('numpy.py', 'pandas/__init__.py', 'sitecustomize.py', 'json.py'):\n"
        f"    open('/home/sandbox/' + name, 'w').write({PLANT.format(mark=str(mark))!r})"
    )
    landed = notebook_folder / FOLDER / sandbox_id
    for line, where in (
        ("%sandbox download numpy.py", "numpy.py"),
        ("%sandbox download pandas/__init__.py pandas/__init__.py", "pandas/__init__.py"),
        ("%sandbox download sitecustomize.py", "sitecustomize.py"),
        ("%sandbox download json.py", "json.py"),
    ):
        run = kernel.run(line)
        assert run.status == "ok", (line, run.error)
        assert run.stdout.endswith(f"to {landed / where}\n"), run.stdout
    assert (landed / "numpy.py").read_text() == PLANT.format(mark=str(mark))
    assert (landed / "pandas" / "__init__.py").is_file()
    # Nothing new beside the notebook but the downloads folder, whose name Python cannot import.
    assert sorted(p.name for p in notebook_folder.iterdir()) == ["analysis.ipynb", FOLDER]
    assert not FOLDER.isidentifier()
    for path in landed.rglob("*"):
        if path.is_file():
            assert not path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH), path
    # The user's next local Python, started in the notebook's folder, imports none of it.
    for code in (
        "import numpy",
        "import pandas",
        "import json",
        "import sandbox_downloads",
        "import importlib; importlib.import_module('sandbox-downloads')",
    ):
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=notebook_folder,
            capture_output=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
    assert not mark.exists(), "code from the sandbox ran on the host"


def test_an_existing_file_is_replaced_only_with_force(
    kernel: SandboxKernel, notebook_folder: Path, sandbox_id: str
) -> None:
    kernel.run("open('/home/sandbox/report.txt', 'w').write('first')")
    assert kernel.run("%sandbox download report.txt").status == "ok"
    kernel.run("open('/home/sandbox/report.txt', 'w').write('second')")
    target = notebook_folder / FOLDER / sandbox_id / "report.txt"
    assert "exists; add --force" in error_of(kernel.run("%sandbox download report.txt"))
    assert target.read_text() == "first"
    run = kernel.run("%sandbox download report.txt --force")
    assert run.status == "ok", run.error
    assert target.read_text() == "second"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".download-")]


def test_no_symlink_on_the_host_is_followed(
    kernel: SandboxKernel, notebook_folder: Path, sandbox_id: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("the user's")
    kernel.run("open('/home/sandbox/payload.txt', 'w').write('from the sandbox')")
    assert kernel.run("%sandbox download payload.txt").status == "ok"
    landed = notebook_folder / FOLDER / sandbox_id
    (landed / "through").symlink_to(outside)
    (landed / "precious.txt").symlink_to(outside / "precious.txt")
    assert "is a symlink" in error_of(kernel.run("%sandbox download payload.txt through/precious.txt"))
    for line in ("%sandbox download payload.txt precious.txt", "%sandbox download payload.txt precious.txt --force"):
        assert "is a symlink" in error_of(kernel.run(line)), line
    assert (outside / "precious.txt").read_text() == "the user's" and sorted(os.listdir(outside)) == ["precious.txt"]
    # The sandbox's own folder swapped for a symlink (by anything on the host): not followed either.
    landed.rename(landed.with_name("moved"))
    landed.symlink_to(outside)
    try:
        assert "is a symlink" in error_of(kernel.run("%sandbox download payload.txt fresh.txt"))
        assert sorted(os.listdir(outside)) == ["precious.txt"]
    finally:
        landed.unlink()
        landed.with_name("moved").rename(landed)


@pytest.mark.parametrize(
    "line, message",
    [
        ("%sandbox download payload.txt ../stolen", "'..' is not allowed"),
        ("%sandbox download payload.txt a/../../b", "'..' is not allowed"),
        ("%sandbox download payload.txt /tmp/stolen", "is absolute"),
        ("%sandbox download payload.txt ~/stolen", "is absolute"),
        ("%sandbox download payload.txt 'C:\\stolen'", "is absolute"),
        ("%sandbox download payload.txt 'a\\b'", "not allowed in a file name"),
        ("%sandbox download payload.txt .bashrc", "hidden files"),
        ("%sandbox download payload.txt a/.git/config", "hidden files"),
        ("%sandbox download payload.txt a//b", "empty"),
        ("%sandbox download payload.txt ./a", "'.' part"),
        ("%sandbox download payload.txt CON", "reserved device name"),
        ("%sandbox download payload.txt nul.txt", "reserved device name"),
        ("%sandbox download payload.txt lpt1.py", "reserved device name"),
        ("%sandbox download payload.txt 'name.'", "end with a dot"),
        ("%sandbox download payload.txt 'name '", "end with a dot or a space"),
        ("%sandbox download payload.txt 'ab:c'", "not allowed in a file name"),
        ("%sandbox download payload.txt 'a<b>'", "not allowed in a file name"),
        ("%sandbox download payload.txt 'a|b'", "not allowed in a file name"),
        ("%sandbox download payload.txt 'x\x1b[31m'", "control or formatting character U+001B"),
        ("%sandbox download payload.txt 'x\x7f'", "control or formatting character U+007F"),
        ("%sandbox download payload.txt 'report\u202etxt.py'", "control or formatting character U+202E"),
        ("%sandbox download payload.txt 'a\u2028b'", "control or formatting character U+2028"),
        ("%sandbox download payload.txt " + "n" * 256, "at most 255 bytes"),
        ("%sandbox download payload.txt " + "/".join(["d"] * 17), "folders deep"),
        ("%sandbox download /home/sandbox/.profile", "hidden files"),
        ("%sandbox download /home/sandbox/aux.txt", "reserved device name"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(
    kernel: SandboxKernel, notebook_folder: Path, line: str, message: str
) -> None:
    kernel.run("open('/home/sandbox/payload.txt', 'w').write('x')")
    before = everything_under(notebook_folder)
    assert message in error_of(kernel.run(line))
    assert everything_under(notebook_folder) == before
    assert not Path("/tmp/stolen").exists()


def test_a_download_above_the_limit_leaves_nothing(kernel: SandboxKernel, notebook_folder: Path) -> None:
    kernel.run("open('/home/sandbox/large.bin', 'wb').write(b'x' * 300_000)")
    assert "more than the limit" in error_of(kernel.run("%sandbox download large.bin"))
    assert not [p for p in everything_under(notebook_folder) if "large.bin" in p or ".download-" in p]


def test_the_operators_downloads_folder_must_not_be_importable() -> None:
    from jupyter_sandbox.kernel import downloads

    assert downloads.check_folder("sandbox-downloads") == ["sandbox-downloads"]
    assert downloads.check_folder("from-sandboxes/files") == ["from-sandboxes", "files"]
    for folder, message in (
        ("downloads", "Python could import"),
        ("numpy", "Python could import"),
        ("/srv/downloads", "relative path"),
        ("a-b/../c", "'..'"),
        (".hidden-x", "hidden"),
        ("", "relative path"),
    ):
        with pytest.raises(SpecError, match=message):
            downloads.check_folder(folder)
