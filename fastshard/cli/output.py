"""What `fastshard listen` shows and writes: event lines, the status line,
the summary and the JSONL file.  Pure formatting, no networking, so it is
unit-tested on its own.
"""
from __future__ import annotations

import collections
import json
import re
import time
from typing import IO, Any, Callable, Mapping

import orjson

from ..intents import intent_names, portal_labels, privileged_names

__all__ = ["open_output", 
    "clean",
    "summarize",
    "event_line",
    "human_bytes",
    "Stats",
    "status_line",
    "summary_text",
    "JsonlWriter",
    "resume_command",
    "disallowed_intents_message",
]

# Gateway data is untrusted: a message could carry ANSI escapes or newlines
# that would rewrite the user's terminal.  Keep printable text only.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def clean(value: Any, limit: int = 60) -> str:
    text = _CONTROL.sub(" ", value if isinstance(value, str) else str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _user(d: Any) -> str:
    user = _get(d, "author") or _get(d, "user") or _get(d, "member", "user")
    name = _get(user, "global_name") or _get(user, "username")
    if name:
        return clean(name, 32)
    uid = _get(user, "id") or _get(d, "user_id")
    return f"user {clean(uid, 24)}" if uid is not None else "?"


def _in_channel(d: Any) -> str:
    cid = _get(d, "channel_id")
    return f" in {clean(cid, 24)}" if cid is not None else ""


def _ready(d: Any) -> str:
    guilds = _get(d, "guilds")
    n = len(guilds) if isinstance(guilds, list) else "?"
    shard = _get(d, "shard")
    shard_text = f", shard {shard[0]}/{shard[1]}" if isinstance(shard, list) and len(shard) == 2 else ""
    return f"session {clean(_get(d, 'session_id'), 40)}, {n} guilds, as {_user(d)}{shard_text}"


def _guild(d: Any) -> str:
    name = _get(d, "name")
    parts = [f"{clean(name, 40)} ({clean(_get(d, 'id'), 24)})" if name else f"guild {clean(_get(d, 'id'), 24)}"]
    members = _get(d, "member_count")
    if members is not None:
        parts.append(f"{members} members")
    channels = _get(d, "channels")
    if isinstance(channels, list):
        parts.append(f"{len(channels)} channels")
    if _get(d, "unavailable"):
        parts.append("unavailable")
    return ", ".join(parts)


def _message(d: Any) -> str:
    content = _get(d, "content")
    text = f": {clean(content)}" if content else ""
    if not content and _get(d, "embeds"):
        text = f": [{len(_get(d, 'embeds'))} embed(s)]"
    return f"{_user(d)}{_in_channel(d)}{text}"


def _message_delete(d: Any) -> str:
    return f"message {clean(_get(d, 'id'), 24)}{_in_channel(d)}"


def _reaction(d: Any) -> str:
    name = _get(d, "emoji", "name")
    # A custom emoji has an id; show it the way Discord's text does, :name:.
    emoji = f":{clean(name, 24)}:" if name and _get(d, "emoji", "id") else clean(name or "?", 24)
    return f"{emoji} by {_user(d)} on {clean(_get(d, 'message_id'), 24)}"


def _presence(d: Any) -> str:
    activities = _get(d, "activities")
    activity = ""
    if isinstance(activities, list) and activities:
        activity = f" ({clean(_get(activities[0], 'name'), 30)})"
    return f"{_user(d)} is {clean(_get(d, 'status'), 12)}{activity}"


def _typing(d: Any) -> str:
    return f"{_user(d)}{_in_channel(d)}"


def _member(d: Any) -> str:
    return f"{_user(d)} in guild {clean(_get(d, 'guild_id'), 24)}"


def _channel(d: Any) -> str:
    return f"#{clean(_get(d, 'name'), 32)} ({clean(_get(d, 'id'), 24)})"


def _voice(d: Any) -> str:
    channel = _get(d, "channel_id")
    if channel is None:
        return f"{_user(d)} left voice"
    return f"{_user(d)} -> voice channel {clean(channel, 24)}"


def _resumed(d: Any) -> str:
    replayed = _get(d, "replayed")
    return f"replayed {replayed} events" if replayed is not None else "session resumed"


_SUMMARIES: dict[str, Callable[[Any], str]] = {
    "READY": _ready,
    "RESUMED": _resumed,
    "GUILD_CREATE": _guild,
    "GUILD_UPDATE": _guild,
    "GUILD_DELETE": _guild,
    "MESSAGE_CREATE": _message,
    "MESSAGE_UPDATE": _message,
    "MESSAGE_DELETE": _message_delete,
    "MESSAGE_REACTION_ADD": _reaction,
    "MESSAGE_REACTION_REMOVE": _reaction,
    "PRESENCE_UPDATE": _presence,
    "TYPING_START": _typing,
    "GUILD_MEMBER_ADD": _member,
    "GUILD_MEMBER_UPDATE": _member,
    "GUILD_MEMBER_REMOVE": _member,
    "CHANNEL_CREATE": _channel,
    "CHANNEL_UPDATE": _channel,
    "CHANNEL_DELETE": _channel,
    "THREAD_CREATE": _channel,
    "THREAD_UPDATE": _channel,
    "THREAD_DELETE": _channel,
    "VOICE_STATE_UPDATE": _voice,
}

_GENERIC_KEYS = ("id", "name", "guild_id", "channel_id", "user_id", "message_id")


def _generic(d: Any) -> str:
    if not isinstance(d, Mapping):
        return clean(d) if d is not None else ""
    parts = [f"{k}={clean(d[k], 24)}" for k in _GENERIC_KEYS if isinstance(d.get(k), (str, int))]
    if not parts:
        parts = [f"{len(d)} fields"]
    return " ".join(parts)


def summarize(t: Any, d: Any) -> str:
    """A one-line, terminal-safe description of a dispatch's data."""
    fn = _SUMMARIES.get(t, _generic) if isinstance(t, str) else _generic
    try:
        return fn(d)
    except Exception:  # odd shapes from the wire must never stop the listener
        return _generic(d)


def event_line(seq: Any, t: Any, d: Any, width: int = 160) -> str:
    """``seq type summary``: the plain line printed for each event."""
    seq_text = str(seq) if seq is not None else "-"
    line = f"{seq_text:>7} {clean(t, 40):<24} {summarize(t, d)}"
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


class Stats:
    """Counters the listener keeps while events arrive (cheap to update)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.ended: float | None = None
        self.total = 0
        self.by_type: collections.Counter[str] = collections.Counter()
        self.last_seq: int | None = None
        self.resumes = 0
        self.replayed = 0
        # (time, total) samples for the recent rate shown on the status line.
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)

    def count(self, t: Any, seq: Any) -> None:
        self.total += 1
        self.by_type[t if isinstance(t, str) else str(t)] += 1
        if isinstance(seq, int) and (self.last_seq is None or seq > self.last_seq):
            self.last_seq = seq

    def elapsed(self) -> float:
        end = self.ended if self.ended is not None else self.clock()
        return max(end - self.started, 0.0)

    def average_rate(self) -> float:
        elapsed = self.elapsed()
        return self.total / elapsed if elapsed > 0 else 0.0

    def recent_rate(self, window: float = 2.0) -> float:
        """Events per second over about the last ``window`` seconds."""
        now = self.clock()
        self._samples.append((now, self.total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= window:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        if now - t0 <= 0:
            return 0.0
        return (self.total - n0) / (now - t0)


def status_line(*, status: str, rate: float, total: int, seq: int | None, ping_ms: float | None,
                bytes_in: int, bytes_decoded: int, width: int = 120) -> str:
    ratio = f"{bytes_decoded / bytes_in:.1f}x" if bytes_in else "-"
    ping = f"{ping_ms:.1f} ms" if ping_ms is not None else "-"
    line = (f"{status:<12} {rate:8.1f} ev/s  {total:>9,} events  seq {seq if seq is not None else '-'}"
            f"  ping {ping}  in {human_bytes(bytes_in)}  ratio {ratio}")
    return line[:width]


def resume_command(session_id: str, sequence: int | None, *, url: str | None = None,
                   shard: tuple[int, int] | None = None, encoding: str = "json",
                   compression: int = 0) -> str:
    """The exact command that resumes this session (the token comes from the environment)."""
    parts = ["fastshard", "listen", "--resume", f"{session_id}:{sequence if sequence is not None else 0}"]
    if url:
        parts += ["--url", url]
    if shard is not None and shard != (0, 1):
        parts += ["--shard", f"{shard[0]}/{shard[1]}"]
    if encoding != "json":
        parts += ["--encoding", encoding]
    if compression:
        parts += ["--compression", str(compression)]
    return " ".join(parts)


def summary_text(stats: Stats, *, session_id: str | None, sequence: int | None,
                 resume: str | None, note: str | None = None) -> str:
    elapsed = stats.elapsed()
    lines = [f"-- summary: {stats.total:,} events in {elapsed:.1f} s ({stats.average_rate():.1f} events/s on average)"]
    if stats.resumes:
        lines.append(f"   resumed {stats.resumes} time(s), {stats.replayed} event(s) replayed")
    if stats.by_type:
        width = max(len(t) for t in stats.by_type)
        lines.append("   events by type:")
        for t, n in stats.by_type.most_common():
            lines.append(f"     {clean(t, 40):<{width}}  {n:>9,}")
    if session_id:
        lines.append(f"   session {session_id}, sequence {sequence if sequence is not None else '-'}")
        if resume:
            lines.append(f"   resume it with: {resume}")
        if note:
            lines.append(f"   {note}")
    elif stats.total:
        lines.append("   the session ended and cannot be resumed")
    else:
        lines.append("   no session was established")
    return "\n".join(lines)


def disallowed_intents_message(intents: int) -> str:
    """What to do after close 4014, naming the privileged intents that were asked for."""
    names = privileged_names(intents)
    if not names:
        return ("Discord refused the intents (close 4014: disallowed intents), although none of the "
                f"requested intents ({', '.join(intent_names(intents)) or 'none'}) is privileged.")
    switches = ", ".join(portal_labels(names))
    return (f"Discord refused privileged intents (close 4014: disallowed intents). This run asked for "
            f"{', '.join(names)}. Enable them for your app at https://discord.com/developers/applications "
            f"-> your app -> Bot -> Privileged Gateway Intents ({switches}), "
            "or leave them out of --intents.")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def open_output(path: str | None) -> "JsonlWriter | None":
    """The ``--output`` writer (None without the option); OSError becomes a message to print."""
    if not path:
        return None
    try:
        return JsonlWriter(path)
    except OSError as exc:
        raise ValueError(f"cannot open the output file {path}: {exc.strerror or exc}") from None


class JsonlWriter:
    """Appends one JSON object per line and flushes each line.

    Flushing per line means a Ctrl-C, a crash or a kill loses nothing that
    was already received.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "ab")
        self.lines = 0

    def write(self, record: Any) -> None:
        try:
            data = orjson.dumps(record)
        except TypeError:  # ints past 64 bits, bytes: fall back to the slower, lenient encoder
            data = json.dumps(record, default=_json_default, separators=(",", ":")).encode()
        self._file.write(data + b"\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        self._file.close()
