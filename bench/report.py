"""Turn one run's measurements into latest.md, latest.png and latest.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bench_codec import Section, speedups
from .e2e import E2EResult
from .memory import MemoryResult
from .workloads import COMBINATIONS, COMPRESSION_LABELS, combo_label, connection_stream

__all__ = ["Report", "write_report", "wire_table"]

BASELINES = {"discordpy": "discord.py shape", "websockets": "websockets loop"}
TARGET = ("steady", "json", 2, 2.0)  # JSON + zlib-stream steady state: >= 2x less CPU than discord.py


@dataclass
class Report:
    env: dict[str, Any]
    settings: dict[str, Any]
    wire: dict[tuple[str, str, int], dict[str, float]]
    e2e: E2EResult | None
    memory: MemoryResult | None
    codec: list[Section] | None
    errors: list[str]


def wire_table(counts: dict[str, int]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Bytes per event and ratios for every workload x combination, from the exact blast streams."""
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for workload, count in counts.items():
        json_plain = connection_stream(workload, count, "json", 0).wire_bytes
        for e, c in COMBINATIONS:
            s = connection_stream(workload, count, e, c)
            out[(workload, e, c)] = {
                "bytes_per_event": s.wire_bytes / s.events,
                "raw_per_event": s.raw_bytes / s.events,
                "vs_uncompressed": s.wire_bytes / s.raw_bytes,
                "vs_json_plain": s.wire_bytes / json_plain,
            }
    return out


# -- formatting ------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _pct_smaller(ratio: float) -> str:
    return f"{(1 - ratio) * 100:.0f}% smaller" if ratio <= 1 else f"{(ratio - 1) * 100:.0f}% larger"


def _kib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1024:.1f}"


def _header(r: Report) -> list[str]:
    env, s = r.env, r.settings
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return [
        "# fastshard benchmark results",
        "",
        f"Measured **{env['date']}** on **{env['cpu']}** ({env['cores']} cores"
        + (f", {env['memory_gb']} GB RAM" if env.get("memory_gb") else "") + f"), {env['os']}, {env['python']}.",
        f"fastshard commit {env['commit']}; message decoder `{env['decoder']}`.",
        f"Libraries: {versions}.",
        "",
        f"Command: `{env['argv']}`. Steady state: {s['steady']} dispatches; burst: {s['burst']} GUILD_CREATEs; "
        f"end to end {s['repeat']} repeats, codec {s['codec_rounds']} rounds (steady) per candidate; "
        f"memory {s['shards']} shards x {s['memory_repeat']} repeat(s). Every figure is a median; every "
        "ratio is the median of per-repeat ratios of runs made in the same repeat. See bench/README.md "
        "for what each figure means.",
        "",
    ]


def _summary(r: Report) -> list[str]:
    lines = ["## Summary", ""]
    e2e = r.e2e
    if e2e is not None:
        workload, enc, comp, target = TARGET
        fast = e2e.cpu(workload, "fastshard", enc, comp)
        base = e2e.cpu(workload, "discordpy", enc, comp)
        ratio = e2e.ratio(workload, "discordpy", enc, comp)
        if fast is not None and base is not None and ratio is not None:
            verdict = "met" if ratio >= target else "**not met**"
            lines.append(f"- Target (issue 4), JSON + zlib-stream, steady state: fastshard {fast:.2f} us of CPU "
                         f"per event, discord.py's shape {base:.2f} us: **{ratio:.2f}x** less CPU "
                         f"(target >= {target:.0f}x: {verdict}).")
        for workload in ("steady", "burst"):
            best = [(e2e.ratio(workload, b, e, c), b, e, c) for e, c in COMBINATIONS for b in BASELINES]
            best = [x for x in best if x[0] is not None]
            if best:
                lo, hi = min(best), max(best)
                lines.append(f"- {workload}: fastshard's CPU per event against the baselines ranges from "
                             f"{lo[0]:.2f}x ({BASELINES[lo[1]]}, {combo_label(lo[2], lo[3])}) to "
                             f"{hi[0]:.2f}x ({BASELINES[hi[1]]}, {combo_label(hi[2], hi[3])}).")
    w = r.wire
    if ("steady", "etf", 0) in w:
        etf = w[("steady", "etf", 0)]["vs_json_plain"]
        zs = w[("steady", "json", 2)]["vs_uncompressed"]
        zb = w[("burst", "json", 2)]["vs_uncompressed"] if ("burst", "json", 2) in w else None
        lines.append(f"- Wire: ETF is {_pct_smaller(etf)} than JSON in the steady state (tiny-discord's README "
                     f"says \"up to 10% smaller\"); zlib-stream makes JSON {_pct_smaller(zs)} in the steady "
                     + (f"state and {_pct_smaller(zb)} in the GUILD_CREATE burst " if zb is not None else "state ")
                     + "(tiny-discord: \"about 85% smaller\").")
    if r.errors:
        lines.append(f"- **{len(r.errors)} problem(s)** during the run: see Problems at the end.")
    return lines + [""]


