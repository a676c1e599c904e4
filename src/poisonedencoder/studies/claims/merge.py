"""What a campaign's call finished, into the record: ``claims --out RECORD --merge DIR [--doc FILE]``.

Every run of ``DIR`` (a ``claims --record`` folder) is checked (:func:`~.campaign.check_run`)
before anything is written; a run the record holds already is left as it is, and refused in one
line where its metrics, config or stamp differ (:data:`IDENTITY`). Then the record's table is rewritten from
its runs, and, with a document, the part of it between :data:`BEGIN` and :data:`END`
(:func:`section`).
"""
from __future__ import annotations

from pathlib import Path

from ... import config as C
from ...core.errors import UserError
from ...core.folders import claim_dir
from ...core.io import write_text
from ...experiment.metrics import threat_model
from ...experiment.rundir import RunDir
from .arms import plan, recipe_rates
from .campaign import pending, planned_runs, queue, recorded
from .formats import line
from .results import ArmResult
from .sizes import train_size_here
from .verdicts import PENDING, Row

_RUN = RunDir("")  # the layout's names, relative to a run folder
IDENTITY = (_RUN.metrics.name, _RUN.config.name, _RUN.stamp.name)
"""The files that make a recorded run what it is: a run the record holds is refused where one of
them differs; its other files (the craft's timing, redone where one target per run crafted the
recipe's runs again for their reference inputs) stay as recorded."""
BEGIN, END = "<!-- claims-campaign:begin -->", "<!-- claims-campaign:end -->"
"""The lines between which :func:`write_section` writes a document's campaign section."""


def merge(user: dict, overrides: list[str], src: Path, dest: Path) -> int:
    """The runs of record folder ``src`` into record folder ``dest`` (module docstring); returns the
    runs added. Nothing is written where a run is refused."""
    cfg = C.resolve(user, overrides)
    if not (src / "arms").is_dir():
        raise UserError(f"{src} holds no arms/ folder: not a claims record ('claims --record DIR' writes one)")
    arms = plan(cfg, train_size_here(cfg) or recorded_train_size(src) or recorded_train_size(dest), reading=True)
    names = {a.name for a in arms}
    strange = sorted(p.name for p in (src / "arms").iterdir() if p.name not in names)
    if strange:
        raise UserError(f"{src / 'arms'}: {', '.join(strange[:3])} is no arm of this recipe's claims plan")
    claim_dir(dest, "record folder (--out)")  # new, or the toolkit's: never a folder of the user's
    incoming = recorded(user, overrides, src, arms)
    writes, added = [], 0
    for dirs in incoming.values():
        for d in dirs:
            new = not RunDir(dest / d.relative_to(src)).metrics.is_file()
            for f in sorted(p for p in d.rglob("*") if p.is_file()):
                target = dest / f.relative_to(src)
                text = f.read_text()
                if target.is_file() and target.read_text() != text and (new or f.name in IDENTITY):
                    raise UserError(f"refusing to merge: {f} differs from the recorded {target} (a recorded run is "
                                    "never replaced); nothing merged")
                if new and not target.is_file():
                    writes.append((target, text))
            added += new
    for target, text in writes:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text(target, text)
    return added


