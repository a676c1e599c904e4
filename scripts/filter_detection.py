"""How well each pre-processing filter finds each attacker variant's poisoning inputs, without training.

For every seed of a recipe and every attacker variant (settings of ``attack.poisonedencoder``), craft
the poisoning inputs (or reuse a craft in OUT), run each filter on the recipe's whole pre-training
set (clean inputs and poisoning inputs) and score its verdicts against the ground truth. Counts
are pooled over seeds: recall = flagged poisoning inputs / poisoning inputs, precision = flagged
poisoning inputs / flagged inputs, each with its 95% Wilson interval over inputs (which treats the
inputs as independent, though 40 share a target input and a seed's inputs share an encoder: the
recall of each seed is listed beside it). A filter that needs an
encoder (``crop_disagreement``) gets the seed's shared clean encoder, which must be in the cache
already (``poisonedencoder pretrain RECIPE --seeds ...`` or any finished run of the recipe trains it).

What it does that ``scripts/detection_curves.py`` (detection curves with thresholds set without
labels) does not: the verdicts as the pipeline's defenses draw them in a run, crop_disagreement at
the oracle's budget (the true share of poisoning inputs), and the ``--variation`` sweep of
``target_variation``, as the arms race in docs/CLAIMS.md reports them.

This measures detection only: what the attack achieves against a filter needs the pre-training
runs of the claims table's race arms (``poisonedencoder claims RECIPE --only race``).

    python scripts/filter_detection.py configs/digits_works.yaml --out runs/filter_detection
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

VARIANTS = {"paper": [], "square": ["attack.poisonedencoder.shape=square"],
            "varied": ["attack.poisonedencoder.target_variation=0.5"],
            "square_varied": ["attack.poisonedencoder.shape=square", "attack.poisonedencoder.target_variation=0.5"]}
FILTERS = {"aspect_ratio": [], "part_hash": [], "crop_disagreement": ["defense.crop_disagreement.budget={share}"]}


def measure(recipe: str, out: Path, variants: list[str], filters: list[str], log=print) -> list[dict]:
    """One row per variant x filter, counts pooled over the recipe's seeds."""
    from poisonedencoder import config as C
    from poisonedencoder.attack.export import load_poisons
    from poisonedencoder.defenses import build_defense
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.experiment.pipeline import Experiment
    from poisonedencoder.ssl.pretrain import load_backbone
    from poisonedencoder.experiment.stages import clean_encoder_dir
    from poisonedencoder.core.stats import rate

    user = C.load_yaml(recipe)
    seeds = C.resolve(user)["seeds"] or [C.resolve(user)["seed"]]
    counts: dict[tuple[str, str], np.ndarray] = {}
    per_seed: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        for v in variants:
            cfg = C.resolve(user, [f"seed={seed}", "seeds=null", *VARIANTS[v]])
            exp = Experiment(cfg, out / v / f"seed_{seed}", log=lambda _: None)
            exp.craft()
            clean = exp.data.clean_pretrain_images()
            _, poisons = load_poisons(exp.dir.poisons)
            images = list(clean) + list(poisons)
            truth = np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]
            share = len(poisons) / len(images)
            for f in filters:
                over = [o.format(share=f"{share:.4f}") for o in FILTERS[f]]
                defense = build_defense(C.resolve(user, [f"defense.name={f}", *over])["defense"])
                if defense.needs_encoder:
                    enc = clean_encoder_dir(cfg) / "encoder.pt"
                    if not enc.exists():
                        raise UserError(f"seed {seed}: no cached clean encoder at {enc}; train it first "
                                        f"(poisonedencoder pretrain {recipe} --seeds {seed})")
                    report = defense.filter(images, encoder=load_backbone(enc, cfg["pretrain"]))
                else:
                    report = defense.filter(images)
                flagged = report.verdicts
                tp = int((flagged & truth).sum())
                c = counts.setdefault((v, f), np.zeros(4, int))
                c += [tp, int(truth.sum()), int(flagged.sum()), len(images)]
                per_seed.setdefault((v, f), []).append(tp / int(truth.sum()))
                log(f"seed {seed} {v:14s} {f:18s} recall {tp}/{int(truth.sum())}, flagged {int(flagged.sum())}")
    rows = []
    for (v, f), (tp, pos, flagged, n) in counts.items():
        r, p = rate(tp, pos), rate(tp, flagged) if flagged else None
        rows.append({"variant": v, "filter": f, "seeds": len(seeds), "poisoning_inputs": int(pos), "inputs": int(n),
                     "flagged": int(flagged), "recall": r["value"], "recall_lo": r["ci95"][0], "recall_hi": r["ci95"][1],
                     "precision": p["value"] if p else None, "precision_lo": p["ci95"][0] if p else None,
                     "precision_hi": p["ci95"][1] if p else None,
                     "recall_per_seed": " ".join(f"{x:.2f}" for x in per_seed[(v, f)])})
    return rows


def markdown(rows: list[dict]) -> str:
    def fmt(k, n, lo, hi):
        return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]" if n else "none flagged"

    out = ["| attacker | filter | recall (95% interval) | recall per seed | precision (95% interval) |", "|---|---|---|---|---|"]
    for r in rows:
        tp = round(r["recall"] * r["poisoning_inputs"])
        out.append(f"| {r['variant']} | {r['filter']} | {fmt(tp, r['poisoning_inputs'], r['recall_lo'], r['recall_hi'])} | "
                   f"{r['recall_per_seed']} | "
                   + (fmt(tp, r["flagged"], r["precision_lo"], r["precision_hi"]) if r["flagged"] else "none flagged") + " |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe", help="a config file, e.g. configs/digits_works.yaml")
    ap.add_argument("--out", required=True, help="folder for the crafts and filter_detection.csv/.md")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--filters", default=",".join(FILTERS), help=f"comma-separated, of {', '.join(FILTERS)}")
    ap.add_argument("--variation", type=float, action="append", default=[],
                    help="also the attacker varied_S: target_variation S (in (0, 1]), repeatable: how recall falls as it grows")
    args = ap.parse_args(argv)
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.core.io import write_csv, write_text

    try:
        variants, filters = args.variants.split(","), args.filters.split(",")
        for v in args.variation:
            if not 0 < v <= 1:
                raise UserError(f"--variation must be in (0, 1], got {v}")
            VARIANTS[f"varied_{v:g}"] = [f"attack.poisonedencoder.target_variation={v:g}"]
            variants.append(f"varied_{v:g}")
        for name, chosen, known in (("variant", variants, VARIANTS), ("filter", filters, FILTERS)):
            bad = [x for x in chosen if x not in known]
            if bad:
                raise UserError(f"unknown {name} {bad[0]!r}; choose from {', '.join(known)}")
        out = Path(args.out)
        rows = measure(args.recipe, out, variants, filters)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_csv(out / "filter_detection.csv", rows)
    table = markdown(rows)
    write_text(out / "filter_detection.md", table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
