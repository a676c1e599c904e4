"""``report.md`` of a scan, from what ``scan.json`` holds."""
from __future__ import annotations

LISTED = 30  # flagged and skipped files named in the report (all of them are in scores.csv)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _rate(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "-"
    return f"{r['value']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] ({r['k']}/{r['n']})"


def _auroc(a: dict) -> str:
    if a["value"] is None:
        return "-"
    return f"{a['value']:.3f}" + (f" [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]" if a["ci95"] else "")


def _encoder(e: dict | None, r: dict) -> list[str]:
    if e is None:
        return [f"crop_disagreement: {r['filters']['crop_disagreement']['why']}."]
    lines = [f"- choice: `--{e['choice']}`; trained on: {e['trained_on']}",
             f"- crops resized to {e['image_size']}x{e['image_size']} pixels before the encoder"]
    if e["choice"] == "train":
        lines += [f"- SimCLR, {e['backbone']} width {e['width']}, batch {e['batch_size']}, seed {e['seed']}, on {r['device']}",
                  f"- epochs done: {e['epochs_done']}"
                  + (f" of {e['epochs_asked']} asked" if e["epochs_asked"] is not None else "")
                  + (f"; budget {e['minutes_asked']:g} minutes" if e["minutes_asked"] is not None else "")
                  + f"; stopped by the {e['stopped_by']} budget; minutes of training: {e['minutes_taken']:.2f}"
                  + (f" (resumed after epoch {e['resumed_after_epoch']})" if e["resumed_after_epoch"] else ""),
                  f"- final loss {e['final_loss']:.4f}; checkpoints in `{e['workdir']}` of the scan's folder"]
    else:
        lines += [f"- file: `{e['path']}` (sha256 {e['sha256'][:16]}...), format {e['format']}"
                  + (f", arch {e['arch']}" if e.get("arch") else "") + (f", width {e['width']}" if e.get("width") else "")
                  + (f", prefix `{e['prefix']}`" if e.get("prefix") else "")
                  + f"; normalization {e['normalize']}; {e['feature_dim']} features"]
    return lines


def _how(thr: dict) -> str:
    if thr["method"] == "budget":
        return f"top share {thr['share']:g} (**{thr.get('note', 'oracle: the share of poisoning inputs told')}**)"
    if thr["method"] == "reference":
        return f"FPR {thr['fpr']:g}, split-conformal quantile of {thr['n_reference']} reference images"
    if thr["method"] == "robust":
        return f"FPR {thr['fpr']:g}, robust z (median + z x 1.4826 MAD of the folder's scores)"
    return "the filter's own"


def report_md(r: dict) -> str:
    lines = [f"# Scan of `{r['folder']}`", "",
             f"{r['images']} images scanned, {len(r['skipped'])} skipped, {r['other_files']} other files (not image "
             f"names) left alone; {r['seconds']['total']:.1f} s in all ({r['seconds']['reading']:.1f} s reading).", "",
             "## Encoder (crop_disagreement)", "", *_encoder(r["encoder"], r), "",
             "## What each filter flagged", "",
             "| filter | flagged | threshold | how the threshold was set | scores (min / median / max) |",
             "|---|---|---|---|---|"]
    for name, f in r["filters"].items():
        if not f["ran"]:
            lines.append(f"| {name} | - | - | {f['why']} | - |")
            continue
        t, s = f["threshold"], f["scores"]
        value = "-" if t["value"] is None else f"{t['value']:.4g}"
        lines.append(f"| {name} | {f['flagged']} of {r['images']} | {value} | {_how(t)} | "
                     f"{s['min']:.3g} / {s['median']:.3g} / {s['max']:.3g} |")
    lines.append("")
    for name, f in r["filters"].items():
        if f["ran"]:
            shown = ", ".join(f"`{_cell(p)}`" for p in f["flagged_files"][:LISTED])
            more = f" and {f['flagged'] - LISTED} more (scores.csv)" if f["flagged"] > LISTED else ""
            lines += [f"**{name}**: flagged where {f['threshold']['rule']}."
                      + (f" Flagged: {shown}{more}." if f["flagged"] else " Nothing flagged."), ""]
    if r["reference"] is not None:
        ref = r["reference"]
        lines += [f"Reference folder `{ref['folder']}`: {ref['images']} images scored with the same encoder and crops "
                  f"({len(ref['skipped'])} skipped).", ""]
    if r["manifest"] is not None:
        m = r["manifest"]
        lines += ["## Detection against the manifest", "",
                  f"Manifest `{m['path']}` ({m['kind']}): {m['listed']} poisoning inputs listed, {m['matched']} "
                  f"matched to scanned files, {m['matched_skipped']} to skipped files, {m['unmatched']} not found "
                  f"({m['rule']}).", "",
                  "| filter | AUROC [95% CI] | TPR at FPR 0.01 | TPR at FPR 0.05 | precision | recall | FPR reached |",
                  "|---|---|---|---|---|---|---|"]
        for name, f in r["filters"].items():
            if f["ran"]:
                d = f["detection"]
                at = d["at_threshold"]
                lines.append(f"| {name} | {_auroc(d['auroc'])} | {_rate(d['tpr_at_fpr']['0.01']['tpr'])} | "
                             f"{_rate(d['tpr_at_fpr']['0.05']['tpr'])} | {_rate(at['precision'])} | {_rate(at['recall'])} "
                             f"| {_rate(at['fpr'])} |")
        lines += ["", "AUROC: DeLong's 95% interval. TPR at FPR a: the threshold at the clean inputs' empirical "
                  "(1 - a) quantile (it uses the truth: the best a defender who knew the clean scores could do), 95% "
                  "Wilson interval over the poisoning inputs. Precision, recall and FPR reached: at the threshold above, "
                  "each with its 95% Wilson interval.", "![ROC](roc.png)", ""]
    if r["skipped"]:
        lines += ["## Skipped files", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{_cell(s['file'])}` | {_cell(s['reason'])} |" for s in r["skipped"][:LISTED]]
        if len(r["skipped"]) > LISTED:
            lines.append(f"| ... | {len(r['skipped']) - LISTED} more in scores.csv |")
        lines.append("")
    if r.get("suspects"):
        lines += [f"![suspects](suspects.png): the top images by {r['suspects']} score, captioned with it.", ""]
    return "\n".join(lines)
