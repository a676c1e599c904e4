"""Human-readable output: the CA / PA / ASR table and report.md."""
from __future__ import annotations

from pathlib import Path

from .io import write_text


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_table(m: dict) -> str:
    rows = [("task", "CA", "PA", "ASR", "clean ASR", "targets")]
    for t in m["tasks"]:
        rows.append((t["dataset"], _f(t["CA"]), _f(t["PA"]), _f(t["ASR"]), _f(t["clean_ASR"]), str(len(t["targets"]))))
    if len(m["tasks"]) > 1:
        rows.append(("overall", _f(m["CA"]), _f(m["PA"]), _f(m["ASR"]), _f(m["clean_ASR"]), str(m["num_targets"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"poisoning rate {m['poisoning_rate']:.4f} ({m['num_poisoning_inputs']} poisoning inputs, "
                 f"{m['num_clean_inputs']} clean pre-training inputs)")
    return "\n".join(lines)


def write_report(path: str | Path, cfg: dict, m: dict) -> Path:
    p = cfg["pretrain"]
    lines = [
        "# PoisonedEncoder run", "",
        f"Pre-training: {cfg['pretrain_data']['dataset']} ({m['num_clean_inputs']} clean inputs), "
        f"{p['algorithm']} / {p['backbone']} (width {p['width']}), {p['epochs']} epochs, batch {p['batch_size']}, seed {cfg['seed']}, "
        f"preset `{cfg['preset']}`.", "",
        "```", format_table(m), "```", "",
        "CA: downstream test accuracy with the clean encoder; PA: with the poisoned encoder (target inputs excluded). "
        "ASR: fraction of target inputs classified as their target class with the poisoned encoder; "
        "clean ASR: the same with the clean encoder (the attack's chance level).", "",
        "![poisoning inputs](poisons_grid.png)", "",
        "| task | test index | true class | target class | clean pred | poisoned pred | cos clean | cos poisoned |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in m["tasks"]:
        for x in t["targets"]:
            lines.append(f"| {t['dataset']} | {x['test_index']} | {x['true_class_name']} | {x['target_class_name']} | "
                         f"{x['clean_prediction']} | {x['poisoned_prediction']} | {x['clean_cosine']:.3f} | {x['poisoned_cosine']:.3f} |")
    return write_text(path, "\n".join(lines) + "\n")
