"""`/incident` text to typed commands: pure parsing, no I/O, so every usage error is tested
without a server.

What Slack sends as `text` (the part after the command name):
- user mentions arrive escaped as `<@U012AB3CD|name>` or, in newer workspaces, `<@U012AB3CD>`
  (the command's "Escape channels, users, and links" option; without it `@name` arrives as
  typed and carries no user ID, so we say how to fix that);
- `&`, `<` and `>` typed by the user arrive as `&amp;`, `&lt;` and `&gt;`: free text (notes,
  reasons) is unescaped here and escaped again wherever it is rendered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from bot.actions.registry import parse_params
from bot.actions.silence_durations import parse_duration
from bot.errors import PayloadError
from bot.incidents.models import Severity
from bot.text import escape

__all__ = [
    "ROLLBACK_USAGE",
    "SCALE_USAGE",
    "USAGE",
    "Ack",
    "Assign",
    "Command",
    "Help",
    "ListOpen",
    "ListSilences",
    "Mitigate",
    "Note",
    "Postmortem",
    "Resolve",
    "Rollback",
    "Scale",
    "SetSeverity",
    "Show",
    "Silence",
    "Sub",
    "Timeline",
    "Unsilence",
    "UsageError",
    "parse",
    "parse_incident_id",
    "parse_model_rollback",
    "parse_rollback",
    "parse_scale",
    "parse_user",
    "unescape",
]

MAX_FREE_TEXT = 3000


class Sub(StrEnum):
    HELP = "help"
    LIST = "list"
    SHOW = "show"
    ACK = "ack"
    MITIGATE = "mitigate"
    RESOLVE = "resolve"
    ASSIGN = "assign"
    SEVERITY = "severity"
    NOTE = "note"
    TIMELINE = "timeline"
    POSTMORTEM = "postmortem"
    SILENCE = "silence"
    SILENCES = "silences"
    UNSILENCE = "unsilence"


SYNTAX: dict[Sub, tuple[str, str]] = {
    Sub.HELP: ("help", "show this help"),
    Sub.LIST: ("list", "open incidents, newest first"),
    Sub.SHOW: ("show ID", "status, severity, commander and alerts of one incident"),
    Sub.ACK: ("ack ID", "acknowledge: you are on it"),
    Sub.MITIGATE: ("mitigate ID [note]", "the impact is over; the incident stays open until resolved"),
    Sub.RESOLVE: ("resolve ID [reason]", "resolve by hand, even while alerts still fire"),
    Sub.ASSIGN: ("assign ID @user", "make someone the incident commander"),
    Sub.SEVERITY: ("severity ID critical|warning|info", "set the severity by hand"),
    Sub.NOTE: ("note ID text", "add a note to the timeline"),
    Sub.TIMELINE: ("timeline ID", "everything that happened, with time and who"),
    Sub.POSTMORTEM: ("postmortem ID", "post a Markdown postmortem draft in the incident thread"),
    Sub.SILENCE: ("silence ID DURATION reason", "silence the incident's alerts in Alertmanager, e.g. 2h"),
    Sub.SILENCES: ("silences ID", "the active silences of the incident's alerts"),
    Sub.UNSILENCE: ("unsilence ID SILENCE_ID", "end one of those silences now"),
}
ALIASES: dict[str, Sub] = {
    "acknowledge": Sub.ACK,
    "ls": Sub.LIST,
    "sev": Sub.SEVERITY,
    "mute": Sub.SILENCE,
    "unmute": Sub.UNSILENCE,
}

USAGE = "Usage: `/incident <subcommand>`. IDs look like `INC-42` (or just `42`).\n" + "\n".join(
    f"• `/incident {syntax}`: {meaning}" for syntax, meaning in SYNTAX.values()
)

ROLLBACK_USAGE = (
    "Usage: `/rollback <namespace>/<deployment> [revision] [--dry-run]`, e.g. "
    "`/rollback llm-prod/vllm-llama` (the previous revision, like `kubectl rollout undo`) or "
    "`/rollback llm-prod/vllm-llama 12`; a model in the registry: "
    "`/rollback model <name>[@<alias>] [version] [--restart <namespace>/<deployment>] [--no-restart] "
    "[--dry-run]`, e.g. `/rollback model churn-xgb@champion` (the version the alias pointed to before; "
    "the alias defaults to the models file's, else `champion`; the Deployments the incident names are "
    "restarted after it unless `--no-restart`)."
)
SCALE_USAGE = (
    "Usage: `/scale <namespace>/<deployment> <replicas> [--dry-run]`, e.g. `/scale llm-prod/vllm-llama 4`."
)
DRY_RUN_FLAGS = frozenset({"--dry-run", "dry-run", "--dry_run", "dryrun"})

_ID = re.compile(r"^(?:#|INC-?)?(\d{1,12})$", re.IGNORECASE)
_TARGET = re.compile(r"^([^/\s]+)/([^/\s]+)$")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|([^>]*))?>$")
_RAW_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class UsageError(PayloadError):
    """The command text can never work as typed; `usage` is the line to show with it."""

    def __init__(self, message: str, *, usage: str = USAGE) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class ListOpen:
    pass


@dataclass(frozen=True)
class Show:
    incident_id: int


@dataclass(frozen=True)
class Ack:
    incident_id: int


@dataclass(frozen=True)
class Mitigate:
    incident_id: int
    note: str | None = None


@dataclass(frozen=True)
class Resolve:
    incident_id: int
    reason: str | None = None


@dataclass(frozen=True)
class Assign:
    incident_id: int
    user_id: str
    user_name: str | None = None


@dataclass(frozen=True)
class SetSeverity:
    incident_id: int
    severity: Severity


@dataclass(frozen=True)
class Note:
    incident_id: int
    text: str


@dataclass(frozen=True)
class Timeline:
    incident_id: int


@dataclass(frozen=True)
class Postmortem:
    incident_id: int


@dataclass(frozen=True)
class Silence:
    incident_id: int
    duration_seconds: int
    duration: str
    reason: str


@dataclass(frozen=True)
class ListSilences:
    incident_id: int


@dataclass(frozen=True)
class Unsilence:
    incident_id: int
    silence_id: str


Command = (
    Help
    | ListOpen
    | Show
    | Ack
    | Mitigate
    | Resolve
    | Assign
    | SetSeverity
    | Note
    | Timeline
    | Postmortem
    | Silence
    | ListSilences
    | Unsilence
)


@dataclass(frozen=True)
class Rollback:
    """`/rollback ns/deploy [revision]`: revision None is the previous one."""

    namespace: str
    deployment: str
    revision: int | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ModelRollback:
    """`/rollback model NAME[@ALIAS] [VERSION]`: version None is the one the alias had before."""

    model: str
    alias: str | None  # None: the models file's alias for it, else champion
    version: str | None = None
    dry_run: bool = False
    restart: bool | None = None  # --restart ns/deploy: True, --no-restart: False, else the incident's
    deployments: tuple[str, ...] = ()  # from --restart ns/deploy


@dataclass(frozen=True)
class Scale:
    namespace: str
    deployment: str
    replicas: int
    dry_run: bool = False


# Commands that change an incident (and so are deduplicated and recorded on the timeline).
MUTATING = (Ack, Mitigate, Resolve, Assign, SetSeverity, Note, Silence, Unsilence)


def unescape(text: str) -> str:
    """Undo Slack's escaping of typed `&`, `<`, `>` (only those three, `&amp;` last)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def usage_of(sub: Sub) -> str:
    return f"Usage: `/incident {SYNTAX[sub][0]}`"


