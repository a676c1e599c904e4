"""Detection curves of the pre-processing filters on crafted pre-training sets, with no oracle.

For every seed of a recipe, attacker variant and poisoning rate, craft the poisoning inputs (or
reuse a craft in OUT), put them beside the recipe's clean pre-training inputs, score every input
with each filter (``poisonedencoder.scan``'s :func:`filter_scores`) and compare with the truth
(:func:`detection`). ``crop_disagreement`` scores with each chosen encoder: ``clean`` (the seed's
clean encoder of the recipe, from the shared cache, trained there when missing) and ``self`` (an
encoder self-trained on the crafted set itself, poisoning inputs included, as ``scan --train``
trains it, ``--self-epochs`` epochs); ``part_hash`` and ``aspect_ratio`` need none. Its verdicts
come from a threshold set for a false-positive rate of ``--fpr`` without labels (the robust
z-score of the scores; ``scan``'s default). Pooled over the seeds: AUROC as the mean over seeds
with its t interval (and each seed's); TPR at FPR 1% and 5% (each seed's threshold at its own
clean quantile), and precision, recall and the realised FPR at the threshold, as counts summed
over seeds with Wilson intervals (which treat inputs as independent, though 40 share a target
input). Writes ``OUT/detection.csv``, ``OUT/detection.md`` and ``OUT/detection.json``.

    python scripts/detection_curves.py configs/digits_works.yaml --out runs/detection
    python scripts/detection_curves.py configs/digits_works.yaml --out runs/detection_eurosat \\
        --set pretrain_data.dataset=eurosat --set "tasks=[{dataset: eurosat, num_targets: 10}]" --encoders none
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

VARIANTS = {"paper": [], "square": ["attack.poisonedencoder.shape=square"],
            "varied": ["attack.poisonedencoder.target_variation=0.5"],
            "square_varied": ["attack.poisonedencoder.shape=square", "attack.poisonedencoder.target_variation=0.5"]}
ENCODERS = ("clean", "self", "none")


def _encoder(kind: str, cfg: dict, exp, images, work: Path, epochs: int, log):
    """The crop_disagreement encoder ``kind`` for one crafted set, and a line saying what it is."""
    from poisonedencoder.experiment.pretraining import clean_encoder
    from poisonedencoder.scan.encoders import train_encoder
    from poisonedencoder.ssl.pretrain import load_backbone

    if kind == "clean":
        path = clean_encoder(cfg, exp.data, lambda _: None)  # its encoder.pt, trained in the shared cache if missing
        return load_backbone(path, cfg["pretrain"]).eval(), (
            f"the seed's clean encoder ({cfg['pretrain']['backbone']}, {cfg['pretrain']['epochs']} epochs)")
    enc, info = train_encoder(images, work, cfg["pretrain"]["image_size"], epochs=epochs, log=log)
    return enc, f"self-trained on the set ({info['backbone']}/{info['width']}, {info['epochs_done']} epochs)"


def measure(recipe: str, out: Path, overrides: list[str], variants: list[str], rates: list[float | None],
            encoders: list[str], fpr: float, self_epochs: int, log=print) -> list[dict]:
    """One row per rate x variant x filter (x encoder for crop_disagreement), pooled over seeds."""
    from poisonedencoder import config as C
    from poisonedencoder.attack.export import load_poisons
    from poisonedencoder.experiment.pipeline import Experiment
    from poisonedencoder.scan import detection, filter_scores, own_verdicts, threshold_verdicts

    user = C.load_yaml(recipe)
    base = C.resolve(user, overrides)
    seeds = base["seeds"] or [base["seed"]]
    rates = list(dict.fromkeys(base["attack"]["poisoning_rate"] if r is None else r for r in rates))  # 'recipe' may repeat one
    per: dict[tuple, list[dict]] = {}
    what: dict[tuple, str] = {}
    for rate in rates:
        rate_over = [f"attack.poisoning_rate={rate}"] if rate is not None else []
        for v in variants:
            for seed in seeds:
                cfg = C.resolve(user, [*overrides, *rate_over, f"seed={seed}", "seeds=null", *VARIANTS[v]])
                tag = f"rate_{cfg['attack']['poisoning_rate']:g}/{v}/seed_{seed}"
                exp = Experiment(cfg, out / tag, log=lambda _: None)
                exp.craft()
                clean = list(exp.data.clean_pretrain_images())
                _, poisons = load_poisons(exp.dir.poisons)
                images, truth = clean + list(poisons), np.r_[np.zeros(len(clean), bool), np.ones(len(poisons), bool)]
                share = len(poisons) / len(images)
                jobs = [("part_hash", "none"), ("aspect_ratio", "none")] if "none" in encoders else []
                jobs += [("crop_disagreement", e) for e in encoders if e != "none"]
                for f, e in jobs:
                    if f == "crop_disagreement":
                        enc, desc = _encoder(e, cfg, exp, images, out / tag / f"encoder_{e}", self_epochs, log)
                        s = filter_scores(f, images, enc, size=cfg["pretrain"]["image_size"])
                        verdicts, _ = threshold_verdicts(s, fpr)
                    else:
                        s = filter_scores(f, images)
                        verdicts, _ = own_verdicts(f, s)
                        desc = "no encoder"
                    key = (round(len(poisons) / len(clean), 4), round(share, 4), v, f, e)
                    per.setdefault(key, []).append(detection(s, truth, verdicts=verdicts))
                    what[key] = desc
                    d = per[key][-1]
                    log(f"{tag} {f}/{e}: AUROC {d['auroc']['value']:.3f}, recall {d['at_threshold']['recall']['k']}/"
                        f"{d['at_threshold']['recall']['n']}, flagged {d['at_threshold']['flagged']}")
    return [_pool(k, ds, what[k]) for k, ds in per.items()]


def _pool(key: tuple, ds: list[dict], desc: str) -> dict:
    from poisonedencoder.core.stats import mean_ci, rate

    rate_clean, share, v, f, e = key
    au = mean_ci([d["auroc"]["value"] for d in ds])
    if au.get("ci95"):  # an AUROC lies in [0, 1]: so does its interval
        au["ci95"] = [max(0.0, au["ci95"][0]), min(1.0, au["ci95"][1])]
    row = {"rate_of_clean_set": rate_clean, "share_of_pretraining_set": share, "variant": v, "filter": f, "encoder": e,
           "encoder_detail": desc, "seeds": len(ds), "auroc": au["mean"],
           "auroc_lo": (au.get("ci95") or [None, None])[0], "auroc_hi": (au.get("ci95") or [None, None])[1],
           "auroc_per_seed": " ".join(f"{d['auroc']['value']:.3f}" for d in ds)}
    for goal in ("0.01", "0.05"):
        tp = sum(d["tpr_at_fpr"][goal]["tpr"]["k"] for d in ds)
        n = sum(d["tpr_at_fpr"][goal]["tpr"]["n"] for d in ds)
        r = rate(tp, n)
        row.update({f"tpr_at_fpr_{goal}": r["value"], f"tpr_at_fpr_{goal}_k": tp, f"tpr_at_fpr_{goal}_n": n,
                    f"tpr_at_fpr_{goal}_lo": r["ci95"][0], f"tpr_at_fpr_{goal}_hi": r["ci95"][1]})
    for m in ("precision", "recall", "fpr"):
        k = sum(d["at_threshold"][m]["k"] for d in ds)
        n = sum(d["at_threshold"][m]["n"] for d in ds)
        r = rate(k, n) if n else {"value": None, "ci95": [None, None]}
        row.update({m: r["value"], f"{m}_k": k, f"{m}_n": n, f"{m}_lo": r["ci95"][0], f"{m}_hi": r["ci95"][1]})
    return row


def markdown(rows: list[dict]) -> str:
    def c(r, m):
        if r[m] is None:
            return "none flagged" if m == "precision" else "-"
        return f"{r[m + '_k']}/{r[m + '_n']} = {r[m]:.2f} [{r[m + '_lo']:.2f}, {r[m + '_hi']:.2f}]"

    def t(r, g):
        return (f"{r[f'tpr_at_fpr_{g}_k']}/{r[f'tpr_at_fpr_{g}_n']} = {r[f'tpr_at_fpr_{g}']:.2f} "
                f"[{r[f'tpr_at_fpr_{g}_lo']:.2f}, {r[f'tpr_at_fpr_{g}_hi']:.2f}]")

    out = ["| poisoning inputs (of the clean set; of the pre-training set) | attacker | filter | encoder | AUROC "
           "(mean of seeds, 95% t) | per seed | TPR at FPR 1% | TPR at FPR 5% | at the threshold: recall | precision "
           "| realised FPR |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        au = f"{r['auroc']:.3f}" + (f" [{r['auroc_lo']:.3f}, {r['auroc_hi']:.3f}]" if r["auroc_lo"] is not None else "")
        out.append(f"| {100 * r['rate_of_clean_set']:.1f}%; {100 * r['share_of_pretraining_set']:.1f}% | {r['variant']} | "
                   f"{r['filter']} | {r['encoder']} | {au} | {r['auroc_per_seed']} | {t(r, '0.01')} | {t(r, '0.05')} | "
                   f"{c(r, 'recall')} | {c(r, 'precision')} | {c(r, 'fpr')} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe", help="a config file with seeds, e.g. configs/digits_works.yaml")
    ap.add_argument("--out", required=True, help="folder for the crafts, the self-trained encoders and the tables")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override the recipe (another dataset, size, seeds), repeatable")
    ap.add_argument("--data-root", help="the data root (docs/CONFIG.md; default: the recipe's, POISONEDENCODER_DATA, ...)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--rates", default="recipe,0.03",
                    help="attack.poisoning_rate values (poisoning inputs over the clean set; 'recipe': its own); "
                         "default recipe,0.03")
    ap.add_argument("--encoders", default=",".join(ENCODERS), help=f"comma-separated, of {', '.join(ENCODERS)}")
    ap.add_argument("--fpr", type=float, default=0.05, help="crop_disagreement's stated false-positive rate (default 0.05)")
    ap.add_argument("--self-epochs", type=int, default=100, help="epochs of the self-trained encoder (default 100)")
    args = ap.parse_args(argv)
    from poisonedencoder.core.errors import UserError
    from poisonedencoder.core.io import write_csv, write_json, write_text

    try:
        variants, encoders = args.variants.split(","), args.encoders.split(",")
        for name, chosen, known in (("variant", variants, VARIANTS), ("encoder", encoders, ENCODERS)):
            bad = [x for x in chosen if x not in known]
            if bad:
                raise UserError(f"unknown {name} {bad[0]!r}; choose from {', '.join(known)}")
        rates = []
        for x in args.rates.split(","):
            try:
                rates.append(None if x == "recipe" else float(x))
            except ValueError:
                raise UserError(f"--rates: {x!r} is not a number or 'recipe'") from None
        if not 0 < args.fpr < 1 or args.self_epochs < 1:
            raise UserError("--fpr must lie in (0, 1) and --self-epochs be at least 1")
        out = Path(args.out)
        over = args.overrides + ([f"data_root={json.dumps(str(Path(args.data_root).absolute()))}"] if args.data_root else [])
        rows = measure(args.recipe, out, over, variants, rates, encoders, args.fpr, args.self_epochs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_csv(out / "detection.csv", rows)
    write_json(out / "detection.json", rows)
    table = markdown(rows)
    write_text(out / "detection.md", table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
