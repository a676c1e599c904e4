"""Run one experiment per value of one config key; write sweep.csv, sweep.md and plots.

Runs that share pre-training settings share the cached clean encoder, so a sweep over an
attack parameter trains the clean encoder once (per seed). With ``seeds`` (``--seeds 0,1,2``)
every value runs over all seeds (``OUT/<key>=<value>/seed_<s>/``) and reports the pooled
result. Every rate carries its count and 95% Wilson interval, and every value is compared
with a reference value on the same seeds and target inputs (paired): the difference of ASR
with Newcombe's interval and McNemar's exact p, the difference of the mean margin with a paired
t interval. The reference is the value ``none`` where the sweep has one (``defense.name``),
else the first value. Definitions: docs/DESIGN.md, "Uncertainty".
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from . import config as C
from .errors import UserError
from .io import atomic_write, claim_dir, write_text
from .compare import outcomes, paired
from .metrics import rates_of
from .pipeline import Experiment
from .stats import fmt_ci

ALPHA = 0.05


def parse_values(text: str) -> list:
    """``--values``: comma-separated YAML values; commas inside brackets belong to the value
    (``[0.2,1.0],[0.4,1.0]``: two lists). A value that is not valid YAML (an unclosed bracket,
    a ``!!python`` tag), a repeated key or too deep nesting is a :class:`UserError`."""
    import yaml

    if len(text) > C.MAX_VALUE_CHARS:
        raise UserError(f"sweep --values has {len(text)} characters, more than the {C.MAX_VALUE_CHARS} accepted")
    out = []
    for part in _split_top_level(text):
        if part.strip() == "":
            continue
        try:
            out.append(C.parse_yaml(part, f"sweep --values {C._preview(part, 80)}"))
        except yaml.YAMLError as e:
            raise UserError(f"sweep --values: {C._preview(part, 80)} is not a valid value "
                            f"({C._preview(str(e).splitlines()[0], 120)})") from None
    return out


def _split_top_level(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def run_sweep(user: dict, overrides: list[str], key: str, values: list, out: str | Path, log=print,
              jobs: int = 1, executor=None) -> list[dict]:
    """One run (or one run per seed) per value of ``key``, the table after each value. ``jobs`` > 1:
    every value's runs go into one list, run that many at a time (:mod:`poisonedencoder.parallel`)
    after the clean encoders they share, with the same results as one at a time. ``executor`` (a
    :class:`~poisonedencoder.cluster.Cluster`): the same list as jobs of a cluster, one job array
    for the clean encoders, then one for the runs."""
    from .seeds import SeedRuns

    out = claim_dir(out, "sweep directory (--out)")
    rows = []
    for v in values:
        cfg = C.resolve(user, list(overrides) + [f"{key}={v}"])  # validates every value before any work
        rows.append((v, cfg))
    if key in ("seed", "seeds") and any(cfg["seeds"] for _, cfg in rows):
        raise UserError("a sweep over seed cannot also run over seeds; use --seeds alone to replicate a setting")
    if jobs > 1 or executor is not None:
        return _run_parallel(rows, key, out, log, jobs, executor)
    runs = []
    for v, cfg in rows:
        log(f"sweep: {key}={v}" + (f" over seeds {', '.join(map(str, cfg['seeds']))}" if cfg["seeds"] else ""))
        d = out / value_dir(key, v)
        m = (SeedRuns(cfg, d, log=log) if cfg["seeds"] else Experiment(cfg, d, log=log)).run()
        runs.append((v, cfg, m))
        results = summarize(runs, key, reference_index([x for x, _, _ in runs]))
        _write(results, key, out)
    return results


def _run_parallel(rows: list[tuple], key: str, out: Path, log, jobs: int, executor=None) -> list[dict]:
    from .parallel import Unit, clean_units, run_units, with_clean_first
    from .seeds import SeedRuns

    runners = [(v, cfg, SeedRuns(cfg, out / value_dir(key, v), log=log) if cfg["seeds"]
                else Experiment(cfg, out / value_dir(key, v), log=log)) for v, cfg in rows]
    units = [Unit(e.cfg, e.out) for _, _, r in runners for e in (r.runs if isinstance(r, SeedRuns) else [r])]
    how = f"as {executor.kind} jobs" if executor is not None else f"{jobs} at a time"
    log(f"sweep: {len(units)} runs of {len(rows)} values of {key}, {how}")
    if executor is not None:  # a cluster: the clean encoders as one job array, then the runs
        failed = run_units(clean_units(units), log=log, name="sweep (clean encoders)", executor=executor).failed
        failed += run_units(units, log=log, name="sweep", executor=executor).failed
    else:
        failed = run_units(with_clean_first(units), jobs, log, name="sweep").failed
    if failed:
        raise UserError("; ".join(f"{d}: {why}" for d, why in failed))
    runs = [(v, cfg, r.combine_finished() if isinstance(r, SeedRuns) else json.loads(r.dir.metrics.read_text()))
            for v, cfg, r in runners]
    results = summarize(runs, key, reference_index([x for x, _, _ in runs]))
    _write(results, key, out)
    return results


MAX_DIR_NAME = 80


def value_dir(key: str, value) -> str:
    """The folder of one value, inside ``--out``: ``<key>=<value>`` where that is a plain name
    (letters, digits, ``._=-``, no ``..``, at most :data:`MAX_DIR_NAME` characters); otherwise the
    same with every other character replaced by ``_``, cut, and a hash of the whole text appended
    (``data_root=_.._.._escape-3f2a9c1b``), so that no value names a folder elsewhere. sweep.csv
    keeps the value's own text."""
    import hashlib
    import re

    name = f"{key}={value}"
    safe = re.sub(r"[^A-Za-z0-9._=-]", "_", name).replace("..", "_.")
    if safe == name and len(name) <= MAX_DIR_NAME and not name.startswith("."):
        return name
    return f"{safe[:MAX_DIR_NAME - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def reference_index(values: list) -> int:
    """The value every other value is compared with: ``none`` (no defense) if present, else the first."""
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and v.lower() == "none"):
            return i
    return 0


