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


def setting(a: ArmResult) -> dict:
    """The regime of an arm in parts: dataset and size, method and encoder, epochs, clean inputs, the
    poisoning budget (named by what each share divides by), targets per run, seeds."""
    from ...experiment.metrics import rate_words

    c, t = a.config or {}, a.threat()
    p, data = c.get("pretrain", {}), c.get("pretrain_data", {})
    per_run = a.targets_per_run()
    return {"data": f"{data.get('dataset')} {p.get('image_size')}px",
            "method": f"{p.get('algorithm')} / {p.get('backbone')}"
                      f"{'/' + str(p.get('width')) if p.get('backbone') != 'resnet18' else ''}",
            "epochs": f"{p.get('epochs')} epochs",
            "clean": f"{a.runs[0]['num_clean_inputs']} clean inputs",
            "budget": rate_words(t["poisoning_rate"], t.get("poisoning_share"), t["poisoning_rate_per_target"])
                      + f" ({per_run:g} target{'s' if per_run != 1 else ''} per run)",
            "seeds": f"seeds {', '.join(map(str, a.seeds()))}"}


def regime(a: ArmResult) -> str:
    """The regime as one line (:func:`setting`'s parts)."""
    return line(setting(a))


def line(s: dict) -> str:
    """:func:`setting`'s parts as one line."""
    return f"{s['data']}, {s['method']}, {s['epochs']}, {s['clean']}; {s['budget']}; {s['seeds']}"


def differences(s: dict, common: dict) -> str:
    """What of regime ``s`` differs from ``common`` (``""`` where nothing does)."""
    return "; ".join(v for k, v in s.items() if common.get(k) != v)
