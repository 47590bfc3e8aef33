"""`jupyter sandbox ...`: build the image, create, list and remove sandboxes (through the operations layer)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, cli_lifecycle
from .config import load_config
from .sandbox.desktop_image import build_desktop_image
from .sandbox.docker_backend import SandboxError
from .sandbox.errors import SandboxOperationError
from .sandbox.image import DEFAULT_BASE, DEFAULT_IMAGE, LANGUAGE_REPOSITORIES, ImageRecipe, build_image
from .sandbox.manager import SandboxManager
from .sandbox.operations import SandboxOperations
from .sandbox.spec import SpecError


def _progress(message: str) -> None:
    print(message, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter sandbox", description="Manage jupyter-sandbox containers and images."
    )
    parser.add_argument("--version", action="version", version=f"jupyter-sandbox {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    image = commands.add_parser("image", help="build the sandbox image")
    image_commands = image.add_subparsers(dest="image_command", metavar="ACTION")
    image_commands.required = True
    build = image_commands.add_parser("build", help="build the default sandbox image (skipped when up to date)")
    build.add_argument(
        "--base", default=None, help=f"base image with Python 3, on this engine already (default: {DEFAULT_BASE})"
    )
    build.add_argument(
        "--tag",
        default=None,
        help=f"tag of the result (default: {DEFAULT_IMAGE}, jupyter-sandbox/node:… with --lang node; "
        "with extra packages, that tag plus a hash of the inputs)",
    )
    build.add_argument(
        "--lang",
        choices=sorted(LANGUAGE_REPOSITORIES),
        default="python",
        help="preset: python, or node (Node.js, npm, TypeScript and the TypeScript kernel on top of python)",
    )
    build.add_argument("--requirements", metavar="FILE", default=None, help="Python requirements to add (pip format)")
    build.add_argument("--apt", nargs="+", metavar="PKG", default=[], help="Debian packages to add")
    build.add_argument(
        "--npm", nargs="+", metavar="PKG", default=[], help="npm packages to install globally (--lang node)"
    )
    build.add_argument(
        "--bootstrap", action="store_true", help="bootstrap a Debian base with mmdebstrap instead of pulling --base"
    )
    build.add_argument("--force", action="store_true", help="build even when the inputs have not changed")
    build.add_argument(
        "--desktop", action="store_true", help="also build the desktop variant (X11 desktop, VNC) on the result"
    )

    listing = commands.add_parser("list", help="list sandboxes")
    listing.add_argument("--all-owners", action="store_true", help="include other users' sandboxes")
    listing.add_argument("--json", action="store_true", help="print JSON")

    create = commands.add_parser("create", help="create a sandbox (not bound to a notebook) and print its id")
    create.add_argument("--image", default=None, help="image (default: the configured one)")
    create.add_argument("--cpu", type=float, default=None, help="vCPUs")
    create.add_argument("--memory", default=None, help="memory, e.g. 2g")

    remove = commands.add_parser("rm", help="remove sandboxes (container and workspace volume)")
    remove.add_argument("ids", nargs="*", metavar="ID", help="sandbox ids, as `list` shows them")
    remove.add_argument("--all", action="store_true", help="remove all of your sandboxes")

    ssh_key = commands.add_parser(
        "ssh-key", help="register an SSH public key for the SSH gateway (it logs in as any of your sandbox ids)"
    )
    ssh_key_commands = ssh_key.add_subparsers(dest="ssh_key_command", metavar="ACTION")
    ssh_key_commands.required = True
    add_key = ssh_key_commands.add_parser("add", help="register the public key in FILE (e.g. ~/.ssh/id_ed25519.pub)")
    add_key.add_argument("file", help="an OpenSSH public key file, or - for standard input")
    ssh_key_commands.add_parser("list", help="the registered keys' fingerprints")

    commands.add_parser("prune", help="remove stopped sandboxes, orphaned volumes and the unused network")
    cli_lifecycle.add_parsers(commands)
    commands.add_parser("mcp", help="an MCP server (stdio) for agents; `jupyter sandbox mcp --help`", add_help=False)
    commands.add_parser(
        "service",
        help="the sandbox service for a hub: holds the engine, serves users; `jupyter sandbox service --help`",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["mcp"]:  # its own options and no Docker: jupyter_sandbox/mcp_server/cli.py
        from .mcp_server.cli import main as mcp_main

        return mcp_main(given[1:])
    if given[:1] == ["service"]:  # a traitlets application of its own: jupyter_sandbox/service/app.py
        from .service import main as service_main

        return service_main(given[1:])
    given, trailing = cli_lifecycle.split_exec(given)
    args = _parser().parse_args(given)
    args.trailing = trailing
    config = load_config()
    manager = SandboxManager(config=config)
    # The same operations as the REST API and the magics (no server: no preview links here).
    operations = SandboxOperations(manager, config=config)
    try:
        if args.command == "image":
            recipe = ImageRecipe(
                lang=args.lang,
                requirements=Path(args.requirements) if args.requirements else None,
                apt=list(args.apt),
                npm=list(args.npm),
            )
            result = build_image(
                manager.backend,
                _progress,
                tag=args.tag,
                base=args.base or manager.base_image,
                bootstrap=args.bootstrap or manager.bootstrap_base,
                force=args.force,
                recipe=recipe,
                explicit_base=args.base is not None,
            )
            print(result.image)
            if args.desktop:
                print(build_desktop_image(manager.backend, _progress, base=result.image, force=args.force))
        elif args.command == "list":
            sandboxes = asyncio.run(operations.list(every_owner=args.all_owners))
            if args.json:
                print(json.dumps([s.to_dict() for s in sandboxes], indent=2))
            elif not sandboxes:
                print("no sandboxes")
            else:
                cli_lifecycle.print_table(sandboxes, every_owner=args.all_owners)
        elif args.command == "create":
            body = {
                k: v for k, v in (("image", args.image), ("cpu", args.cpu), ("memory", args.memory)) if v is not None
            }
            print(asyncio.run(operations.create(body, progress=_progress))["id"])
        elif args.command == "rm":
            if not args.ids and not args.all:
                print("jupyter sandbox rm: name at least one sandbox ID, or --all", file=sys.stderr)
                return 2
            ids = [s.id for s in asyncio.run(operations.list())] if args.all else args.ids
            for sandbox_id in ids:
                asyncio.run(operations.delete(sandbox_id, every_owner=True))
                print(f"removed {sandbox_id}")
        elif args.command == "ssh-key":
            return _ssh_key(args)
        elif args.command in cli_lifecycle.LIFECYCLE:
            return cli_lifecycle.lifecycle(args, operations)
        elif args.command == "prune":
            removed = manager.prune()
            print(f"removed {len(removed['sandboxes'])} stopped sandboxes and {len(removed['volumes'])} volumes")
    except (SandboxError, SpecError, SandboxOperationError) as exc:
        print(f"jupyter sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


def _ssh_key(args: argparse.Namespace) -> int:
    """Registering keys is the machine user's act, never a notebook's: a magic or an API call a
    sandbox's code could make would hand it a way back in."""
    from .sandbox.ssh import keys

    if args.ssh_key_command == "list":
        for fingerprint in keys.registered_fingerprints():
            print(fingerprint)
        return 0
    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file).read()  # noqa: SIM115
    except OSError as exc:
        print(f"jupyter sandbox ssh-key add: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if "PRIVATE KEY" in text:
        print("jupyter sandbox ssh-key add: that is a private key; give the .pub file", file=sys.stderr)
        return 2
    try:
        print(f"registered {keys.register(text)}")
    except Exception as exc:  # asyncssh's key import errors: one line, no traceback
        print(f"jupyter sandbox ssh-key add: not an OpenSSH public key: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