def summarize(runs: list[tuple], key: str, ref: int = 0) -> list[dict]:
    """One flat row per value (the columns of sweep.csv) from ``(value, cfg, metrics)``; the paired
    comparison with ``runs[ref]`` where both ran on the same target inputs."""
    ref_value, ref_cfg, ref_m = runs[ref]
    ref_t = outcomes(ref_m, ref_cfg["seed"])
    results = []
    for v, cfg, m in runs:
        iv, mg, o = m.get("intervals", {}), m.get("margins"), m.get("over_seeds")
        r = {key: v}
        for k in ("CA", "PA", "ASR", "clean_ASR"):
            r[k] = m[k]
            x = iv.get(k) or {}
            r[f"{k}_k"], r[f"{k}_n"] = x.get("k"), x.get("n")
            r[f"{k}_lo"], r[f"{k}_hi"] = (x["ci95"] if x.get("ci95") else (None, None))
        r.update(rates_of(m))
        r["num_targets"] = m["num_targets"]
        r["seeds"] = " ".join(str(s) for s in m.get("seeds", [cfg["seed"]]))
        sm = (o or {}).get("ASR") or {}
        r["ASR_seed_mean"] = sm.get("mean") if o else None
        r["ASR_seed_lo"], r["ASR_seed_hi"] = (sm["ci95"] if o and sm.get("ci95") else (None, None))
        for e in ("clean", "poisoned"):
            for sc, name in (("margin", "margin"), ("target_prob", "prob"), ("target_rank", "rank")):
                r[f"{name}_{e}"] = mg[e][sc]["mean"] if mg else None
        pm = mg["poisoned"]["margin"] if mg else {}
        r["margin_poisoned_lo"], r["margin_poisoned_hi"] = (pm["ci95"] if pm.get("ci95") else (None, None))
        r["cosine_clean"] = _mean(t["mean_cosine_clean"] for t in m["tasks"])
        r["cosine_poisoned"] = _mean(t["mean_cosine_poisoned"] for t in m["tasks"])
        r["reference"] = ref_value
        r.update(paired(ref_t, outcomes(m, cfg["seed"])) if not (v is ref_value and cfg is ref_cfg) else paired({}, {}))
        r.update({f"defense_{k}": m.get("defense", {}).get(k) for k in ("removed", "precision", "recall", "clean_data_used")})
        results.append(r)
    return results


def _ci(r: dict, k: str, nd: int = 3) -> str:
    if r.get(k) is None:
        return "-"
    lo, hi = r.get(f"{k}_lo"), r.get(f"{k}_hi")
    return fmt_ci(r[k], [lo, hi] if lo is not None else None, nd)


def _rate_count(r: dict, k: str) -> str:
    """``0.20 [0.06, 0.51] (2/10)``."""
    if r.get(k) is None:
        return "-"
    cnt = f" ({r[k + '_k']}/{r[k + '_n']})" if r.get(k + "_n") is not None else ""
    return _ci(r, k, 2) + cnt


