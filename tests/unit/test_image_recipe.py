"""Image recipes and image kernels, without Docker: names checked before they reach a command line,
inputs hashed so the preset's tag stays stable, an image's kernel label read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_sandbox.sandbox import languages
from jupyter_sandbox.sandbox.docker_backend import SandboxError
from jupyter_sandbox.sandbox.image import ImageRecipe, build_context_dir, inputs_hash
from jupyter_sandbox.sandbox.image_packages import check_apt_names, check_npm_specs, tar_gz_tree
from jupyter_sandbox.sandbox.spec import LABEL_KERNELS, SandboxSpec, SpecError

TARGET = {"version": "311", "machine": "x86_64"}


def test_package_names_that_could_be_options_or_shell_are_refused() -> None:
    assert check_apt_names(["jq", "libfoo1=1.2-3", "curl/bookworm"]) == ["jq", "libfoo1=1.2-3", "curl/bookworm"]
    assert check_npm_specs(["typescript", "@types/node@^20", "prettier@3.2.1"])
    for bad in ("-o", "a b", "x;rm", "$(id)", ""):
        with pytest.raises(SandboxError, match="--apt"):
            check_apt_names([bad])
        with pytest.raises(SandboxError, match="--npm"):
            check_npm_specs([bad])


def test_a_recipe_is_checked_before_anything_is_fetched(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a preset"):
        ImageRecipe(lang="cobol").checked()
    with pytest.raises(SandboxError, match="--lang node"):
        ImageRecipe(npm=["left-pad"]).checked()
    with pytest.raises(SandboxError, match="not a readable file"):
        ImageRecipe(requirements=tmp_path / "missing.txt").checked()


def test_the_python_preset_hash_is_unchanged_by_the_recipe_and_extras_change_it(tmp_path: Path) -> None:
    context = build_context_dir()
    plain = inputs_hash(context, "sha256:base", TARGET)
    assert inputs_hash(context, "sha256:base", TARGET, ImageRecipe()) == plain
    node = inputs_hash(context, "sha256:base", TARGET, ImageRecipe(lang="node"))
    assert node != plain
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("rich\n")
    extra = inputs_hash(context, "sha256:base", TARGET, ImageRecipe(requirements=requirements))
    requirements.write_text("rich>=13\n")
    assert inputs_hash(context, "sha256:base", TARGET, ImageRecipe(requirements=requirements)) != extra
    assert inputs_hash(context, "sha256:base", TARGET, ImageRecipe(lang="node", apt=["b", "a"])) == inputs_hash(
        context, "sha256:base", TARGET, ImageRecipe(lang="node", apt=["a", "b"])
    )


def test_an_image_kernel_label_is_read_defensively() -> None:
    good = ["/usr/local/bin/deno", "jupyter", "--kernel", "--conn", "{connection_file}"]
    labels = {LABEL_KERNELS: json.dumps({"typescript": good})}
    assert languages.kernel_argv(labels, "typescript", "img") == good
    assert languages.kernel_argv(labels, "python", "img") is None
    for broken in (
        "not json",
        json.dumps(["x"]),
        json.dumps({"typescript": ["deno", "jupyter", "{connection_file}"]}),  # not an absolute path
        json.dumps({"typescript": ["/usr/local/bin/deno", "jupyter"]}),  # no connection file
        json.dumps({"typescript": ["/bin/x", 3, "{connection_file}"]}),
        json.dumps({"cobol": good}),
    ):
        with pytest.raises(SpecError, match="has no typescript kernel"):
            languages.kernel_argv({LABEL_KERNELS: broken}, "typescript", "img")
    with pytest.raises(SpecError, match="--lang node"):
        languages.kernel_argv({}, "typescript", "jupyter-sandbox/python:0.1.0")


def test_a_spec_knows_only_the_languages_there_are() -> None:
    assert SandboxSpec(image="x", language="typescript").validate().language == "typescript"
    with pytest.raises(SpecError, match="language"):
        SandboxSpec(image="x", language="cobol").validate()
    with pytest.raises(SpecError, match="cobol"):
        languages.check_language("cobol")


def test_the_template_tarball_has_the_starter_layout(tmp_path: Path) -> None:
    import io
    import tarfile

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.ts").write_text("x")
    (tmp_path / "gitignore").write_text("node_modules\n")
    data = tar_gz_tree(tmp_path, "top/templates/nodejs")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = sorted(archive.getnames())
        assert all(member.uid == 0 and member.mtime == 0 for member in archive.getmembers())
    assert names == ["top/templates/nodejs/.gitignore", "top/templates/nodejs/src", "top/templates/nodejs/src/index.ts"]
    assert tar_gz_tree(tmp_path, "top/templates/nodejs") == data  # reproducible
