"""Human-readable output: the CA / PA / ASR table and report.md.

Every rate carries its 95% interval: ``0.980 [0.966, 0.989]``; ASR also its count ``(k/n)``.
A run over several seeds prints one row per seed, the pooled row (all target inputs of all
seeds, Wilson) and the mean over seeds (t interval over seeds). Definitions: docs/DESIGN.md,
"Uncertainty".
"""
from __future__ import annotations

from pathlib import Path

from ..core.io import write_text
from .metrics import threat_line
from ..core.stats import fmt_ci, fmt_rate


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _rate_cell(r: dict | None, count: bool = False) -> str:
    if not r or r.get("value") is None:
        return "-"
    return fmt_rate(r) if count else fmt_ci(r["value"], r["ci95"])


def _mean_cell(m: dict | None, digits: int = 3) -> str:
    return "-" if not m or m.get("mean") is None else fmt_ci(m["mean"], m["ci95"], digits)


def _margins_cell(mg: dict | None) -> str:
    """Mean margin on the clean encoder -> on the poisoned one (with its t interval)."""
    if not mg or mg["poisoned"]["margin"]["mean"] is None:
        return "-"
    clean = mg["clean"]["margin"]["mean"]
    return f"{'-' if clean is None else f'{clean:.2f}'} -> {_mean_cell(mg['poisoned']['margin'], 2)}"


