"""The env file, read one way: what `check --env-file` validates is exactly what `run` uses.

The unit used to hand the file to systemd (`EnvironmentFile=`) and callbridge read it again
with python-dotenv's defaults, which expand `${...}` and differ from systemd on quotes,
backslashes and `#`: a password with `$` in it could pass `check` and fail at run (or the
other way round). Now the unit passes `--env-file` and nothing else reads the file: one
parser (python-dotenv's, with interpolation off: `$` is a character like any other).

Nothing in the file is silently dropped. Each line that is not NAME=value is a problem with
its file and line (its text is not repeated: it may be a secret); each name callbridge does
not know is a note with its file and line, and the name it probably meant. Names starting
with SECRET_ are reserved for values the agents file refers to (a tool's token): they are
accepted, and their values registered for redaction (callbridge/secret.py). A value still
holding an .env.example placeholder is a note too.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

from callbridge.secret import register

SECRET_PREFIX = "SECRET_"
# Variables of the process, not of callbridge, that an env file handed to systemd used to set
# (EnvironmentFile=): they belong in the unit (a drop-in's Environment=), said so by name.
PROCESS_VARIABLES = {
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "TZ",
    "LANG",
    "LC_ALL",
}
# The values .env.example ships with: set, but not real (`check` fails on the secrets).
PLACEHOLDERS = {"change-me", "sk-your-key-here", "your_password", "sk-proj-..."}


@dataclass
class EnvFile:
    path: Path
    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # lines that are not NAME=value: errors
    notes: list[str] = field(default_factory=list)  # unknown names, placeholders: warnings
    secrets: dict[str, str] = field(default_factory=dict)  # SECRET_* names

    def line(self, number: int, text: str) -> str:
        return f"{self.path}:{number}: {text}"


def parse_env_text(text: str, path: Path, known: set[str]) -> EnvFile:
    """Parse the text of an env file named `path`; `known`: the variables callbridge reads."""
    found = EnvFile(path)
    for binding in parse_stream(io.StringIO(text)):
        number = binding.original.line
        if binding.error:
            found.problems.append(found.line(number, "not NAME=value (an unclosed quote, or a stray word?)"))
            continue
        name, value = binding.key, binding.value
        if name is None:  # a blank or comment line
            continue
        if value is None:
            found.problems.append(found.line(number, f"{name} has no '=' (write {name}=value)"))
            continue
        found.values[name] = value
        if name.startswith(SECRET_PREFIX):
            found.secrets[name] = value
            register(value)
        elif name in PROCESS_VARIABLES:
            found.notes.append(
                found.line(
                    number,
                    f"{name} is the process's, not a callbridge setting: set it with Environment= in a "
                    "drop-in of the unit (systemctl edit openai-inbound-calls); here it is ignored",
                )
            )
        elif name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            hint = f" (did you mean {near[0]}?)" if near else ""
            found.notes.append(found.line(number, f"{name} is not a callbridge setting{hint}; it is ignored"))
        elif value.strip() in PLACEHOLDERS:
            found.notes.append(found.line(number, f"{name} still holds the .env.example placeholder"))
    return found


def read_env_file(path: Path, known: set[str]) -> EnvFile:
    """Raises OSError (and UnicodeDecodeError) when the file cannot be read."""
    return parse_env_text(path.read_text(encoding="utf-8"), path, known)
