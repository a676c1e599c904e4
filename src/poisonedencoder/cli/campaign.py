"""``claims --out RECORD --merge DIR [--doc FILE]``: a campaign call's records into the record."""
from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import UserError


def merge_command(args, cfg: dict, out: Path, user: dict, over: list[str]) -> int:
    """``claims --out RECORD --merge DIR [--doc FILE]``: :func:`~poisonedencoder.studies.claims.merge.merge`,
    then the record's table (and the document's section) rewritten from its runs."""
    from ..studies.claims import build_rows, not_here, plan, read_results, write_table
    from ..studies.claims.merge import check_doc, merge, section, write_section

    src = Path(args.merge)
    if not src.is_dir():
        raise UserError(f"--merge {src} is not a folder (a record folder: what --record writes)")
    if args.doc:
        if not Path(args.doc).is_file():
            raise UserError(f"--doc {args.doc} is not a file")
        check_doc(Path(args.doc))  # before anything is merged
    n = merge(user, over, src, out)
    arms = plan(cfg, reading=True)
    res = read_results(cfg, out, arms)
    rows = write_table(cfg, out, arms, build_rows(cfg, res, not_here(cfg, arms)))
    print(f"merged {n} new run(s): {src} -> {out}; table: {out / 'claims.md'}, {out / 'claims.json'}")
    if args.doc:
        recipe = os.path.relpath(args.config)  # the recipe as a command from here names it
        recipe = args.config if recipe.startswith("..") else recipe
        write_section(Path(args.doc), section(cfg, rows, res, recipe, link(Path(args.doc), out)))
        print(f"section rewritten: {args.doc}")
    return 0


def link(doc: Path, folder: Path) -> str:
    """``folder`` as a link from ``doc``'s folder."""
    return Path(os.path.relpath(folder.resolve(), doc.resolve().parent)).as_posix() + "/"
