"""The `lab` subcommand's arguments and entry point (wired in generator/cli.py)."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `kvmnet lab up|test|down` (to be filled in by the lab work)."""


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    raise NotImplementedError("kvmnet lab is not built yet")