def _e2e_table(r: Report, workload: str) -> list[str]:
    e2e = r.e2e
    assert e2e is not None
    unit = "event" if workload == "steady" else "GUILD_CREATE"
    title = ("## End to end, steady state" if workload == "steady" else "## End to end, GUILD_CREATE burst")
    n = r.settings[workload]
    lines = [title, "",
             f"{n} {unit}s from the blast server to one client; CPU is the client process's, from READY to "
             f"the last {unit}. Ratio = baseline CPU / fastshard CPU (higher: fastshard uses less).", ""]
    mem = workload == "steady" and r.memory is not None
    head = (f"| combination | {unit}s/s | CPU us/{unit} | discord.py us/{unit} | websockets us/{unit} "
            f"| ratio vs discord.py | ratio vs websockets | bytes/{unit} | wire / uncompressed |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if mem:
        head += " memory KiB/shard |"
        sep += "---:|"
    lines += [head, sep]
    for e, c in COMBINATIONS:
        wire = r.wire.get((workload, e, c), {})
        row = (f"| {combo_label(e, c)} | {_num(e2e.rate(workload, 'fastshard', e, c), 0)} "
               f"| {_num(e2e.cpu(workload, 'fastshard', e, c), 2)} "
               f"| {_num(e2e.cpu(workload, 'discordpy', e, c), 2)} "
               f"| {_num(e2e.cpu(workload, 'websockets', e, c), 2)} "
               f"| {_ratio(e2e.ratio(workload, 'discordpy', e, c))} "
               f"| {_ratio(e2e.ratio(workload, 'websockets', e, c))} "
               f"| {_num(wire.get('bytes_per_event'), 0)} "
               f"| {_num(wire.get('vs_uncompressed', 0) * 100, 0)}% |")
        if mem:
            assert r.memory is not None
            row += f" {_kib(r.memory.per_shard('fastshard', e, c))} |"
        lines.append(row)
    lines.append("")
    lines.append("n/a: discord.py receives JSON only, over zlib-stream or zstd-stream (or uncompressed); "
                 "it never uses payload compression.")
    return lines + [""]


def _transport_table(r: Report) -> list[str]:
    """What the websocket library alone costs, beside the whole client, on the target combination."""
    from .e2e import TRANSPORT_COMBINATION

    e2e = r.e2e
    assert e2e is not None
    e, c = TRANSPORT_COMBINATION
    rows = [("picows (fastshard's transport)", "raw-picows", "fastshard", "fastshard"),
            ("aiohttp (discord.py's transport)", "raw-aiohttp", "discordpy", "discord.py shape"),
            ("websockets", "raw-websockets", "websockets", "websockets loop")]
    if all(e2e.cpu("steady", raw, e, c) is None for _, raw, _, _ in rows):
        return []
    lines = ["## Transport alone", "",
             f"The same steady-state {combo_label(e, c)} stream received by each websocket library without "
             "decoding anything (CPU us/message, READY to the last message), beside the whole client built "
             "on it: the difference is inflate + decode + bookkeeping.", "",
             "| websocket library | transport only us/message | whole client us/event | client |",
             "|---|---:|---:|---|"]
    for label, raw, full, client in rows:
        lines.append(f"| {label} | {_num(e2e.cpu('steady', raw, e, c), 2)} "
                     f"| {_num(e2e.cpu('steady', full, e, c), 2)} | {client} |")
    return lines + [""]


def _memory_table(r: Report) -> list[str]:
    m = r.memory
    assert m is not None
    lines = ["## Memory per connected idle shard", "",
             f"RSS growth of one process with {m.shards} connected clients (each past READY and one "
             "GUILD_CREATE from the gateway simulator), divided by the count; KiB per shard.", "",
             "| combination | fastshard | discord.py shape | websockets loop |", "|---|---:|---:|---:|"]
    for e, c in COMBINATIONS:
        lines.append(f"| {combo_label(e, c)} | {_kib(m.per_shard('fastshard', e, c))} "
                     f"| {_kib(m.per_shard('discordpy', e, c))} | {_kib(m.per_shard('websockets', e, c))} |")
    return lines + [""]


def _wire_table(r: Report) -> list[str]:
    lines = ["## Wire size", "",
             "Websocket message payload bytes (frame headers excluded) of the exact streams the blast server "
             "sends: one compression context per connection, as Discord does. \"vs uncompressed\": wire bytes / "
             "the same payloads uncompressed in the same encoding; \"vs JSON\": wire bytes / uncompressed JSON.",
             "", "| combination | steady bytes/event | vs uncompressed | vs JSON | burst bytes/GUILD_CREATE "
             "| vs uncompressed | vs JSON |", "|---|---:|---:|---:|---:|---:|---:|"]
    for e, c in COMBINATIONS:
        s, b = r.wire.get(("steady", e, c)), r.wire.get(("burst", e, c))
        cells = []
        for w in (s, b):
            if w is None:
                cells += ["n/a"] * 3
            else:
                cells += [_num(w["bytes_per_event"], 0), f"{w['vs_uncompressed'] * 100:.0f}%",
                          f"{w['vs_json_plain'] * 100:.0f}%"]
        lines.append(f"| {combo_label(e, c)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _codec_tables(r: Report) -> list[str]:
    assert r.codec is not None
    lines = ["## Codec micro-benchmarks", "",
             "In-process, no network: median microseconds per message over interleaved rounds. "
             "\"speed-up\": the baseline's time / fastshard's (per-round pairs, median).", ""]
    for workload in ("steady", "burst", "commands"):
        sections = [s for s in r.codec if s.workload == workload]
        if not sections:
            continue
        paths = [s for s in sections if s.title.startswith("path, ")]
        others = [s for s in sections if not s.title.startswith("path, ")]
        lines.append(f"### {'Steady state' if workload == 'steady' else 'GUILD_CREATE burst' if workload == 'burst' else 'Gateway commands'}")
        lines.append("")
        if paths:
            names = []
            for s in paths:
                for row in s.rows:
                    if not row.fastshard and row.name not in names:
                        names.append(row.name)
            lines.append(f"Whole per-message path (websocket message -> payload dict), {paths[0].messages} "
                         f"{'messages' if workload == 'steady' else 'GUILD_CREATEs'}, us/message:")
            lines.append("")
            lines.append("| combination | fastshard | " + " | ".join(names) + " | best speed-up |")
            lines.append("|---|---:|" + "---:|" * len(names) + "---:|")
            for s in paths:
                fast = next(row for row in s.rows if row.fastshard)
                cells = []
                for name in names:
                    row = next((x for x in s.rows if x.name == name), None)
                    cells.append("" if row is None else ("error" if row.error else _num(row.us_per_msg, 2)))
                ups = list(speedups(s))
                best = min(ups, key=lambda x: x[1]) if ups else None
                best_cell = f"{best[1]:.2f}x vs {best[0]}" if best else "n/a"
                lines.append(f"| {s.title[6:]} | {'error' if fast.error else _num(fast.us_per_msg, 2)} | "
                             + " | ".join(cells) + f" | {best_cell} |")
            lines.append("")
            lines.append("\"best speed-up\" is against the fastest baseline of the row (the least flattering).")
            lines.append("")
        for s in others:
            lines.append(f"{s.title} ({s.messages} {'messages' if workload != 'commands' else 'commands'}):")
            lines.append("")
            lines.append("| candidate | us/message | fastshard's speed-up over it |")
            lines.append("|---|---:|---:|")
            ups = dict(speedups(s))
            for row in s.rows:
                value = "error: " + row.error if row.error else _num(row.us_per_msg, 2)
                up = "" if row.fastshard else _ratio(ups.get(row.name))
                lines.append(f"| {row.name}{' (fastshard)' if row.fastshard else ''} | {value} | {up} |")
            lines.append("")
    return lines


def _problems(r: Report) -> list[str]:
    if not r.errors:
        return ["## Problems", "", "None: every run delivered every event in order.", ""]
    return ["## Problems", ""] + [f"- {e}" for e in r.errors] + [""]


def markdown(r: Report) -> str:
    lines = _header(r) + _summary(r)
    if r.e2e is not None:
        lines += _e2e_table(r, "steady") + _e2e_table(r, "burst") + _transport_table(r)
    if r.memory is not None:
        lines += _memory_table(r)
    lines += _wire_table(r)
    if r.codec is not None:
        lines += _codec_tables(r)
    lines += _problems(r)
    return "\n".join(lines)


def plot(r: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any]] = []
    if r.e2e is not None:
        e2e = r.e2e
        for workload, unit in (("steady", "us CPU / event"), ("burst", "us CPU / GUILD_CREATE")):
            panels.append((f"End to end, {'steady state' if workload == 'steady' else 'GUILD_CREATE burst'}: "
                           f"{unit} (lower is better)",
                           lambda impl, e, c, w=workload: e2e.cpu(w, impl, e, c)))
    if r.memory is not None:
        mem = r.memory
        panels.append((f"Memory per idle connected shard, KiB ({mem.shards} shards; lower is better)",
                       lambda impl, e, c: None if mem.per_shard(impl, e, c) is None
                       else mem.per_shard(impl, e, c) / 1024))
    if not panels:
        return
    impls = [("fastshard", "fastshard", "#2a7ab9"), ("discordpy", "discord.py shape (aiohttp)", "#e07b39"),
             ("websockets", "websockets + zlib + orjson/erlpack", "#9a9a9a")]
    labels = [f"{e}\n{COMPRESSION_LABELS[c]}" for e, c in COMBINATIONS]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.6 * len(panels)), squeeze=False)
    width = 0.27
    for ax, (title, value) in zip(axes[:, 0], panels):
        for k, (impl, label, color) in enumerate(impls):
            xs, ys = [], []
            for i, (e, c) in enumerate(COMBINATIONS):
                v = value(impl, e, c)
                if v is not None:
                    xs.append(i + (k - 1) * width)
                    ys.append(v)
            bars = ax.bar(xs, ys, width, label=label, color=color)
            ax.bar_label(bars, labels=[f"{y:,.0f}" if y >= 100 else f"{y:.3g}" for y in ys],
                         fontsize=7, padding=1)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(COMBINATIONS)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    env = r.env
    fig.suptitle(f"fastshard vs the usual Python way - {env['cpu']}, {env['cores']} cores, {env['python']}, "
                 f"{env['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(r: Report) -> dict[str, Any]:
    out: dict[str, Any] = {"env": r.env, "settings": r.settings, "errors": r.errors,
                           "wire": {"/".join(map(str, k)): v for k, v in r.wire.items()}}
    if r.e2e is not None:
        out["e2e"] = {"/".join(map(str, k)): [vars(x) for x in v] for k, v in r.e2e.runs.items()}
    if r.memory is not None:
        out["memory"] = {"/".join(map(str, k)): v for k, v in r.memory.samples.items()}
    if r.codec is not None:
        out["codec"] = [{"title": s.title, "workload": s.workload, "messages": s.messages,
                         "rows": [vars(row) for row in s.rows]} for s in r.codec]
    return out


def write_report(r: Report, output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    md, png, raw = output / "latest.md", output / "latest.png", output / "latest.json"
    md.write_text(markdown(r) + "\n", encoding="utf-8")
    raw.write_text(json.dumps(_jsonable(r), indent=1) + "\n", encoding="utf-8")
    try:
        plot(r, png)
    except ImportError as exc:
        r.errors.append(f"no plot: matplotlib is missing ({exc}); pip install -e '.[bench]'")
        return [md, raw]
    return [md, png, raw]
