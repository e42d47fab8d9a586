"""latest.md, chart.svg and the console summary from the peers bench's results dict."""
from __future__ import annotations

import math
from html import escape

# Instruments, not peers: in the tables, not in the chart.
NOT_CHARTED = {"framed", "framed-hop"}
# cold start: milliseconds apart, in the table; paced load: every system meets the offered rate
NOT_CHARTED_WORKLOADS = {"w6.cold", "w7.mixed.paced"}


def f_ops(v) -> str:
    if v is None:
        return "-"
    if v >= 100_000:
        return "%.0fk" % (v / 1000)
    if v >= 10_000:
        return "%.1fk" % (v / 1000)
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def f_lat(us) -> str:
    if us is None or us != us:
        return "-"
    if us < 1000:
        return "%.0f µs" % us
    if us < 100_000:
        return "%.2f ms" % (us / 1000) if us < 10_000 else "%.1f ms" % (us / 1000)
    return "%.0f ms" % (us / 1000)


def f_ratio(v, lo=None, hi=None) -> str:
    if v is None:
        return "-"
    s = ("%.2f×" % v) if v < 10 else ("%.1f×" % v)
    if lo is not None and hi is not None:
        s += " (%.2f–%.2f)" % (lo, hi) if hi < 10 else " (%.1f–%.1f)" % (lo, hi)
    return s


def groups(out: dict) -> list:
    seen = []
    for r in out["records"]:
        if r["workload"] not in seen:
            seen.append(r["workload"])
    return [(w, [r for r in out["records"] if r["workload"] == w]) for w in seen]


def machine_line(m: dict) -> str:
    return ("%d cores (%s), Linux %s; Python %s; Node %s (server binary built on Node %s); SQLite %s in the server, "
            "%s in Python's sqlite3, %s in apsw; msgpack %s; load average %s at the start, %s at the end") % (
        m.get("cores", 0), m.get("cpu", "?"), m.get("kernel", "?"), m.get("python"), m.get("node"),
        m.get("server_node", "?"), m.get("sqlite_server"), m.get("sqlite_stdlib"), m.get("sqlite_apsw"), m.get("msgpack"),
        " / ".join("%.2f" % x for x in m.get("loadavg_start", [])),
        " / ".join("%.2f" % x for x in m.get("loadavg_end", [])))


def targets_table(out: dict) -> str:
    lines = ["| issue | target | measured | figure | verdict |", "| --- | --- | --- | --- | --- |"]
    for t in out["targets"]:
        meas = t["value"] if isinstance(t["value"], str) else ("%s" % t["value"])
        fig = t["figure"] + ((": " + t["note"]) if t.get("note") else "")
        lines.append("| %s | %s | %s (%s) | %s | **%s** |" % (t["issue"], t["target"], meas, t["threshold"], fig, t["verdict"]))
    return "\n".join(lines)


SIDE_SHORT = {"stdlib-crewai": "stdlib", "rpc-install": "sqlite-rpc", "rpc-connect": "connect()", "echo": "echo",
              "stdlib-same": "stdlib", "rpc-keep-open": "keep_open", "rpc-seed": "Database", "rpc-perop": "connect()",
              "stdlib-perop": "stdlib", "rpc-big": "big", "rpc-small": "1 MB", "stdlib-big": "stdlib big",
              "stdlib-small": "stdlib 1 MB", "stdlib-tuned": "stdlib"}


def fig12_text(rows: list) -> str:
    """Issue 12's figures: p50 / p99 per side, the ratio (median of per-round ratios, min–max),
    the target and the verdict. A markdown table, also printed as is."""
    lines = ["| group | figure | p50 / p99 per side | ratio (rounds min–max) | ratio is | target | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sides = "; ".join("%s %s / %s" % (SIDE_SHORT.get(k, k), f_lat(v["p50_us"]), f_lat(v["p99_us"]))
                          for k, v in r["sides"].items())
        if r.get("per_mb_us"):
            sides += "; per MB: " + ", ".join("%s %s" % (SIDE_SHORT.get(k, k), f_lat(v)) for k, v in r["per_mb_us"].items())
        ratio = f_ratio(r["ratio"], r["ratio_min"], r["ratio_max"]) if r["ratio"] is not None else "-"
        lines.append("| %s | %s | %s | %s | %s | %s | **%s** |" % (r["group"], r["figure"], sides, ratio, r["ratio_what"],
                                                                 r["threshold"], r["verdict"]))
    return "\n".join(lines)


