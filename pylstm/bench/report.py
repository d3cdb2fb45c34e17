"""The issue's targets, evaluated on measured rows, and the printed table."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["TARGETS", "Target", "evaluate_targets", "format_table", "print_report"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One target from the performance issue: a statistic of some rows compared to a threshold."""

    key: str
    text: str
    threshold: float
    select: Callable[[Row], bool]
    value: Callable[[Row], float | None]
    how: str  # "min" or "geomean"
    unit: str = "x"


def _speedup(anchor: str) -> Callable[[Row], float | None]:
    def get(row: Row) -> float | None:
        a = row.get("anchors", {}).get(anchor)
        return None if a is None else a.get("speedup")
    return get


TARGETS: list[Target] = [
    Target("inference_every", "forward >= 1.0x onnxruntime on every inference shape", 1.0,
           lambda r: r["group"] == "inference", _speedup("onnxruntime"), "min"),
    Target("inference_geomean", "forward geometric mean >= 1.3x onnxruntime", 1.3,
           lambda r: r["group"] == "inference", _speedup("onnxruntime"), "geomean"),
    Target("training_geomean", "forward+backward geometric mean >= 1.5x PyTorch", 1.5,
           lambda r: r["group"] == "training", _speedup("torch"), "geomean"),
    Target("large_batch_peak", "large batch (>= 16) forward >= 80% of GEMM peak", 0.8,
           lambda r: r["group"] == "inference" and r["batch"] >= 16,
           lambda r: r.get("peak_fraction"), "min", unit="of peak"),
    Target("varlen", "variable-length training >= 3x PyTorch packed", 3.0,
           lambda r: r["group"] == "varlen", _speedup("torch_packed"), "min"),
    Target("bidir", "2-layer bidirectional >= 1.5x PyTorch (forward and forward+backward)", 1.5,
           lambda r: r["group"] == "bidir", _speedup("torch"), "min"),
    Target("threads", "2 threads >= 1.7x one thread on large-batch shapes", 1.7,
           lambda r: r["group"] == "threads", _speedup("1 thread"), "min"),
    Target("bf16_compute", "bfloat16 compute (AMX) >= 1.2x PyTorch's bfloat16 LSTM at batch >= 4",
           1.2, lambda r: r["group"] == "bf16c" and r["batch"] >= 4, _speedup("torch_bfloat16"),
           "min"),
]


def _geomean(values: Iterable[float]) -> float:
    vals = list(values)
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def evaluate_targets(rows: list[Row], expected: dict[str, int] | None = None) -> list[dict]:
    """Each target: ``met`` (True/False, or None when no row measured it), its measured
    ``value``, ``value / threshold`` as ``ratio``, the worst row, and how many rows counted.

    ``expected`` (target key -> rows the full suite has) marks a target ``partial`` when fewer
    rows were measured (``--quick`` or ``--filter``).
    """
    out = []
    for t in TARGETS:
        sel = [r for r in rows if t.select(r)]
        vals = [(t.value(r), r["id"]) for r in sel]
        got = [(v, i) for v, i in vals if v is not None and v > 0 and math.isfinite(v)]
        missing = [i for v, i in vals if v is None]
        entry: dict[str, Any] = {"key": t.key, "target": t.text, "threshold": t.threshold,
                                 "statistic": t.how, "unit": t.unit, "rows": len(got),
                                 "rows_without_value": missing}
        if not got:
            entry.update(met=None, value=None, ratio=None, worst=None,
                         note="not measured" if not sel else "anchor missing")
        else:
            value = min(v for v, _ in got) if t.how == "min" else _geomean(v for v, _ in got)
            worst = min(got)
            entry.update(met=value >= t.threshold, value=value, ratio=value / t.threshold,
                         worst={"id": worst[1], "value": worst[0]}, note=None)
        if expected is not None and entry["rows"] < expected.get(t.key, 0):
            entry["partial"] = f"{entry['rows']} of {expected[t.key]} rows"
        out.append(entry)
    return out


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1e3:.1f}us"
    return f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _anchor_cells(row: Row) -> str:
    parts = []
    for name, a in row.get("anchors", {}).items():
        if a.get("ms") is None:
            parts.append(f"{name}: {a.get('note') or 'n/a'}")
        else:
            parts.append(f"{name} {_fmt_ms(a['ms'])} -> {a['speedup']:.2f}x")
    return "; ".join(parts)


def _mem_cell(row: Row) -> str:
    mem = row.get("memory")
    if not mem:
        return ""
    ours = mem["ours_tape_bytes"] / 2 ** 20
    if "torch_saved_bytes" in mem:
        return f"{ours:.1f} / {mem['torch_saved_bytes'] / 2 ** 20:.1f} MiB"
    return f"{ours:.1f} MiB / -"