def parse_incident_id(token: str, sub: Sub) -> int:
    match = _ID.match(token.strip())
    if match is None:
        raise UsageError(
            f"`{_quote(token)}` is not an incident ID; use the key or number, e.g. `INC-42` or `42`.",
            usage=usage_of(sub),
        )
    return int(match.group(1))


def parse_user(token: str, sub: Sub) -> tuple[str, str | None]:
    """(user ID, name if Slack sent one) from `<@U123|name>`, `<@U123>` or a bare `U123`."""
    match = _MENTION.match(token)
    if match is not None:
        return match.group(1), (match.group(2) or None)
    if _RAW_USER_ID.match(token):
        return token, None
    if token.startswith("@"):
        raise UsageError(
            f"`{_quote(token)}` reached the bot as plain text, without a user ID. Pick the person from "
            "Slack's @-autocomplete; if it still fails, turn on “Escape channels, users, and links sent "
            "to your app” in the /incident command's settings.",
            usage=usage_of(sub),
        )
    raise UsageError(f"`{_quote(token)}` is not a user; mention them as `@name`.", usage=usage_of(sub))


def parse(text: str) -> Command:
    """One `/incident` invocation's text to a command, or UsageError saying what was wrong."""
    words = text.strip().split(None, 1)
    if not words:
        return Help()
    name = words[0].lower()
    rest = words[1].strip() if len(words) > 1 else ""
    try:
        sub = ALIASES.get(name) or Sub(name)
    except ValueError:
        raise UsageError(f"`{_quote(words[0])}` is not an /incident subcommand.") from None

    if sub is Sub.HELP:
        return Help()
    if sub is Sub.LIST:
        if rest:
            raise UsageError("`list` takes no arguments.", usage=usage_of(sub))
        return ListOpen()

    args = rest.split(None, 1)
    if not args:
        raise UsageError(f"`{sub.value}` needs an incident ID.", usage=usage_of(sub))
    incident_id = parse_incident_id(args[0], sub)
    tail = args[1].strip() if len(args) > 1 else ""

    if sub in (Sub.SILENCE, Sub.SILENCES, Sub.UNSILENCE):
        return _silence_command(sub, incident_id, tail)
    if sub in (Sub.SHOW, Sub.ACK, Sub.TIMELINE, Sub.POSTMORTEM):
        if tail:
            raise UsageError(f"`{sub.value}` takes only an incident ID.", usage=usage_of(sub))
        simple: dict[Sub, type[Show | Ack | Timeline | Postmortem]] = {
            Sub.SHOW: Show,
            Sub.ACK: Ack,
            Sub.TIMELINE: Timeline,
            Sub.POSTMORTEM: Postmortem,
        }
        return simple[sub](incident_id)
    if sub is Sub.RESOLVE:
        return Resolve(incident_id, _free_text(tail, sub) if tail else None)
    if sub is Sub.MITIGATE:
        return Mitigate(incident_id, _free_text(tail, sub) if tail else None)
    if sub is Sub.ASSIGN:
        targets = tail.split()
        if len(targets) != 1:
            raise UsageError("`assign` needs exactly one person, e.g. `@alice`.", usage=usage_of(sub))
        user_id, user_name = parse_user(targets[0], sub)
        return Assign(incident_id, user_id, user_name)
    if sub is Sub.SEVERITY:
        try:
            severity = Severity(tail.lower())
        except ValueError:
            shown = f"`{_quote(tail)}` is not a severity" if tail else "`severity` needs a level"
            raise UsageError(f"{shown}; use critical, warning or info.", usage=usage_of(sub)) from None
        return SetSeverity(incident_id, severity)
    # Sub.NOTE
    if not tail:
        raise UsageError("`note` needs some text to add.", usage=usage_of(sub))
    return Note(incident_id, _free_text(tail, sub))