def _table(rows: list[tuple]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


HEAD = ("CA [95% CI]", "PA [95% CI]", "ASR [95% CI] (k/n)", "clean ASR [95% CI] (k/n)", "margin clean -> poisoned [95% CI]")


def _run_cells(r: dict) -> tuple:
    """CA, PA, ASR, clean ASR and margin cells of a run or task with ``intervals`` (or bare values)."""
    iv = r.get("intervals") or {}
    return (_rate_cell(iv.get("CA")) if iv else _f(r["CA"]), _rate_cell(iv.get("PA")) if iv else _f(r["PA"]),
            _rate_cell(iv.get("ASR"), True) if iv else _f(r["ASR"]),
            _rate_cell(iv.get("clean_ASR"), True) if iv else _f(r["clean_ASR"]), _margins_cell(r.get("margins")))


def format_table(m: dict) -> str:
    if "per_seed" in m:
        return format_seeds_table(m)
    rows = [("task",) + HEAD + ("targets",)]
    for t in m["tasks"]:
        rows.append((t["dataset"],) + _run_cells(t) + (str(len(t["targets"])),))
    if len(m["tasks"]) > 1:
        rows.append(("overall",) + _run_cells(m) + (str(m["num_targets"]),))
    lines = _table(rows)
    lines.append(threat_line(m))
    return "\n".join(lines)


def format_seeds_table(m: dict) -> str:
    """One row per seed, the pooled row and the mean over seeds (``±``-free: bracketed t interval)."""
    rows = [("run",) + HEAD + ("targets",)]
    for s in m["per_seed"]:
        rows.append((f"seed {s['seed']}",) + _run_cells(s) + (str(s["num_targets"]),))
    rows.append(("pooled",) + _run_cells(m) + (str(m["num_targets"]),))
    o = m["over_seeds"]
    rows.append((f"mean of {len(m['seeds'])} seeds",) + tuple(_mean_cell(o[k]) for k in ("CA", "PA", "ASR", "clean_ASR"))
                + (f"{o['clean_margin']['mean']:.2f} -> {_mean_cell(o['poisoned_margin'], 2)}"
                   if o["poisoned_margin"]["mean"] is not None else "-",
                   f"{m['num_targets'] // max(1, len(m['seeds']))}/seed"))
    lines = _table(rows)
    lines.append(threat_line(m, per_seed=True) + "; pooled: Wilson over all target inputs; mean: t interval over seeds")
    return "\n".join(lines)


_DEFINITIONS = (
    "CA: downstream test accuracy with the clean encoder; PA: with the poisoned encoder (target inputs excluded). "
    "ASR: fraction of target inputs classified as their target class with the poisoned encoder; "
    "clean ASR: the same with the clean encoder (the attack's chance level). "
    "Brackets: 95% Wilson score intervals (k of n); margin: the downstream classifier's target-class logit minus "
    "its largest other logit, mean over target inputs with its t interval (> 0 where the target input flips). "
    "Definitions: docs/DESIGN.md, \"Uncertainty\".")


def _scores_line(mg: dict | None) -> str:
    if not mg or mg["poisoned"]["margin"]["mean"] is None:
        return ""
    parts = []
    for label, key, nd in (("margin", "margin", 2), ("target-class probability", "target_prob", 3),
                           ("target-class rank", "target_rank", 2)):
        parts.append(f"{label} {_mean_cell(mg['clean'][key], nd)} -> {_mean_cell(mg['poisoned'][key], nd)}")
    return "Per target input, mean over target inputs, clean encoder -> poisoned encoder [95% t interval]: " + \
        "; ".join(parts) + "."


def _v(x, fmt: str = "") -> str:
    """A table cell: ``-`` for a value not measured (the clean encoder's, when there is none)."""
    return "-" if x is None else format(x, fmt)


def _targets_table(m: dict, seeds: bool = False) -> list[str]:
    head = ("| " + ("seed | " if seeds else "") + "task | test index | true class | target class | clean pred | poisoned pred | "
            "cos clean | cos poisoned | p(target) clean | p(target) poisoned | rank clean | rank poisoned | margin clean | margin poisoned |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for t in m["tasks"]:
        for x in t["targets"]:
            extra = ""
            if "poisoned_margin" in x:
                extra = (f" {_v(x['clean_target_prob'], '.3f')} | {x['poisoned_target_prob']:.3f} | "
                         f"{_v(x['clean_target_rank'])} | {x['poisoned_target_rank']} | {_v(x['clean_margin'], '.2f')} | "
                         f"{x['poisoned_margin']:.2f} |")
            else:
                extra = " - | - | - | - | - | - |"
            lines.append("| " + (f"{x['seed']} | " if seeds else "") +
                         f"{t['dataset']} | {x['test_index']} | {x['true_class_name']} | {x['target_class_name']} | "
                         f"{_v(x['clean_prediction'])} | {x['poisoned_prediction']} | {_v(x['clean_cosine'], '.3f')} | "
                         f"{x['poisoned_cosine']:.3f} |" + extra)
    return lines


def _outside_line(m: dict) -> str:
    """Which encoder files an evaluation of outside encoders measured (``evaluate --encoder``)."""
    parts = []
    for name in ("poisoned", "clean"):
        f = (m.get("encoder_files") or {}).get(name)
        if f:
            how = f["format"] + (f", --arch {f['arch']}" if f.get("arch") else "") + f", normalize {f['normalize']}"
            parts.append(f"{name} `{f['path']}` ({how}; sha256 `{f['sha256']}`)")
        elif name == "clean" and "clean" not in (m.get("encoder_files") or {}):
            parts.append("no clean encoder: CA, clean ASR and the clean margins are not measured (-)")
        else:
            parts.append(f"{name}: a module passed to evaluate_encoder")
    return ("Encoders trained outside the toolkit on this run's poisoning inputs (the configuration's pre-training "
            "settings were not used): " + "; ".join(parts) + ".")


def write_report(path: str | Path, cfg: dict, m: dict) -> Path:
    p = cfg["pretrain"]
    lines = [
        "# PoisonedEncoder run", "",
        _outside_line(m) if m.get("outside_encoders") else
        f"Pre-training: {cfg['pretrain_data']['dataset']} ({m['num_clean_inputs']} clean inputs), "
        f"{p['algorithm']} / {p['backbone']} (width {p['width']}), {p['epochs']} epochs, batch {p['batch_size']}, seed {cfg['seed']}, "
        f"preset `{cfg['preset']}`.", "",
        "```", format_table(m), "```", "",
        _DEFINITIONS, "", _scores_line(m.get("margins")), "",
        "![poisoning inputs](poisons_grid.png)", "",
        *_targets_table(m),
    ]
    return write_text(path, "\n".join(lines) + "\n")


def write_seeds_report(path: str | Path, cfg: dict, m: dict) -> Path:
    p = cfg["pretrain"]
    seeds = ", ".join(str(s) for s in m["seeds"])
    lines = [
        f"# PoisonedEncoder run over {len(m['seeds'])} seeds", "",
        f"Pre-training: {cfg['pretrain_data']['dataset']}, {p['algorithm']} / {p['backbone']} (width {p['width']}), "
        f"{p['epochs']} epochs, batch {p['batch_size']}, preset `{cfg['preset']}`; seeds {seeds}. Each seed draws its own "
        "target inputs, target classes, reference inputs, poisoning inputs, initialisation and augmentation; "
        "its run is in `seed_<s>/` (metrics.json, report.md, poisons).", "",
        "```", format_table(m), "```", "",
        _DEFINITIONS + " Pooled: all target inputs (and test predictions) of all seeds as one sample; "
        "mean of seeds: the per-seed values' mean with a t interval over seeds (n - 1 degrees of freedom).", "",
        _scores_line(m.get("margins")), "",
        *_targets_table(m, seeds=True),
    ]
    return write_text(path, "\n".join(lines) + "\n")
