"""scripts/detection_curves.py: the filters' detection metrics on crafted sets, pooled over seeds."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_detection_curves_pool_each_filter_over_seeds_and_rates(tmp_path, capsys, load_file):
    mod = load_file(ROOT / "scripts" / "detection_curves.py")
    out = tmp_path / "d"
    args = ["configs/digits_demo.yaml", "--out", str(out), "--set", "seeds=[0, 1]", "--set", f"cache_dir={tmp_path / 'c'}",
            "--variants", "paper,square", "--rates", "recipe,0.03,0.3", "--encoders", "none"]  # 0.3: the recipe again
    assert mod.main([str(ROOT / args[0]), *args[1:]]) == 0
    rows = json.loads((out / "detection.json").read_text())
    assert {(r["variant"], r["filter"]) for r in rows} == {(v, f) for v in ("paper", "square")
                                                           for f in ("part_hash", "aspect_ratio")}
    assert len(rows) == 8 and all(r["seeds"] == 2 for r in rows)
    assert sorted({r["rate_of_clean_set"] for r in rows}) == [0.029, 0.3007]  # 3 x 13 = 39 and 405 of 1,347 clean inputs
    ar = {(r["variant"], r["rate_of_clean_set"]): r for r in rows if r["filter"] == "aspect_ratio"}
    paper = ar[("paper", 0.3007)]
    assert paper["auroc"] == 1.0 and paper["recall_k"] == paper["recall_n"] == 2 * 405 and paper["fpr_k"] == 0
    assert paper["share_of_pretraining_set"] == round(405 / (1347 + 405), 4)
    square = ar[("square", 0.3007)]  # square composites have the clean inputs' shape: nothing to see
    assert square["auroc"] == 0.5 and square["recall_k"] == 0
    assert "| 30.1%; 23.1% | paper | aspect_ratio | none | 1.000" in (out / "detection.md").read_text()
    assert mod.main([str(ROOT / args[0]), "--out", str(out), "--encoders", "gpu"]) == 2
    assert "unknown encoder 'gpu'" in capsys.readouterr().err
    empty = tmp_path / "no_data"
    empty.mkdir()
    assert mod.main([str(ROOT / args[0]), "--out", str(tmp_path / "e"), "--data-root", str(empty), "--set",
                     "pretrain_data.dataset=eurosat", "--set", "tasks=[{dataset: eurosat, num_targets: 2}]"]) == 2
    assert f"dataset eurosat not found under {empty}" in capsys.readouterr().err