def _signed(r: dict, k: str, nd: int) -> str:
    """``+0.10 [-0.12, 0.33] p=0.480`` with ``*`` where p < 0.05."""
    if r.get(k) is None:
        return "-"
    ci = f" [{r[k + '_lo']:+.{nd}f}, {r[k + '_hi']:+.{nd}f}]" if r.get(k + "_lo") is not None else ""
    p = r.get(k + "_p")
    return f"{r[k]:+.{nd}f}{ci}" + (f" p={p:.3f}{' *' if p < ALPHA else ''}" if p is not None else "")


def markdown_table(results: list[dict], key: str) -> str:
    """The sweep as a Markdown table: CA, PA, ASR and the clean encoder's ASR with their 95% intervals,
    the margin, the paired differences against the reference value (``*``: significant at 0.05),
    the target-class cosine and, where a defense ran, what it removed, how well, and the clean data used."""
    def f(v, nd=3):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    defended = any(r.get("defense_removed") is not None or r.get("defense_clean_data_used") for r in results)
    seeds = any(r.get("ASR_seed_mean") is not None for r in results)
    ref = next((r.get("reference") for r in results if "reference" in r), None)
    head = [key, "CA [95% CI]", "PA [95% CI]", "ASR [95% CI] (k/n)", "clean ASR [95% CI] (k/n)"]
    if seeds:
        head += ["ASR mean of seeds [t]"]
    head += ["margin clean -> poisoned [95% CI]", f"Δ ASR vs {ref} [95% CI], McNemar p",
             f"Δ margin vs {ref} [95% CI], paired t p", "centred cos. (clean -> poisoned)"]
    if defended:
        head += ["removed", "precision", "recall", "clean data used"]
    head += ["poisoning rate: total", "per target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [str(r[key]), _ci(r, "CA"), _ci(r, "PA"), _rate_count(r, "ASR"), _rate_count(r, "clean_ASR")]
        if seeds:
            row += [_ci({"x": r.get("ASR_seed_mean"), "x_lo": r.get("ASR_seed_lo"), "x_hi": r.get("ASR_seed_hi")}, "x", 2)]
        margin = "-" if r.get("margin_poisoned") is None else f"{r['margin_clean']:.2f} -> {_ci(r, 'margin_poisoned', 2)}"
        is_ref = str(r[key]) == str(ref) and r.get("dASR") is None
        row += [margin, "(reference)" if is_ref else _signed(r, "dASR", 2), "(reference)" if is_ref else _signed(r, "dmargin", 2),
                f"{f(r.get('cosine_clean'), 2)} -> {f(r.get('cosine_poisoned'), 2)}"]
        if defended:
            row += [f(r.get("defense_removed")), f(r.get("defense_precision")), f(r.get("defense_recall")),
                    f(r.get("defense_clean_data_used"))]
        row += [f(r.get("poisoning_rate"), 4), f(r.get("poisoning_rate_per_target"), 4)]
        lines.append("| " + " | ".join(row) + " |")
    n = next((r.get("paired_n") for r in results if r.get("paired_n")), None)
    lines += ["", f"Rates: value [95% Wilson interval] (k/n){', pooled over seeds' if seeds else ''}. "
              f"Δ: paired difference against `{key}={ref}` over the same {n or ''} target inputs "
              "(same seeds, target inputs and target classes): ASR with Newcombe's interval and McNemar's exact p, "
              f"mean margin with a paired t interval; * marks p < {ALPHA}. "
              "Margin: target-class logit minus the largest other logit (mean over target inputs)."]
    return "\n".join(lines) + "\n"


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return round(sum(v) / len(v), 4) if v else None


def _write(results: list[dict], key: str, out: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(results[0]))
    w.writeheader()
    w.writerows(results)
    write_text(out / "sweep.csv", buf.getvalue())
    write_text(out / "sweep.md", markdown_table(results, key))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[key] for r in results]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    cosine = all(r.get("cosine_poisoned") is not None for r in results)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    if numeric:  # error bars: 95% Wilson intervals
        ax.errorbar(xs, [r["ASR"] for r in results], yerr=_yerr(results, "ASR"), fmt="o-", capsize=3,
                    label="ASR (poisoned encoder)")
        ax.errorbar(xs, [r["clean_ASR"] for r in results], yerr=_yerr(results, "clean_ASR"), fmt="s--", capsize=3,
                    label="ASR of the clean encoder")
        ax.errorbar(xs, [r["PA"] for r in results], yerr=_yerr(results, "PA"), fmt="^:", capsize=3, label="PA")
        ax.errorbar(xs, [r["CA"] for r in results], yerr=_yerr(results, "CA"), fmt="v:", capsize=3, label="CA")
        if cosine:  # the finer signal when ASR sits at its floor (few target inputs)
            ax.plot(xs, [r["cosine_poisoned"] for r in results], "d-.", label="target-class cosine (poisoned)")
        if min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
    else:  # categories (attacks, algorithms, defenses): bars of ASR and PA, the clean encoder's ASR as chance line
        pos = list(range(len(xs)))
        ax.bar([p - 0.2 for p in pos], [r["ASR"] for r in results], 0.4, yerr=_yerr(results, "ASR"), capsize=3,
               label="ASR (poisoned encoder)")
        ax.bar([p + 0.2 for p in pos], [r["PA"] for r in results], 0.4, yerr=_yerr(results, "PA"), capsize=3, label="PA")
        for p, r in zip(pos, results, strict=True):
            ax.hlines(r["clean_ASR"], p - 0.4, p + 0.4, colors="k", linestyles="--",
                      label="ASR of the clean encoder (chance)" if p == 0 else None)
        ax.errorbar([p - 0.3 for p in pos], [r["clean_ASR"] for r in results], yerr=_yerr(results, "clean_ASR"),
                    fmt="none", ecolor="k", capsize=2, lw=0.8)
        labels = [str(x) for x in xs]
        long = sum(map(len, labels)) > 6 * len(labels)  # would overlap side by side
        ax.set_xticks(pos, labels, rotation=25 if long else 0, ha="right" if long else "center")
    ax.set_xlabel(key)
    _save(fig, ax, out / "sweep.png")
    if not numeric:
        _tradeoff(results, key, cosine, out / "sweep_tradeoff.png")