_SILENCE_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _silence_command(sub: Sub, incident_id: int, tail: str) -> Silence | ListSilences | Unsilence:
    if sub is Sub.SILENCES:
        if tail:
            raise UsageError("`silences` takes only an incident ID.", usage=usage_of(sub))
        return ListSilences(incident_id)
    if sub is Sub.UNSILENCE:
        words = tail.split()
        if len(words) != 1:
            raise UsageError(
                "`unsilence` needs the ID of one silence (see `/incident silences ID`).", usage=usage_of(sub)
            )
        if not _SILENCE_ID.match(words[0]):
            raise UsageError(
                f"`{_quote(words[0])}` is not a silence ID; Alertmanager's IDs look like "
                "`2f5c7a4e-1b3d-4e8f-9a6b-0c1d2e3f4a5b`.",
                usage=usage_of(sub),
            )
        return Unsilence(incident_id, words[0].lower())
    parts = tail.split(None, 1)
    if not parts:
        raise UsageError(
            "`silence` needs a duration and a reason, e.g. `2h deploy in progress`.", usage=usage_of(sub)
        )
    try:
        length = parse_duration(parts[0])
    except PayloadError as exc:
        raise UsageError(
            exc.message.replace(f"{parts[0]!r}", f"`{_quote(parts[0])}`"), usage=usage_of(sub)
        ) from None
    if len(parts) < 2 or not parts[1].strip():
        raise UsageError(
            "`silence` needs a reason after the duration: Alertmanager keeps it with the silence, "
            "e.g. `/incident silence INC-42 2h rollout in progress`.",
            usage=usage_of(sub),
        )
    return Silence(incident_id, int(length.total_seconds()), parts[0].lower(), _free_text(parts[1], sub))


def _flags(words: list[str]) -> tuple[list[str], bool]:
    dry_run = any(w.lower() in DRY_RUN_FLAGS for w in words)
    return [w for w in words if w.lower() not in DRY_RUN_FLAGS], dry_run


def _target(token: str, usage: str) -> tuple[str, str]:
    match = _TARGET.match(unescape(token))
    if match is None:
        raise UsageError(f"`{_quote(token)}` is not `<namespace>/<deployment>`.", usage=usage)
    return match.group(1), match.group(2)


def _check(kind: str, values: dict[str, object], usage: str) -> None:
    try:
        parse_params(kind, values)
    except PayloadError as exc:
        text = exc.message.replace("bad ", "", 1)
        raise UsageError(text[:1].upper() + text[1:] + ".", usage=usage) from None


