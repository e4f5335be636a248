"""Login users of a machine (a guest's or a host's `users:`): one name once."""

from __future__ import annotations

from collections.abc import Sequence

from generator.errors import Diagnostic, KeyPath
from generator.model.users import User
from generator.plan.types import UserPlan

#: The rule of a user with `sudo: true`, on guests (cloud-init's `sudo:`) and hosts
#: (the bootstrap's sudoers.d drop-in): what cloud-init users are used to.
SUDO_RULE = "ALL=(ALL) NOPASSWD:ALL"


def plan_users(users: Sequence[User], path: KeyPath, problems: list[Diagnostic]) -> tuple[UserPlan, ...]:
    out = []
    seen: set[str] = set()
    for index, user in enumerate(users):
        if user.name in seen:
            problems.append(Diagnostic(f"user {user.name} is listed twice", (*path, "users", index, "name")))
        seen.add(user.name)
        out.append(
            UserPlan(user.name, user.ssh_authorized_keys, user.passwd, user.sudo, user.groups, user.shell)
        )
    return tuple(out)
