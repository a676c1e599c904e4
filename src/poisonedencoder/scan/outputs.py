"""What a scan writes into ``--out``, each file atomically: ``scores.csv``, ``suspects.png``,
``roc.png`` (with a manifest), ``report.md``, and last ``scan.json``. The previous scan's
``scan.json`` is removed before any work (:func:`begin`), so the files beside a ``scan.json`` are
always one finished scan's: an interrupted scan leaves none, and the same command writes them all."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np

from ..core.io import atomic_write, write_json, write_text
from .folder import Folder
from .scores import ORACLE

FILES = ("scores.csv", "suspects.png", "roc.png", "report.md", "scan.json")
THUMB = 64  # suspects.png shows each image at most this many pixels on a side


def begin(out: Path) -> None:
    """Remove the last scan's ``scan.json`` and the temporary files that a killed scan's writes left."""
    (out / "scan.json").unlink(missing_ok=True)
    for name in FILES:
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _flag_column(name: str, thr: dict) -> str:
    return f"{name}_flagged" + (f" ({ORACLE})" if thr.get("oracle") else "")


def scores_csv(data: Folder, scores: dict, is_poison, result: dict) -> str:
    """One row per image (relative path, size, each filter's score and verdict), then one per
    skipped file with its reason."""
    names = list(scores)
    head = ["file", "status", "reason", "width", "height"] + (["is_poison"] if is_poison is not None else [])
    for n in names:
        head += [f"{n}_score", _flag_column(n, result["filters"][n]["threshold"])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for i, (path, im) in enumerate(zip(data.paths, data.images, strict=True)):
        row = [path, "scanned", "", im.shape[1], im.shape[0]] + ([int(is_poison[i])] if is_poison is not None else [])
        for n in names:
            s, v = scores[n]
            row += [f"{s[i]:.6g}", int(v[i])]
        w.writerow(row)
    for path, why in data.skipped:
        w.writerow([path, "skipped", why, "", ""] + ([""] if is_poison is not None else []) + ["", ""] * len(names))
    return buf.getvalue()


def _thumb(im: np.ndarray) -> np.ndarray:
    h, w = im.shape[:2]
    if max(h, w) <= THUMB:
        return im
    from PIL import Image

    k = THUMB / max(h, w)
    return np.asarray(Image.fromarray(im).resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR))


def suspects_png(path: Path, data: Folder, scores: dict, top: int) -> str | None:
    """The ``top`` images by the first filter's score (crop_disagreement where it ran), each captioned
    with its score (``*``: flagged); returns the filter's name."""
    from ..attack.export import save_grid

    if not scores:
        return None
    name = next(iter(scores))
    s, v = scores[name]
    order = np.argsort(-s, kind="stable")[:top]
    labels = [f"{s[i]:.3g}" + ("*" if v[i] else "") for i in order]
    legend = f"top {len(order)} of {len(s)} by {name} score (* flagged)"
    save_grid([_thumb(data.images[i]) for i in order], path, columns=8, limit=top, labels=labels, legend=legend)
    return name


def roc_png(path: Path, scores: dict, is_poison, result: dict) -> None:
    """Each filter's ROC curve against the manifest, with its AUROC and the point its threshold reached."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .detection import roc_points

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (s, _) in scores.items():
        x, y = roc_points(s, is_poison)
        det = result["filters"][name]["detection"]
        auc = det["auroc"]["value"]
        line, = ax.plot(x, y, label=f"{name} (AUROC {auc:.3f})" if auc is not None else name)
        at = det["at_threshold"]
        if at["fpr"]["value"] is not None and at["recall"]["value"] is not None:
            ax.plot([at["fpr"]["value"]], [at["recall"]["value"]], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="gray", lw=1)
    ax.set(xlabel="false-positive rate (clean inputs flagged)", ylabel="true-positive rate (poisoning inputs flagged)",
           xlim=(0, 1), ylim=(0, 1.01), title="scan: ROC against the manifest (dots: the thresholds used)")
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_all(out: Path, data: Folder, scores: dict, is_poison, result: dict, top: int, t0: float) -> None:
    from .report import report_md

    write_text(out / "scores.csv", scores_csv(data, scores, is_poison, result))
    result["suspects"] = suspects_png(out / "suspects.png", data, scores, top)
    if result["suspects"] is None:
        (out / "suspects.png").unlink(missing_ok=True)
    if is_poison is not None and scores:
        roc_png(out / "roc.png", scores, is_poison, result)
    else:
        (out / "roc.png").unlink(missing_ok=True)
    result["seconds"]["total"] = round(time.time() - t0, 2)
    write_text(out / "report.md", report_md(result))
    write_json(out / "scan.json", result)