def recorded_train_size(record: Path) -> int | None:
    """The size of the recipe's train split as a recorded fine-tuning run gives it (its pre-training
    inputs and the clean inputs it fine-tuned on: the plan's split, :func:`~.arms.finetune_arms`),
    where the dataset is not here to say; None without one. The run's own check then holds it to
    the rest of the recipe."""
    from ...config.files import parse_yaml

    for f in sorted((record / "arms" / "defense_finetune").glob(f"seed_*/{_RUN.config.name}")):
        try:
            c = parse_yaml(f.read_text(), f"config file {f}")
            n = c["pretrain_data"]["num_images"] + c["defense"]["finetune"]["num_clean"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(n, int) and n > 0:
            return n
    return None


def progress(cfg: dict, res: dict[str, ArmResult], arm: str) -> str:
    """How much of ``arm`` is measured so far: its seeds and target inputs."""
    seeds = cfg["seeds"] or [cfg["seed"]]
    r = res.get(arm)
    if r is None:
        return f"0 of {len(seeds)} seeds, 0 targets"
    return f"{len(r.seeds())} of {len(seeds)} seeds, {r.n} targets"


def campaign_rows(rows: list[Row], names: list[str]) -> list[Row]:
    """The rows the campaign's arms measure (the race's only its ``crop_disagreement`` cells)."""
    q = set(names) - {"poisonedencoder"}
    keep = []
    for r in rows:
        if r.section:
            if r.numbers.get("defense") == "crop_disagreement":
                keep.append(r)
        elif r.key == "high_asr" or r.arms[0] in q:
            keep.append(r)
    return keep


def threat(cfg: dict) -> str:
    """The recipe's poisoning rate with both denominators."""
    per_target, n = recipe_rates(cfg)
    rate = cfg["attack"]["poisoning_rate"]
    share = threat_model(rate, 1, n)["poisoning_share"]  # per clean input
    return (f"poisoning inputs equal to {100 * rate:.1f}% of the clean set, {100 * share:.1f}% of the "
            f"pre-training set ({100 * per_target:.1f}% of the clean set per target input, {n} targets per run)")


def section(cfg: dict, rows: list[Row], res: dict[str, ArmResult], recipe: str, record: str) -> str:
    """The campaign's part of a document: the recipe's threat, what the record holds, then one line
    per row: its progress, its measurement and verdict (the table's), or its command."""
    arms = plan(cfg, reading=True)
    names = queue(cfg, arms)
    by_name = {a.name: a for a in arms}
    done = sum(min(len(res[n].runs), planned_runs(cfg, by_name[n])) if n in res else 0 for n in names)
    total = sum(planned_runs(cfg, by_name[n]) for n in names)
    todo = pending(cfg, arms, {n: res[n].runs for n in res})
    common = next((r.setting for r in rows if r.key == "high_asr" and r.setting), None)
    out = [f"Recipe `{recipe}`: {threat(cfg)}" + (f"; {line(common)}" if common else "") + ".",
           "",
           f"Recorded in [{record}]({record}): {done} of the queue's {total} runs; "
           + (f"next: `{todo[0]}`." if todo else "the queue is done."),
           "",
           "| claim | so far | measurement (95% intervals) | verdict | command |",
           "|---|---|---|---|---|"]
    for r in campaign_rows(rows, names):
        measured = r.verdict != PENDING
        out.append(f"| {r.claim} | {progress(cfg, res, r.arms[0])} | {r.measurement or '-'} | **{r.verdict}**"
                   f"{': ' + r.why if r.why else ''} | "
                   + ("-" if measured else f"`poisonedencoder claims {recipe} --only {','.join(dict.fromkeys(r.arms))}`")
                   + " |")
    return "\n".join(out) + "\n"


def _parts(doc: Path) -> tuple[str, str]:
    """The document before its section (through :data:`BEGIN`) and after it (from :data:`END`); a
    one-line error where it has not each line once, in that order."""
    try:
        lines = doc.read_text().splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read --doc {doc}: {getattr(e, 'strerror', None) or e}") from e
    at = {m: [i for i, x in enumerate(lines) if x.strip() == m] for m in (BEGIN, END)}
    if len(at[BEGIN]) != 1 or len(at[END]) != 1 or at[BEGIN][0] > at[END][0]:
        raise UserError(f"--doc {doc} needs one line '{BEGIN}' and, after it, one line '{END}' (the part rewritten)")
    return "".join(lines[:at[BEGIN][0] + 1]), "".join(lines[at[END][0]:])


def check_doc(doc: Path) -> None:
    """:func:`write_section` would accept ``doc`` (checked before anything is merged)."""
    _parts(doc)


def write_section(doc: Path, text: str) -> None:
    """``text`` between the document's :data:`BEGIN` and :data:`END` lines (each once, in that
    order, else a one-line error); the rest of the document as it was, written atomically."""
    before, after = _parts(doc)
    write_text(doc, before + text + after)