def _tradeoff(results: list[dict], key: str, cosine: bool, path: Path) -> None:
    """ASR against utility (PA), one point per value; beside it the target inputs' centred cosine
    to their target classes and their mean margin against PA, which still separate values when ASR
    is at its floor. Error bars: 95% intervals (Wilson for rates, t for the margin)."""
    import matplotlib.pyplot as plt

    panels = [("ASR", "ASR", "clean_ASR", "ASR of the clean encoder")]
    if cosine:
        panels.append(("cosine_poisoned", "target-class cosine (centred)",
                       "cosine_clean", "clean encoder"))
    if all(r.get("margin_poisoned") is not None for r in results):  # with its 95% t interval over target inputs
        panels.append(("margin_poisoned", "target-class margin (logit)", "margin_clean", "clean encoder"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), dpi=120, squeeze=False)
    for ax, (col, label, chance, chance_label) in zip(axes[0], panels, strict=True):
        seen: dict = {}
        for r in results:
            ax.errorbar(r["PA"], r[col], xerr=_yerr([r], "PA"), yerr=_yerr([r], col), fmt="o", ms=5, capsize=2)
            at = (round(r["PA"], 3), round(r[col], 2))  # labels of coinciding points stack downwards
            seen[at] = seen.get(at, -1) + 1
            ax.annotate(str(r[key]), (r["PA"], r[col]), textcoords="offset points",
                        xytext=(4, 4 - 9 * seen[at]), fontsize=7)
        ax.axhline(max(r[chance] for r in results), color="k", ls="--", lw=0.8, label=chance_label)
        ax.set_xlabel("PA (utility of the poisoned or defended encoder)")
        ax.set_ylabel(label)
        if col == "cosine_poisoned":
            top = max(max(r[col] for r in results), max(r[chance] for r in results))
            ax.set_ylim(min(0.0, min(r[col] for r in results)) - 0.02, top * 1.25 + 0.02)
    _save(fig, axes[0][0], path, panels=axes[0][1:])


def _yerr(results: list[dict], k: str):
    """Error bar lengths below and above each value from its 95% interval (0 where none is known)."""
    lo = [max(0.0, r[k] - r[f"{k}_lo"]) if r.get(f"{k}_lo") is not None else 0.0 for r in results]
    hi = [max(0.0, r[f"{k}_hi"] - r[k]) if r.get(f"{k}_hi") is not None else 0.0 for r in results]
    return [lo, hi]


def _save(fig, ax, path: Path, panels=()) -> None:
    import matplotlib.pyplot as plt

    ax.set_ylim(-0.02, 1.02)
    for a in (ax, *panels):
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
