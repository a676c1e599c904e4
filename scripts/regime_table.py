"""One row per setting of a study: ASR, clean ASR, CA, PA and the per-target margin pooled over
the setting's seeds, beside what the setting spends (clean pre-training inputs, epochs, encoder
parameters, presentations of each target's poisoning inputs, copies of one target per batch,
pre-training seconds); paired comparisons against a reference setting on the target inputs both
share; optionally a plot of ASR and margin against one of the spending columns.

    python scripts/regime_table.py base=runs/study/base width32=runs/study/w32 \
        --ref base --x presentations --png docs/cifar10_regime.png --csv runs/study/table.csv

Each ``NAME=DIR[,DIR...]`` names finished runs: a run directory (``metrics.json``) or the output
of ``poisonedencoder run --seeds`` (its ``seed_<s>/`` folders are taken). Target inputs are
matched across settings by (seed, task, test index); settings with the same seeds draw the same
target inputs and reference inputs (they depend on the seed, not on the encoder).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from poisonedencoder.core.stats import logistic_fit


def run_dirs(spec: str) -> list[tuple[Path, Path, Path]]:
    """(metrics.json, config.yaml, run directory) of each finished run that ``spec`` names."""
    from poisonedencoder.experiment.rundir import RunDir

    out = []
    for part in spec.split(","):
        d = Path(part)
        seeds = [RunDir(p) for p in RunDir(d).finished_seed_dirs()]
        copied = sorted(d.glob("metrics_seed*.json"))
        if seeds:  # the output of run --seeds: its per-seed runs (its own metrics.json pools them)
            out.extend((r.metrics, r.config, r.path) for r in seeds)
        elif RunDir(d).metrics.is_file():
            out.append((RunDir(d).metrics, RunDir(d).config, d))
        elif copied:  # results copied back by benchmarks/gpu_attack.sh, each with a config_seed<S>.yaml beside it
            out.extend((m, d / m.name.replace("metrics_", "config_").replace(".json", ".yaml"), d) for m in copied)
        else:
            raise SystemExit(f"error: {d} holds no finished run (no metrics.json, no seed_*/metrics.json)")
    for _, cfg, _ in out:
        if not cfg.is_file():
            raise SystemExit(f"error: {cfg} does not exist (the run's configuration is needed beside its metrics)")
    return out


def _params(p: dict) -> int | None:
    """The backbone's parameters, counted on the architecture the config names (no weights loaded,
    so results copied without their encoders have it too)."""
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.ssl.models import build_backbone

    try:
        return sum(t.numel() for t in build_backbone(p["backbone"], p["width"]).parameters())
    except (UserError, KeyError):
        return None


def setting_row(name: str, runs: list[tuple[Path, Path, Path]]) -> dict:
    """The pooled row of one setting and its per-target records (for the paired comparisons)."""
    import yaml

    from poisonedencoder.studies.compare import asr, outcomes, pool
    from poisonedencoder.experiment.rundir import RunDir, encoder_seconds
    from poisonedencoder.core.stats import mean_ci, mean_of_rates, rate

    targets, parts, cas, pas, secs, cfgs, metrics, snaps = [], [], [], [], [], [], [], {}
    for metrics_path, config_path, run in runs:
        m = json.loads(metrics_path.read_text())
        cfg = yaml.safe_load(config_path.read_text())
        cfgs.append(cfg)
        metrics.append(m)
        for key, acc in (("CA", cas), ("PA", pas)):
            if "intervals" in m:
                acc.append(m["intervals"][key])
            else:  # metrics written before intervals existed: the count from the rate and the test inputs
                n = m["tasks"][0]["num_test_inputs"]
                acc.append(rate(round(m[key] * n), n))
        secs.append(encoder_seconds(RunDir(run).poisoned_encoder))
        parts.append(outcomes(m, seed=cfg["seed"]))
        for task in m["tasks"]:
            targets += task["targets"]
            for o in task.get("over_training") or []:
                k = o.get("intervals", {}).get("ASR", {}).get("k", round(o["ASR"] * len(task["targets"])))
                snaps.setdefault(o["epoch"], [0, 0])
                snaps[o["epoch"]][0] += int(k)
                snaps[o["epoch"]][1] += len(task["targets"])
    p, cfg, m = cfgs[0]["pretrain"], cfgs[0], metrics[0]
    n_targets = m["num_targets"]
    per_target = m["num_poisoning_inputs"] / max(1, n_targets)
    n_inputs = m["num_clean_inputs"] + m["num_poisoning_inputs"]
    pooled = pool(parts)  # target inputs by (seed, task, test index, target class): one in two runs is an error
    margins = [t["poisoned_margin"] for t in targets if "poisoned_margin" in t]
    clean_margins = [t["clean_margin"] for t in targets if "clean_margin" in t]
    ca, pa = mean_of_rates(cas), mean_of_rates(pas)  # one seed: its own rate
    gap = mean_ci([c["value"] - q["value"] for c, q in zip(cas, pas, strict=True)])
    return {
        "setting": name,
        "seeds": ",".join(str(c["seed"]) for c in cfgs),
        "algorithm": p["algorithm"], "backbone": p["backbone"], "width": FIXED_WIDTH.get(p["backbone"], p["width"]),
        "clean_inputs": m["num_clean_inputs"], "targets_per_run": n_targets,
        "poisons_per_target": per_target, "rate_per_target": per_target / m["num_clean_inputs"],
        "epochs": p["epochs"], "batch_size": p["batch_size"],
        "presentations": per_target * p["epochs"],
        "copies_per_batch": p["batch_size"] * per_target / n_inputs,
        "image_epochs": n_inputs * p["epochs"],
        "params": _params(p),
        "classifier": cfg["downstream"]["classifier"],
        "layout": cfg["attack"].get("layout") or (cfg["attack"].get("poisonedencoder") or {}).get("layout"),  # today: attack.poisonedencoder.layout
        "pretrain_poisoned_s": (sum(s for s in secs if s) / len([s for s in secs if s])) if any(secs) else None,
        "ASR": asr(pooled) if pooled else None,
        "clean_ASR": asr(pooled, clean=True) if pooled else None,
        "CA": ca, "PA": pa, "CA_minus_PA": gap,
        "margin_poisoned": mean_ci(margins), "margin_clean": mean_ci(clean_margins),
        "_outcomes": pooled,
        # ASR of the poisoned encoder's snapshots (pre-training stopped at that epoch), pooled over seeds
        "_snapshots": {e: kn for e, kn in sorted(snaps.items()) if kn[1] == len(targets)},
    }


def versus(ref: dict, other: dict) -> dict | None:
    """``other - ref`` on the target inputs both settings share, paired by
    :func:`poisonedencoder.studies.compare.paired` (ASR: Newcombe's interval and McNemar's exact p; the
    poisoned encoder's margin: a paired t interval). Margins of two different downstream
    classifiers are on different scales: such settings are compared on ASR alone."""
    from poisonedencoder.studies.compare import Outcome, paired

    keys = set(ref["_outcomes"]) & set(other["_outcomes"])
    if not keys:
        return None
    a = {k: ref["_outcomes"][k] for k in keys}
    b = {k: other["_outcomes"][k] for k in keys}
    if ref["classifier"] != other["classifier"]:
        a, b = ({k: Outcome(o.flipped, None, o.clean_flipped) for k, o in d.items()} for d in (a, b))
    return {"setting": other["setting"], "ref": ref["setting"], "n": len(keys), **paired(a, b)}


FIXED_WIDTH = {"resnet18": 64}
"""Backbones that ignore ``pretrain.width``: the width they have."""


def encoder_name(r: dict) -> str:
    """``cnn7/16``, ``resnet18w/16``; ``resnet18`` (the paper's widths) as it is."""
    return r["backbone"] + ("" if r["backbone"] in FIXED_WIDTH else f"/{r['width']}")


def family(r: dict) -> str:
    """The encoder family a row's points are fitted in: backbone (with its width where pretrain.width sets it), and the
    downstream classifier when it is not the MLP (the same encoders judged twice are not two points)."""
    return encoder_name(r) + \
        ("" if r["classifier"] == "mlp" else f" ({r['classifier']})")


def fit_points(rows: list[dict], x: str, snapshots: bool) -> dict[str, list[tuple[float, int, int]]]:
    """(x, successes, targets) per encoder family (backbone and width): each setting's final ASR and,
    with ``snapshots``, its snapshots' (x scaled by epoch / epochs: presentations, image epochs)."""
    groups: dict[str, list] = {}
    for r in rows:
        fam = family(r)
        pts = groups.setdefault(fam, [])
        if snapshots and x in ("presentations", "image_epochs", "epochs"):
            for e, (k, n) in r["_snapshots"].items():
                if e != r["epochs"]:
                    pts.append((r[x] * e / r["epochs"], k, n))
        pts.append((r[x], r["ASR"]["k"], r["ASR"]["n"]))
    return groups


def _f(x, digits=3):
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def _r(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "-"
    return f"{r['k']}/{r['n']} = {r['value']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


def _m(m: dict) -> str:
    if m.get("mean") is None:
        return "-"
    return f"{m['mean']:+.2f}" + (f" [{m['ci95'][0]:+.2f}, {m['ci95'][1]:+.2f}]" if m.get("ci95") else "")


def markdown(rows: list[dict], comps: list[dict]) -> str:
    lines = ["| setting | seeds | clean inputs | width | epochs | per target | presentations | copies/batch | "
             "poisoned pre-train s | ASR | clean ASR | CA | PA | margin clean -> poisoned |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seeds']} | {r['clean_inputs']} | {encoder_name(r)} | {r['epochs']} | "
                     f"{r['poisons_per_target']:.0f} ({100 * r['rate_per_target']:.1f}%) | {r['presentations']:.0f} | "
                     f"{r['copies_per_batch']:.1f} | {_f(r['pretrain_poisoned_s'], 0) if r['pretrain_poisoned_s'] else '-'} | "
                     f"{_r(r['ASR'])} | {_r(r['clean_ASR'])} | {r['CA']['value']:.3f} | {r['PA']['value']:.3f} | "
                     f"{_m(r['margin_clean'])} -> {_m(r['margin_poisoned'])} |")
    if comps:
        lines += ["", "| setting - reference | shared targets | ASR difference [95%] | McNemar p | "
                  "margin difference [95%] | paired t p |", "|---|---|---|---|---|---|"]
        for c in comps:
            mg = {"mean": c["dmargin"], "ci95": None if c["dmargin_lo"] is None else [c["dmargin_lo"], c["dmargin_hi"]]}
            lines.append(f"| {c['setting']} - {c['ref']} | {c['n']} | {c['dASR']:+.2f} [{c['dASR_lo']:+.2f}, "
                         f"{c['dASR_hi']:+.2f}] | {_f(c['dASR_p'])} | {_m(mg)} | {_f(c['dmargin_p'])} |")
    return "\n".join(lines)


def plot(rows: list[dict], x: str, path: Path, fits: dict | None = None, points: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from poisonedencoder.core.io import atomic_write

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        xv = r[x]
        asr = r["ASR"]
        a1.errorbar([xv], [asr["value"]], yerr=[[asr["value"] - asr["ci95"][0]], [asr["ci95"][1] - asr["value"]]],
                    fmt="o", capsize=3)
        a1.annotate(r["setting"], (xv, asr["value"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        m = r["margin_poisoned"]
        if m.get("mean") is not None and r["classifier"] == "mlp":  # other classifiers' logits: other scales
            err = [[m["mean"] - m["ci95"][0]], [m["ci95"][1] - m["mean"]]] if m.get("ci95") else None
            a2.errorbar([xv], [m["mean"]], yerr=err, fmt="o", capsize=3)
            a2.annotate(r["setting"], (xv, m["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    import numpy as np

    for fam, pts in (points or {}).items():
        xs = [p[0] for p in pts]
        a1.scatter(xs, [p[1] / p[2] for p in pts], marker="x", s=18, alpha=0.6, label=f"{fam}: snapshots")
        f = (fits or {}).get(fam)
        if f:
            grid = np.geomspace(min(xs) / 2, max(max(xs) * 2, f["x_goal"] or 0), 100)
            a1.plot(grid, 1 / (1 + np.exp(-(f["a"] + f["b"] * np.log2(grid)))), lw=1, label=f"{fam} logistic fit")
    if points:
        a1.legend(fontsize=7)
    from matplotlib.ticker import NullFormatter

    for a, label in ((a1, "ASR (95% Wilson)"), (a2, "poisoned encoder's margin, MLP (95% t)")):
        a.set_xlabel(x.replace("_", " "))
        a.set_ylabel(label)
        if all(r[x] and r[x] > 0 for r in rows) and (fits or max(r[x] for r in rows) / max(1e-9, min(r[x] for r in rows)) > 20):
            a.set_xscale("log")
            a.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
        a.grid(alpha=0.3)
    a1.set_ylim(-0.02, 1.02)
    a2.axhline(0, color="k", lw=0.8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", metavar="NAME=DIR[,DIR...]")
    ap.add_argument("--ref", help="setting to compare every other setting with (paired, shared target inputs)")
    ap.add_argument("--csv", help="write the rows as CSV")
    ap.add_argument("--json", help="write rows and comparisons as JSON")
    ap.add_argument("--png", help="plot ASR and margin against --x")
    ap.add_argument("--x", default="presentations",
                    help="x axis of the plot: presentations, image_epochs, params, epochs, clean_inputs, width, "
                         "copies_per_batch, targets_per_run, pretrain_poisoned_s")
    ap.add_argument("--fit", action="store_true",
                    help="fit ASR against log2 of --x per encoder family; print where it reaches --goal")
    ap.add_argument("--goal", type=float, default=0.8, help="ASR the fit is asked about (default 0.8)")
    ap.add_argument("--point", action="append", default=[], metavar="FAMILY=X:K/N",
                    help="a recorded result whose runs are not at hand, e.g. 'cnn7/16=15000:6/30' (fit and plot only)")
    ap.add_argument("--snapshots", action="store_true", help="with --fit / --png: add the runs' snapshot ASRs as points")
    args = ap.parse_args(argv)
    rows = []
    for s in args.settings:
        if "=" not in s:
            raise SystemExit(f"error: {s!r} must look like NAME=DIR[,DIR...]")
        name, dirs = s.split("=", 1)
        rows.append(setting_row(name, run_dirs(dirs)))
    comps = []
    if args.ref:
        ref = [r for r in rows if r["setting"] == args.ref]
        if not ref:
            raise SystemExit(f"error: --ref {args.ref!r} is not one of the settings")
        comps = [c for r in rows if r is not ref[0] and (c := versus(ref[0], r))]
    if args.x not in rows[0]:
        raise SystemExit(f"error: --x {args.x!r} is not a column")
    print(markdown(rows, comps))
    points = fit_points(rows, args.x, args.snapshots) if (args.fit or args.snapshots or args.point) else None
    for spec in args.point:
        try:
            fam, rest = spec.split("=", 1)
            xv, kn = rest.split(":")
            k, n = (int(v) for v in kn.split("/"))
            points.setdefault(fam, []).append((float(xv), k, n))
        except ValueError:
            raise SystemExit(f"error: --point {spec!r} must look like FAMILY=X:K/N, e.g. cnn7/16=15000:6/30") from None
    fits = {}
    if args.fit:
        print(f"\n| encoder | points | fit: ASR = 1/(1+exp(-(a + b log2 {args.x}))) | {args.x} at ASR {args.goal} [95%] |")
        print("|---|---|---|---|")
        for fam, pts in points.items():
            fits[fam] = f = logistic_fit(pts, args.goal)
            if f is None:
                print(f"| {fam} | {len(pts)} | - (fewer than 3 values of {args.x}) | - |")
                continue
            at = "- (ASR does not rise measurably: slope interval includes 0)" if f["x_goal"] is None else \
                f"{f['x_goal']:.0f} [{f['x_goal_ci95'][0]:.0f}, {f['x_goal_ci95'][1]:.0f}]"
            print(f"| {fam} | {len(pts)} | a = {f['a']:.2f}, b = {f['b']:.2f} [{f['b_ci95'][0]:.2f}, {f['b_ci95'][1]:.2f}] | {at} |")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if args.csv:
        from poisonedencoder.core.io import write_text

        flat = []
        for r in public:
            f = {}
            for k, v in r.items():
                if isinstance(v, dict):
                    val = v.get("value", v.get("mean"))
                    f[k] = val
                    if v.get("ci95"):
                        f[f"{k}_lo"], f[f"{k}_hi"] = v["ci95"]
                    if "k" in v:
                        f[f"{k}_k"], f[f"{k}_n"] = v["k"], v["n"]
                else:
                    f[k] = v
            flat.append(f)
        keys = list(dict.fromkeys(k for f in flat for k in f))
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(flat)
        write_text(args.csv, buf.getvalue())
    if args.json:
        from poisonedencoder.core.io import write_json

        write_json(args.json, {"rows": public, "comparisons": comps, "fits": fits})
    if args.png:
        plot(rows, args.x, Path(args.png), fits, points)
    return 0


if __name__ == "__main__":
    sys.exit(main())
