"""Which Kaggle credentials the official client will use, found before the client is loaded.

The client reads its credentials when it is imported and, without any, prints a long help text
and exits; so the kit first looks for them the way the client does (read in the source of
kaggle 2.2.4 and 2.2.5) and stops with one line when there are none, without importing the
client. The kit's answer also names the credentials in later error lines. It is not replaced by
the client's own report after signing in: when Kaggle says a token is not active the client
reports `auth_method` LEGACY_API_KEY but still sends that token with every call (kagglesdk's
KaggleHttpClient reads KAGGLE_API_TOKEN / ~/.kaggle/access_token again), which is what the
kit's answer (the token first) says.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kit.core.console import note, one_line
from kit.core.errors import KitError

TOKEN_URL = "https://www.kaggle.com/settings/api"


@dataclass
class Credentials:
    """Which credentials the client will use, found the way the client looks for them."""

    kind: str  # "token", "key" or "oauth"
    source: str  # where they come from: an environment variable or a file
    shadowed: str | None = None  # username/key that a token overrides
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind == "token":
            return f"the API token from {self.source}"
        if self.kind == "key":
            return f"the username/key from {self.source}"
        return f"the OAuth login in {self.source} (from `kaggle auth login`)"

    def fix(self) -> str:
        if self.kind == "token":
            hint = f"it may be expired or revoked: create a new token at {TOKEN_URL}"
            if self.shadowed:
                hint += (
                    f" (or unset {self.source} to use the username/key from {self.shadowed})"
                    if self.source.startswith("KAGGLE_")
                    else f" (or remove {self.source} to use {self.shadowed})"
                )
            return hint
        if self.kind == "key":
            return f"check the username and key, or create a new API token at {TOKEN_URL}"
        return "run `kaggle auth login` again"


def _home(env) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _world_readablenote(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if os.name != "nt" and mode & (stat.S_IRGRP | stat.S_IROTH):
        return f"warning: {path} is readable by other users of this machine; run: chmod 600 {path}"
    return None


def _read_secret_file(path: Path, what: str) -> str:
    if path.is_dir():
        raise KitError(f"{path}: is a folder, but {what} must be a file holding the token alone")
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as error:
        raise KitError(
            f"{path}: cannot be read ({error.strerror or error}); fix its permissions (chmod 600 {path})"
        ) from None


def client_config_dir(env=None) -> Path:
    """The folder the client reads kaggle.json from (KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle)."""
    env = os.environ if env is None else env
    home = _home(env)
    raw = env.get("KAGGLE_CONFIG_DIR")
    if raw:
        if raw.startswith("~"):
            raise KitError(
                f"KAGGLE_CONFIG_DIR={raw}: the client does not expand '~' there; "
                f"give the full path (e.g. {home}/.kaggle) or unset it"
            )
        path = Path(raw)
        if path.exists() and not path.is_dir():
            raise KitError(
                f"KAGGLE_CONFIG_DIR={raw} is a file, not a folder; set it to the folder that holds "
                f"kaggle.json (here {path.parent}) or unset it"
            )
        return path
    default = home / ".kaggle"
    if sys.platform.startswith("linux") and not default.exists():
        return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return default


def _token_source(env, home: Path, notes: list[str]) -> str | None:
    # Inside a Kaggle notebook the client reads the token file it is given.
    if (
        env.get("KAGGLE_KERNEL_RUN_TYPE")
        and env.get("KAGGLE_DATA_PROXY_URL")
        and env.get("KAGGLE_API_V1_TOKEN")
    ):
        path = Path(env["KAGGLE_API_V1_TOKEN"])
        if path.is_file() and _read_secret_file(path, "KAGGLE_API_V1_TOKEN"):
            return "KAGGLE_API_V1_TOKEN"
    raw = env.get("KAGGLE_API_TOKEN")
    if raw:
        path = Path(raw)
        if path.exists():  # the client accepts a path to a token file there too
            if not _read_secret_file(path, "KAGGLE_API_TOKEN"):
                notes.append(f"warning: KAGGLE_API_TOKEN names {path}, which is empty; the client ignores it")
                return None  # and, like the client, skip ~/.kaggle/access_token
            note = _world_readablenote(path)
            if note:
                notes.append(note)
            return f"KAGGLE_API_TOKEN (file {path})"
        if raw.startswith("~") or "/" in raw or "\\" in raw or raw.endswith((".txt", ".json")):
            raise KitError(
                f"KAGGLE_API_TOKEN={raw} looks like a file path, but there is no such file "
                "('~' is not expanded there); set it to the token itself or to the full path of the "
                "token file"
            )
        if raw != raw.strip():
            raise KitError(
                "KAGGLE_API_TOKEN has spaces or a line break around the token; set it to the token alone"
            )
        return "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        if path.exists() and _read_secret_file(path, "the access token"):
            note = _world_readablenote(path)
            if note:
                notes.append(note)
            return str(path)
    return None


def _key_source(env, config_dir: Path, notes: list[str]) -> tuple[str | None, str | None]:
    """(source of a complete username/key, or None; what is wrong when it is incomplete)."""
    config = config_dir / "kaggle.json"
    from_file: dict = {}
    problem = None
    if config.is_file():
        note = _world_readablenote(config)
        if note:
            notes.append(note)
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
            from_file = loaded if isinstance(loaded, dict) else {}
            if not isinstance(loaded, dict):
                problem = f"{config} does not hold a JSON object"
        except (OSError, ValueError) as error:
            reason = one_line(getattr(error, "strerror", None) or error, 80)
            problem = f"{config} cannot be read as JSON ({reason})"
    elif config.exists():
        problem = f"{config} is not a file"
    # The client overrides each value of kaggle.json with KAGGLE_USERNAME / KAGGLE_KEY when set.
    user_env, key_env = "KAGGLE_USERNAME" in env, "KAGGLE_KEY" in env
    user = env["KAGGLE_USERNAME"] if user_env else from_file.get("username")
    key = env["KAGGLE_KEY"] if key_env else from_file.get("key")
    if user and key:
        if user_env and key_env:
            return "KAGGLE_USERNAME/KAGGLE_KEY", None
        if not user_env and not key_env:
            return str(config), None
        return (
            f"KAGGLE_USERNAME and the key in {config}"
            if user_env
            else f"KAGGLE_KEY and the username in {config}"
        ), None
    if user or key:
        have = (
            ("KAGGLE_USERNAME" if user_env else f"the username in {config}")
            if user
            else ("KAGGLE_KEY" if key_env else f"the key in {config}")
        )
        missing = (
            'a key (KAGGLE_KEY, or "key" in kaggle.json)'
            if user
            else 'a username (KAGGLE_USERNAME, or "username" in kaggle.json)'
        )
        return None, f"{have} is set but {missing} is not"
    if problem is None and config.is_file():
        problem = f'{config} has no "username" and "key"'
    return None, problem


def find_credentials(env=None) -> Credentials:
    """Find the credentials the client will use, in the client's order, or raise KitError.

    Order (as in the client): a token (KAGGLE_API_TOKEN, a value or a file path, then
    ~/.kaggle/access_token), then username/key (KAGGLE_USERNAME/KAGGLE_KEY over kaggle.json in
    KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle), then an OAuth login (~/.kaggle/credentials.json).
    """
    env = os.environ if env is None else env
    home = _home(env)
    notes: list[str] = []
    config_dir = client_config_dir(env)
    token = _token_source(env, home, notes)
    key, key_problem = _key_source(env, config_dir, notes)
    if token:
        if key:
            notes.append(
                f"note: both a token ({token}) and a username/key ({key}) are set; the client uses the token"
            )
        return Credentials("token", token, shadowed=key, notes=notes)
    if key:
        return Credentials("key", key, notes=notes)
    oauth = home / ".kaggle" / "credentials.json"
    try:
        if oauth.is_file() and json.loads(oauth.read_text(encoding="utf-8")).get("refresh_token"):
            return Credentials("oauth", str(oauth), notes=notes)
    except (OSError, ValueError, AttributeError):
        pass
    for line in notes:
        note(line)
    if key_problem:
        raise KitError(
            f"Kaggle credentials not usable: {key_problem}; create an API token at {TOKEN_URL} and save it "
            f"in {home}/.kaggle/access_token (then chmod 600 {home}/.kaggle/access_token)"
        )
    elsewhere = ""
    if env.get("KAGGLE_CONFIG_DIR") and (home / ".kaggle" / "kaggle.json").is_file():
        elsewhere = (
            f" ({home}/.kaggle/kaggle.json is not read because KAGGLE_CONFIG_DIR={env['KAGGLE_CONFIG_DIR']})"
        )
    raise KitError(
        f"no Kaggle credentials found{elsewhere}: create an API token at {TOKEN_URL}, save it in "
        f"{home}/.kaggle/access_token and run chmod 600 {home}/.kaggle/access_token "
        f"(or export KAGGLE_API_TOKEN=<token>; a legacy kaggle.json goes in {config_dir}/)"
    )
