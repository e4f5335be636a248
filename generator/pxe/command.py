"""The `pxe` subcommand (wired in generator/cli.py).

`kvmnet pxe serve [OUTPUT] --interface IF [--assets DIR]...` runs the boot service of a
built output tree (generator/pxe/serve.py) in the foreground until stopped. Exit codes as
the rest of kvmnet (generator/session.py): 0 stopped by SIGINT or SIGTERM; 1 the service
could not start (dnsmasq missing, the URL's address not on this machine) or dnsmasq
stopped by itself; 2 usage (no boot service in the output, not root).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from generator import layout
from generator.errors import UsageError
from generator.pxe.serve import ServeError, serve
from generator.session import Exit, Session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The fleet's PXE boot service (the profile's `pxe:` section, built into OUTPUT/pxe/): "
        "dnsmasq with the generated configuration and an HTTP server for the generated tree."
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve_parser = actions.add_parser("serve", help="run the boot service in the foreground (root)")
    serve_parser.add_argument(
        "output", nargs="?", type=Path, default=Path("output"), help="a built output tree (default: ./output)"
    )
    serve_parser.add_argument(
        "--interface", required=True, metavar="IF", help="the interface on the hosts' provisioning network"
    )
    serve_parser.add_argument(
        "--assets",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a directory served beside the generated tree, at the same URL paths: installers/, "
        "deploy/, images/ (docs/pxe.md); may be given more than once",
    )


def run(args: argparse.Namespace, session: Session) -> int:
    service_file = args.output / layout.PXE_SERVICE
    if not service_file.is_file():
        raise UsageError.single(
            f"{args.output}: no boot service built ({layout.PXE_SERVICE} missing): the profile needs a "
            "`pxe:` section (docs/pxe.md), then `kvmnet build`"
        )
    for directory in args.assets:
        if not directory.is_dir():
            raise UsageError.single(f"--assets {directory}: not a directory")
    if os.geteuid() != 0:
        raise UsageError.single("kvmnet pxe serve runs dnsmasq, which needs root (DHCP and TFTP ports)")
    service = json.loads(service_file.read_text())
    wanted = sorted({path for paths in service["assets"].values() for path in paths})
    try:
        return serve(args.output, args.interface, service["url"], args.assets, wanted)
    except ServeError as exc:
        session.err.print(f"kvmnet pxe serve: {exc}", highlight=False)
        return Exit.PROBLEMS
