"""What a claims row measured, as text: a rate with its count and 95% interval, a paired
difference with its interval (and McNemar's p), a mean with its interval, and the regime of an arm."""
from __future__ import annotations

from .results import ArmResult


def fmt_rate(r: dict) -> str:
    if r.get("value") is None:
        return "-"
    return f"{r['k']}/{r['n']} = {r['value']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


def fmt_diff(d: dict, key: str = "dASR", nd: int = 2) -> str:
    if d.get(key) is None:
        return "-"
    p = d.get(f"{key}_p")
    return (f"{d[key]:+.{nd}f} [{d[key + '_lo']:+.{nd}f}, {d[key + '_hi']:+.{nd}f}]"
            + (f", McNemar p = {p:.3g}" if p is not None and key == "dASR" else ""))


def fmt_mean(m: dict, nd: int = 3, signed: bool = False) -> str:
    if m.get("mean") is None:
        return "-"
    f = f"+.{nd}f" if signed else f".{nd}f"
    ci = f" [{m['ci95'][0]:{f}}, {m['ci95'][1]:{f}}]" if m.get("ci95") else ""
    return f"{m['mean']:{f}}{ci}"


def regime(a: ArmResult) -> str:
    """Dataset, encoder, epochs, clean inputs, total and per-target rate, targets per run, seeds."""
    c, t = a.config or {}, a.threat()
    p, data = c.get("pretrain", {}), c.get("pretrain_data", {})
    return (f"{data.get('dataset')} {p.get('image_size')}px, {p.get('algorithm')} / {p.get('backbone')}"
            f"{'/' + str(p.get('width')) if p.get('backbone') != 'resnet18' else ''}, {p.get('epochs')} epochs, "
            f"{a.runs[0]['num_clean_inputs']} clean inputs; poisoning rate {100 * t['poisoning_rate']:.1f}% total, "
            f"{100 * t['poisoning_rate_per_target']:.1f}% per target ({a.targets_per_run():g} target"
            f"{'s' if a.targets_per_run() != 1 else ''} per run); seeds {', '.join(map(str, a.seeds()))}")