def _restart_flags(words: list[str]) -> tuple[list[str], bool | None, tuple[str, ...]]:
    """`--restart ns/deploy` (repeatable) and `--no-restart` out of a `/rollback model` text."""
    rest: list[str] = []
    targets: list[str] = []
    restart: bool | None = None
    items = iter(words)
    for word in items:
        flag = word.lower()
        if flag in ("--no-restart", "--no_restart"):
            restart = False
        elif flag.startswith("--restart="):
            targets.append(word.split("=", 1)[1])
        elif flag == "--restart":
            following = next(items, None)
            if following is None or following.startswith("--"):
                raise UsageError(
                    "`--restart` needs the Deployment to restart: `--restart <namespace>/<deployment>`.",
                    usage=ROLLBACK_USAGE,
                )
            targets.append(following)
        else:
            rest.append(word)
    if targets and restart is False:
        raise UsageError("`--restart` and `--no-restart` contradict each other.", usage=ROLLBACK_USAGE)
    checked = []
    for target in targets:
        namespace, deployment = _target(target, ROLLBACK_USAGE)
        checked.append(f"{namespace}/{deployment}")
    return rest, (True if checked else restart), tuple(dict.fromkeys(checked))


def parse_model_rollback(words: list[str], dry_run: bool) -> ModelRollback:
    """After `model`: `NAME[@ALIAS] [VERSION] [--restart NS/DEPLOY ...] [--no-restart]`."""
    words, restart, deployments = _restart_flags(words)
    if not words or len(words) > 2:
        problem = (
            "`/rollback model` needs a model name"
            if not words
            else "`/rollback model` takes at most a version"
        )
        raise UsageError(f"{problem}.", usage=ROLLBACK_USAGE)
    name, _, alias = unescape(words[0]).partition("@")
    version = None
    if len(words) == 2:
        token = words[1].lower().removeprefix("v")
        if not token.isdigit() or int(token) < 1:
            raise UsageError(f"`{_quote(words[1])}` is not a model version number.", usage=ROLLBACK_USAGE)
        version = str(int(token))
    values: dict[str, object] = {
        "model": name,
        "alias": alias or "champion",
        "version": version,
        "restart": restart,
        "deployments": deployments,
    }
    _check("model_rollback", values, ROLLBACK_USAGE)
    return ModelRollback(name, alias or None, version, dry_run, restart, deployments)


def parse_rollback(text: str) -> Rollback | ModelRollback:
    """`/rollback` text: `<namespace>/<deployment> [revision] [--dry-run]`, or `model ...`."""
    words, dry_run = _flags(text.split())
    if words and words[0].lower() == "model":
        return parse_model_rollback(words[1:], dry_run)
    if not words or len(words) > 2:
        problem = "`/rollback` needs a deployment" if not words else "`/rollback` takes at most a revision"
        raise UsageError(f"{problem}.", usage=ROLLBACK_USAGE)
    namespace, deployment = _target(words[0], ROLLBACK_USAGE)
    revision = None
    if len(words) == 2:
        if not words[1].isdigit() or int(words[1]) < 1:
            raise UsageError(
                f"`{_quote(words[1])}` is not a revision number (see `kubectl rollout history`).",
                usage=ROLLBACK_USAGE,
            )
        revision = int(words[1])
    _check(
        "rollback", {"namespace": namespace, "deployment": deployment, "revision": revision}, ROLLBACK_USAGE
    )
    return Rollback(namespace, deployment, revision, dry_run)


def parse_scale(text: str) -> Scale:
    """`/scale` text: `<namespace>/<deployment> <replicas> [--dry-run]`."""
    words, dry_run = _flags(text.split())
    if len(words) != 2:
        problem = (
            "`/scale` needs a deployment and a replica count"
            if len(words) < 2
            else "`/scale` takes two arguments"
        )
        raise UsageError(f"{problem}.", usage=SCALE_USAGE)
    namespace, deployment = _target(words[0], SCALE_USAGE)
    if not words[1].isdigit():
        raise UsageError(
            f"`{_quote(words[1])}` is not a replica count (a whole number, 0 or more).", usage=SCALE_USAGE
        )
    replicas = int(words[1])
    _check("scale", {"namespace": namespace, "deployment": deployment, "replicas": replicas}, SCALE_USAGE)
    return Scale(namespace, deployment, replicas, dry_run)


def _free_text(text: str, sub: Sub) -> str:
    plain = unescape(text).strip()
    if len(plain) > MAX_FREE_TEXT:
        raise UsageError(
            f"that text is {len(plain)} characters; keep it under {MAX_FREE_TEXT}.", usage=usage_of(sub)
        )
    return plain


def _quote(token: str) -> str:
    """Echo user input back inside inline code without letting it break out."""
    cleaned = unescape(token).replace("`", "'")
    return escape(cleaned if len(cleaned) <= 40 else cleaned[:39] + "…")