def _fma(meta: dict[str, Any]) -> float:
    return float(meta.get("fma_peak", {}).get("gflops", float("nan")))


def table_rows(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the results table."""
    header = ["case", "pass", "ours ms", "GFLOP/s", "% peak", "% FMA",
              "anchors (ms -> our speedup)", "tape ours / torch"]
    cells = []
    for r in rows:
        pf, ff = r.get("peak_fraction"), r.get("fma_fraction")
        cells.append([r["id"], r["pass"], _fmt_ms(r["ms"]), f"{r['gflops']:.1f}",
                      "-" if pf is None else f"{100 * pf:.0f}%",
                      "-" if ff is None else f"{100 * ff:.0f}%", _anchor_cells(r),
                      _mem_cell(r)])
    return header, cells


def format_table(rows: list[Row]) -> str:
    """The results as a plain-text table."""
    header, cells = table_rows(rows)
    widths = [max(len(header[i]), *(len(c[i]) for c in cells)) if cells else len(header[i])
              for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)


def format_markdown(rows: list[Row], targets: list[dict], meta: dict[str, Any]) -> str:
    """The table and the targets as Markdown (for the README)."""
    header, cells = table_rows(rows)
    peak = meta.get("gemm_peak", {})
    lines = [
        f"Measured {meta.get('started', '')} on {meta.get('cpu', 'this machine')} "
        f"({meta.get('cpu_count', '?')} CPUs; {' '.join(meta.get('cpu_flags') or ['?'])}; "
        f"kernel {meta.get('pylstm', {}).get('kernel', '?')}), {meta.get('threads')} threads "
        f"for every contender; float32 GEMM peak {peak.get('gflops', float('nan')):.0f} GFLOP/s "
        f"({peak.get('source', '')}, the \"% peak\" column); float32 FMA peak "
        f"{_fma(meta):.0f} GFLOP/s (fused multiply-adds from registers on every thread: the "
        f"bound no product can beat, the \"% FMA\" column); load average "
        f"{meta.get('loadavg_start')}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    for t in targets:
        if t["met"] is None:
            lines.append(f"| {t['target']} | n/a | {t['note']} |")
            continue
        val = (f"{100 * t['value']:.0f}%" if t["unit"] == "of peak" else f"{t['value']:.2f}x")
        lines.append(f"| {t['target']} | {'yes' if t['met'] else 'no'} | {t['statistic']} "
                     f"{val} (worst {t['worst']['id']}) |")
    return "\n".join(lines)


def format_targets(targets: list[dict]) -> str:
    """One line per target: met / not met, the measured value and its ratio to the threshold."""
    lines = []
    for t in targets:
        if t["met"] is None:
            status, detail = "n/a    ", t["note"]
        else:
            status = "MET    " if t["met"] else "NOT MET"
            if t["unit"] == "of peak":
                val = f"{100 * t['value']:.0f}% (need {100 * t['threshold']:.0f}%)"
            else:
                val = f"{t['value']:.2f}x (need {t['threshold']:.2f}x)"
            detail = (f"{t['statistic']} {val}, ratio {t['ratio']:.2f}; worst "
                      f"{t['worst']['id']} {t['worst']['value']:.2f}")
        partial = f" [partial: {t['partial']}]" if t.get("partial") else ""
        lines.append(f"[{status}] {t['target']}: {detail}{partial}")
    return "\n".join(lines)


def print_report(rows: list[Row], targets: list[dict], meta: dict[str, Any],
                 use_rich: bool = True) -> None:
    """Print the table (with rich when installed and wanted) and the targets."""
    peak = meta.get("gemm_peak", {})
    head = (f"pylstm {meta.get('pylstm', {}).get('version')} kernel "
            f"{meta.get('pylstm', {}).get('kernel')}, {meta.get('threads')} threads; "
            f"float32 GEMM peak {peak.get('gflops', float('nan')):.0f} GFLOP/s "
            f"({peak.get('source')}), FMA peak {_fma(meta):.0f} GFLOP/s; load average "
            f"{meta.get('loadavg_start')} -> "
            f"{meta.get('loadavg_end')}")
    console = None
    if use_rich:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            console = None
        else:
            console = Console()
            header, cells = table_rows(rows)
            table = Table(title=head, show_lines=False)
            for i, h in enumerate(header):
                table.add_column(h, justify="right" if 2 <= i <= 4 else "left",
                                 overflow="fold")
            for c in cells:
                table.add_row(*c)
            console.print(table)
    if console is None:
        print(head)
        print(format_table(rows))
    print()
    print("Targets:")
    print(format_targets(targets))
