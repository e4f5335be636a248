"""Login users, in cloud-init's words: a guest's `users:` and a host's `users:` take the same
entries (a host's are written by its bootstrap, so every delivery vehicle carries them).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, WithJsonSchema

from generator.model.base import Items, StrictModel
from generator.model.types import Flag, fail

_CRYPT = re.compile(r"\$(1|5|6|y|gy|2[aby]|7)\$[./A-Za-z0-9$=,+-]{8,}")
_SSH_KEY = re.compile(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    # The comment: printable text only (a NUL or control character in authorized_keys
    # is at best cut by sshd; found with tests/test_hostile_values.py).
    r" [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]{0,200})?"
)


def password_hash(value: Any) -> str:
    if not isinstance(value, str) or not _CRYPT.fullmatch(value):
        # Never echo the value: it may be a real password.
        raise fail(
            "passwd must be a crypt(3) hash (like $6$salt$... or $y$...; make one with "
            "`mkpasswd -m sha-512`); plain passwords are refused"
        )
    return value


def _ssh_key(value: Any) -> str:
    if not isinstance(value, str) or not _SSH_KEY.fullmatch(value.strip()):
        raise fail("not an OpenSSH public key (like `ssh-ed25519 AAAA... comment`)")
    return value.strip()


PasswordHash = Annotated[
    str, BeforeValidator(password_hash), WithJsonSchema({"type": "string", "writeOnly": True})
]
SshKey = Annotated[str, BeforeValidator(_ssh_key), WithJsonSchema({"type": "string"})]
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _user_name(value: Any) -> str:
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise fail(f"{value!r} is not a user name (lower-case letters, digits, _ and -, at most 32)")
    return value


UserName = Annotated[str, BeforeValidator(_user_name), WithJsonSchema({"type": "string"})]


class User(StrictModel):
    name: UserName
    ssh_authorized_keys: Items[SshKey] = ()
    passwd: PasswordHash | None = None
    sudo: Flag = False
    groups: Items[UserName] = ()
    shell: Literal["/bin/bash", "/bin/sh", "/usr/bin/zsh", "/bin/zsh"] = "/bin/bash"