def fig13_text(rows: list) -> str:
    """Issue 13's figures: the stdlib, the shared server and a server per process side by side
    (each side: its figure, p50 / p99, errors, the servers seen; the ratio to the stdlib as the
    median of per-round ratios, min–max), the target, and a verdict per mode."""
    lines = ["| figure | stdlib | sqlite-rpc, shared server | sqlite-rpc, server per process | target | shared | private |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = []
        for s in ("stdlib", "shared", "private"):
            v = r["sides"].get(s) or {}
            c = v.get("cell", "-")
            if v.get("ratio") is not None:
                c = "**%s** (%s); %s" % (f_ratio(v["ratio"], v.get("ratio_min"), v.get("ratio_max")) if len(
                    v.get("ratio_rounds") or []) > 1 else f_ratio(v["ratio"]), r["ratio_what"], c)
            cells.append(c)
        vd = r.get("verdict") or {}
        lines.append("| %s | %s | %s | %s | %s | **%s** | **%s** |" % (
            r["figure"], cells[0], cells[1], cells[2], r["threshold"], vd.get("shared", "-"), vd.get("private", "-")))
    return "\n".join(lines)


def markdown(out: dict) -> str:
    m = out["machine"]
    parts = ["# sqlite-rpc against its peers (%s run, %s)" % (out["mode"], out["generated"]), "",
             "Command: `%s` (%.0f s). Machine: %s." % (out["command"], out["duration_s"], machine_line(m)), "",
             "Every figure is a median over rounds (min–max in brackets); within a round every system runs once, "
             "in an order reversed each round; ratios are taken inside each round, then the median. "
             "Throughput ratio > 1 means faster than the baseline named in the column.", "",
             "## Targets", "", targets_table(out), ""]
    if out.get("issue12"):
        parts += ["## Issue 12: CrewAI operations and the request path", "",
                  "Every side in one process, blocks ordered A B .. B A within each round (flipped every round); "
                  "see bench/peers/README.md for what each figure runs.", "", fig12_text(out["issue12"]), ""]
    if out.get("issue13"):
        run = out.get("issue13_run") or {}
        fs = run.get("fsync_delay_us")
        parts += ["## Issue 13: processes on one shared server", "",
                  "Each sqlite-rpc figure in both modes of the client (SQLITE_RPC_SHARED=1: one server for every process "
                  "of the user, over a unix socket; =0: a server per process, over a pipe) beside the stdlib, alternating "
                  "in the same rounds; ratios are per round, then the median (min–max). Runtime dir: the bench's own. "
                  "fsync: %s. See bench/peers/README.md for what each figure runs." % (
                      "every fsync and fdatasync +%g ms (strace inject, both sides)" % (fs / 1000) if fs else "as is"),
                  ""]
        if run.get("commit"):
            nb = run.get("neighbours") or {}
            parts += ["Measured: checkout %s%s, binary built %s (src/ last committed %s). Load average during the group "
                      "%s; other test runners seen: %s." % (
                          run["commit"], " (src/ with uncommitted changes)" if run.get("src_dirty") else "",
                          run.get("binary_built"), run.get("src_commit_time"),
                          "%.1f-%.1f (median %.1f)" % (nb["load_min"], nb["load_max"], nb["load_median"]) if nb else "-",
                          ", ".join("%s in %d of %d samples" % (k, v, nb.get("samples", 0))
                                    for k, v in (nb.get("foreign") or {}).items()) or "none"), ""]
        parts += [fig13_text(out["issue13"]), ""]
    parts += ["## Results", ""]
    systems = out["systems"]
    for wl, recs in groups(out):
        title = recs[0]["title"]
        unit = recs[0]["unit"]
        base = recs[0].get("baseline")
        tuned = recs[0].get("tuned_baseline")
        parts.append("### %s" % title)
        parts.append("")
        hdr = ["system", unit, "p50", "p99", "errors"]
        if base:
            hdr.append("× %s" % systems.get(base, {}).get("label", base))
        if tuned:
            hdr.append("× %s" % systems.get(tuned, {}).get("label", tuned))
        extra_w7 = wl.startswith("w7.")
        extra_w6 = wl == "w6.cold"
        extra_normal = wl.endswith(".normal")
        if extra_w7:
            hdr += ["read p50 / p99", "write p50 / p99", "RSS start → end", "fds start → end"]
        if extra_w6:
            hdr = ["system", "first query", "import", "errors"] + hdr[5:]
        if extra_normal:
            hdr.append("× stdlib connect per op at FULL")
        parts.append("| " + " | ".join(hdr) + " |")
        parts.append("|" + " --- |" * len(hdr))
        for r in recs:
            lab = systems.get(r["system"], {}).get("label", r["system"])
            if extra_w6:
                row = [lab, "%.1f ms (%.1f–%.1f)" % (r["ms_median"], 1e3 / r["ops_s_max"], 1e3 / r["ops_s_min"]),
                       ("%.1f ms" % r["import_ms"]) if r.get("import_ms") is not None else "-", str(r["errors"])]
            else:
                row = [lab, "%s (%s–%s)" % (f_ops(r["ops_s"]), f_ops(r["ops_s_min"]), f_ops(r["ops_s_max"])) if r["rounds"] > 1
                       else f_ops(r["ops_s"]), f_lat(r.get("p50_us")), f_lat(r.get("p99_us")),
                       str(r["errors"]) + ((" (" + "; ".join("%s: %d" % (k, v) for k, v in r["error_kinds"].items()) + ")")
                                           if r["errors"] else "")]
            if base:
                row.append("**1**" if r["system"] == base else f_ratio(r.get("ratio_to_stdlib"), r.get("ratio_to_stdlib_min"),
                                                                       r.get("ratio_to_stdlib_max") if r["rounds"] > 1 else None))
            if tuned:
                row.append("**1**" if r["system"] == tuned else f_ratio(r.get("ratio_to_stdlib_tuned")))
            if extra_w7:
                rd, wr = r.get("read") or {}, r.get("write") or {}
                row.append("%s / %s" % (f_lat(rd.get("p50_us")), f_lat(rd.get("p99_us"))))
                row.append("%s / %s" % (f_lat(wr.get("p50_us")), f_lat(wr.get("p99_us"))))
                who = "server" if r.get("measured_pid") == "server" else "process"
                if r.get("rss_start_kb"):
                    row.append("%.1f → %.1f MB (%s)" % (r["rss_start_kb"] / 1024, r["rss_end_kb"] / 1024, who))
                    row.append("%d → %d" % (r["fds_start"], r["fds_end"]))
                else:
                    row += ["-", "-"]
            if extra_normal:
                row.append(f_ratio(r.get("ratio_to_stdlib_full")))
            parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    parts.append("## Systems")
    parts.append("")
    used = {r["system"] for r in out["records"]}
    for k, v in systems.items():
        if k in used:
            parts.append("- **%s** (`%s`): %s" % (v["label"], k, v["what"]))
    if out.get("notes"):
        parts += ["", "## Notes", ""] + ["- " + n for n in out["notes"]]
    return "\n".join(parts) + "\n"


# The README's condensed table: one row per workload, one column per kind of system. For the
# sqlite-rpc column, the API that does what the stdlib column does (the CrewAI rows: connect
# per operation; elsewhere a connection kept open).
README_COLUMNS = [
    ("stdlib, connect per op", ["stdlib-perop", "stdlib-perop-normal", "stdlib"]),
    ("stdlib tuned (WAL, open conn)", ["stdlib-tuned", "stdlib-tuned-normal"]),
    ("apsw", ["apsw"]),
    ("sqlite-rpc connect()", ["rpc-connect", "rpc-perop", "rpc-normal"]),
    ("sqlite-rpc Database", ["rpc-seed"]),
    ("sqlite-rpc aio", ["rpc-aio"]),
    ("echo floor", ["echo"]),
]


def readme_table(out: dict) -> str:
    lines = ["| workload | unit | " + " | ".join(c for c, _ in README_COLUMNS) + " |",
             "| --- | --- |" + " --- |" * len(README_COLUMNS)]
    for wl, recs in groups(out):
        by = {r["system"]: r for r in recs}
        cells = []
        for _col, ids in README_COLUMNS:
            r = next((by[i] for i in ids if i in by), None)
            if r is None:
                cells.append("")
                continue
            if wl == "w6.cold":
                cells.append("%.1f ms" % r["ms_median"])
                continue
            cell = f_ops(r["ops_s"])
            base = r.get("baseline") or r.get("tuned_baseline")
            ratio = r.get("ratio_to_stdlib") if r.get("baseline") else r.get("ratio_to_stdlib_tuned")
            if r["system"] != base and ratio is not None:
                cell += " (%s)" % f_ratio(ratio)
            if r["errors"]:
                cell += ", %d err" % r["errors"]
            cells.append(cell)
        unit = "ms to first row" if wl == "w6.cold" else recs[0]["unit"]
        lines.append("| %s | %s | %s |" % (recs[0]["title"], unit, " | ".join(cells)))
    return "\n".join(lines)


def target_lines(out: dict) -> str:
    lines = ["targets:"]
    for t in out["targets"]:
        lines.append("  %-4s [issue %s] %s: %s" % (t["verdict"], t["issue"], t["target"], t["value"]))
    return "\n".join(lines)


# ---- the chart -------------------------------------------------------------------------------

COLORS = {
    "stdlib-perop": "#9e9e9e", "stdlib-perop-wal": "#bdbdbd", "stdlib-tuned": "#616161", "stdlib-tuned-normal": "#616161",
    "stdlib-perop-normal": "#9e9e9e", "stdlib-perop-wal-normal": "#bdbdbd",
    "apsw": "#d08a2c", "aiosqlite": "#c7a76c",
    "rpc-connect": "#1565c0", "rpc-perop": "#1565c0", "rpc-normal": "#1565c0", "rpc-crewai": "#283593",
    "rpc-seed": "#42a5f5", "rpc-batch": "#64b5f6", "rpc-aio": "#90caf9",
    "echo": "#81c784", "framed": "#4db6ac", "framed-hop": "#80cbc4",
}


def svg(out: dict) -> str:
    systems = out["systems"]
    rows = []  # (kind, text, ratio, system)
    for wl, recs in groups(out):
        if wl in NOT_CHARTED_WORKLOADS:
            continue
        base = recs[0].get("baseline")
        key = "ratio_to_stdlib"
        if not base:
            base = recs[0].get("tuned_baseline")
            key = "ratio_to_stdlib_tuned"
        if not base:
            continue
        blabel = systems.get(base, {}).get("label", base)
        rows.append(("head", "%s  (vs %s)" % (recs[0]["title"], blabel), None, None))
        for r in recs:
            if r["system"] in NOT_CHARTED or r["system"] == base or r.get(key) is None:
                continue
            rows.append(("bar", systems.get(r["system"], {}).get("label", r["system"]), r[key], r["system"]))
    vals = [x[2] for x in rows if x[2]]
    mn = min(vals + [0.5])
    lo = min(0.1, max(0.01, 10 ** math.floor(math.log10(mn * 0.9))))
    mx = max(vals + [2.0])
    hi = 10 ** math.ceil(math.log10(mx * 1.3))
    W, left, right = 980, 250, 70
    plot_w = W - left - right
    bar_h, head_h, top = 13, 24, 56
    H = top + sum(bar_h + 3 if k == "bar" else head_h for k, *_ in rows) + 40

    def x(v):
        v = min(max(v, lo), hi)
        return left + (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * plot_w

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif" font-size="11">' % (W, H, W, H),
         '<rect width="100%" height="100%" fill="#ffffff"/>',
         '<text x="%d" y="20" font-size="14" font-weight="bold">sqlite-rpc against stdlib sqlite3: throughput ratio '
         '(log scale; 1 = the stdlib baseline named in each group)</text>' % 10,
         '<text x="10" y="38" fill="#555">%s run %s, %s cores, medians over rounds; '
         'bars right of 1: faster than the baseline; cold start and the paced load are in the tables.</text>' % (escape(out["mode"]), escape(out["generated"][:16]),
                                                              out["machine"].get("cores"))]
    # grid
    ticks = []
    e = round(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        ticks.append(10.0 ** e)
        e += 1
    minor = [t * m for t in ticks for m in (2, 5) if t * m < hi]
    for t in sorted(ticks + minor):
        xx = x(t)
        major = t in ticks
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1"/>' % (
            xx, top - 6, xx, H - 30, "#000" if abs(t - 1) < 1e-9 else ("#d0d0d0" if major else "#eeeeee")))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="%s" font-size="%d">%s×</text>' % (
            xx, H - 16, "#333" if major else "#999", 11 if major else 9, "%g" % t))
    y = top
    for kind, text, ratio, sys_id in rows:
        if kind == "head":
            o.append('<text x="10" y="%d" font-weight="bold" fill="#222">%s</text>' % (y + 16, escape(text)))
            y += head_h
            continue
        x1, x0 = x(ratio), x(1.0)
        a, b = min(x0, x1), max(x0, x1)
        col = COLORS.get(sys_id, "#999")
        o.append('<text x="%d" y="%d" text-anchor="end" fill="#333">%s</text>' % (left - 6, y + bar_h - 2, escape(text)))
        o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>' % (a, y, max(b - a, 1.0), bar_h, col))
        lab = ("%.2f×" % ratio) if ratio < 10 else ("%.0f×" % ratio)
        o.append('<text x="%.1f" y="%d" fill="%s">%s</text>' % (b + 4, y + bar_h - 2, "#222" if ratio >= 1 else "#b71c1c", lab))
        y += bar_h + 3
    o.append("</svg>")
    return "\n".join(o) + "\n"
