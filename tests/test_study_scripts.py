"""The study's tools: scripts/reclassify.py (other downstream classifiers on the same encoders) and
scripts/regime_table.py (one pooled row per setting, paired comparisons on shared target inputs)."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from poisonedencoder.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "pretrain.epochs=1", "--set", "pretrain_data.num_images=300", "--set", "pretrain.width=8",
        "--set", "downstream.epochs=2", "--set", "attack.num_references=5"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    assert main(["run", str(ROOT / "configs" / "digits_demo.yaml"), "--seeds", "0,1", "--out", str(d / "base"),
                 "--cache-dir", str(d / "cache"), *FAST]) == 0
    return d / "base"


def test_reclassify_reuses_the_encoders_and_changes_only_the_classifier(finished_run, capsys):
    rc = _script("reclassify")
    enc = finished_run / "seed_0" / "encoders" / "poisoned" / "encoder.pt"
    before = enc.stat().st_mtime_ns
    assert rc.main([str(finished_run), "--classifier", "knn", "--set", "downstream.knn_k=5"]) == 0
    sib = finished_run.parent / "base_knn"
    for s in (0, 1):
        base = json.loads((finished_run / f"seed_{s}" / "metrics.json").read_text())
        knn = json.loads((sib / f"seed_{s}" / "metrics.json").read_text())
        # the very same poisoned encoder file (a hard link) and the same cached clean encoder: nothing re-trained
        assert os.path.samefile(sib / f"seed_{s}" / "encoders" / "poisoned" / "encoder.pt",
                                finished_run / f"seed_{s}" / "encoders" / "poisoned" / "encoder.pt")
        assert knn["encoders"]["clean"] == base["encoders"]["clean"]
        assert [(t["test_index"], t["target_class"]) for t in knn["tasks"][0]["targets"]] == \
            [(t["test_index"], t["target_class"]) for t in base["tasks"][0]["targets"]]
        cfg = (sib / f"seed_{s}" / "config.yaml").read_text()
        assert "classifier: knn" in cfg and "knn_k: 5" in cfg
        # a k-NN vote gives log vote shares: a probability of the target class that is a multiple of 1/5 (k = 5)
        probs = [t["poisoned_target_prob"] for t in knn["tasks"][0]["targets"]]
        assert all(abs(p * 5 - round(p * 5)) < 1e-4 for p in probs)
        assert knn["CA"] != base["CA"] or knn["PA"] != base["PA"]
    assert enc.stat().st_mtime_ns == before
    assert "pretrain poisoned: reusing" in capsys.readouterr().out
    # settings that would need pre-training again are refused in one line
    assert rc.main([str(finished_run), "--set", "pretrain.epochs=3", "--suffix", "x"]) == 2
    assert "only downstream.*" in capsys.readouterr().err


def test_regime_table_pools_seeds_and_pairs_shared_targets(finished_run, tmp_path, capsys):
    rt = _script("regime_table")
    if not (finished_run.parent / "base_knn").exists():
        assert _script("reclassify").main([str(finished_run), "--classifier", "knn", "--set", "downstream.knn_k=5"]) == 0
    mlp3 = finished_run.parent / "base_mlp3"
    if not mlp3.exists():
        assert _script("reclassify").main([str(finished_run), "--classifier", "mlp", "--set", "downstream.epochs=3",
                                           "--suffix", "mlp3"]) == 0
    out = tmp_path / "t.json"
    assert rt.main([f"mlp={finished_run}", f"knn={finished_run.parent / 'base_knn'}", f"mlp3={mlp3}", "--ref", "mlp",
                    "--json", str(out), "--csv", str(tmp_path / "t.csv"), "--png", str(tmp_path / "t.png")]) == 0
    res = json.loads(out.read_text())
    per = [json.loads((finished_run / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
    row = res["rows"][0]
    # pooled over both seeds' target inputs, as a hand count gives
    hits = [t["poisoned_prediction"] == t["target_class"] for p in per for t in p["tasks"][0]["targets"]]
    assert (row["ASR"]["k"], row["ASR"]["n"]) == (sum(hits), len(hits)) == (sum(hits), 6)
    margins = [t["poisoned_margin"] for p in per for t in p["tasks"][0]["targets"]]
    assert row["margin_poisoned"]["mean"] == pytest.approx(sum(margins) / 6)
    assert row["seeds"] == "0,1" and row["clean_inputs"] == per[0]["num_clean_inputs"]
    per_target = per[0]["num_poisoning_inputs"] / 3
    assert row["poisons_per_target"] == pytest.approx(per_target)
    assert row["presentations"] == pytest.approx(per_target * 1)  # one epoch
    # the paired comparison: same 6 target inputs, the margin difference is the mean of per-target differences
    other = [json.loads((mlp3 / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
    omarg = [t["poisoned_margin"] for p in other for t in p["tasks"][0]["targets"]]
    knn, c = res["comparisons"]
    assert c["n"] == 6 and c["setting"] == "mlp3" and c["ref"] == "mlp"
    assert c["dmargin"] == pytest.approx(sum(b - a for a, b in zip(margins, omarg, strict=True)) / 6)
    assert c["dmargin"] != 0
    ohits = [t["poisoned_prediction"] == t["target_class"] for p in other for t in p["tasks"][0]["targets"]]
    assert c["dASR"] == pytest.approx((sum(ohits) - sum(hits)) / 6) and c["paired_n"] == 6
    # margins of another classifier are on another scale: compared on ASR only
    assert knn["n"] == 6 and knn["dmargin"] is None and knn["paired_n"] == 6 and knn["dASR"] is not None
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert "| mlp | 0,1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds no finished run"):
        rt.main([f"x={tmp_path / 'nothing'}"])


def test_logistic_fit_recovers_a_known_curve_and_where_it_reaches_the_goal():
    import math

    rt = _script("regime_table")
    a, b = -6.0, 0.5  # ASR = 0.5 at 2**12 = 4096, 0.8 at 2**((ln 4 + 6) / 0.5)
    n = 100_000
    pts = [(2.0 ** e, round(n / (1 + math.exp(-(a + b * e)))), n) for e in (8, 10, 12, 14, 16)]
    f = rt.logistic_fit(pts, goal=0.8)
    assert rt.logistic_fit(pts[:2]) is None  # two values of x: a curve through them, not a fit
    assert f["a"] == pytest.approx(a, abs=0.02) and f["b"] == pytest.approx(b, abs=0.002)
    want = 2 ** ((math.log(4) - a) / b)
    assert f["x_goal"] == pytest.approx(want, rel=0.01)
    assert f["x_goal_ci95"][0] < want < f["x_goal_ci95"][1]
    # with 10 targets per point the interval is much wider than with 100,000
    few = rt.logistic_fit([(x, round(10 * k / n), 10) for x, k, n in pts], goal=0.8)
    assert few["x_goal_ci95"][1] / few["x_goal_ci95"][0] > 4 * f["x_goal_ci95"][1] / f["x_goal_ci95"][0]
    # a falling curve has no crossing to report; one value of x has no fit
    assert rt.logistic_fit([(100, 9, 10), (1000, 5, 10), (10000, 1, 10)])["x_goal"] is None
    assert rt.logistic_fit([(100, 9, 10), (100, 1, 10)]) is None
    # a flat curve whose slope comes out positive by chance: no crossing either (slope interval includes 0)
    flat = rt.logistic_fit([(3000, 1, 10), (6000, 2, 10), (12000, 1, 10), (24000, 2, 10)])
    assert flat["b"] > 0 and flat["b_ci95"][0] < 0 < flat["b_ci95"][1] and flat["x_goal"] is None
    assert f["b_ci95"][0] < b < f["b_ci95"][1]


def test_regime_table_fit_options_change_what_is_fitted(finished_run, tmp_path):
    rt = _script("regime_table")

    def fits(*extra):
        out = tmp_path / "f.json"
        assert rt.main([f"mlp={finished_run}", "--json", str(out), *extra]) == 0
        return json.loads(out.read_text())["fits"]

    # one setting is one value of x: --point adds recorded results, so three values can be fitted
    assert fits("--fit")["cnn7/8"] is None
    pts = ["--point", "cnn7/8=5:1/10", "--point", "cnn7/8=500:9/10"]
    f8, f5 = fits("--fit", *pts)["cnn7/8"], fits("--fit", "--goal", "0.5", *pts)["cnn7/8"]
    assert f8["points"] == 3 and f8["x_goal"] > f5["x_goal"]  # --goal: a higher ASR is reached later
    assert f8["goal"] == 0.8 and f5["goal"] == 0.5
    # --x: the same points against another column (clean inputs 300, not 15 presentations)
    assert fits("--fit", "--x", "clean_inputs", *pts)["cnn7/8"]["a"] != f8["a"]
    with pytest.raises(SystemExit, match="FAMILY=X:K/N"):
        rt.main([f"mlp={finished_run}", "--fit", "--point", "cnn7/8=5:1"])
    # --snapshots: a row's snapshot ASRs become points of its family (x scaled by epoch / epochs)
    row = rt.setting_row("r", rt.run_dirs(str(finished_run)))
    row["_snapshots"] = {0: [0, 6]}  # as if a snapshot had been evaluated half-way
    row["epochs"], row["presentations"] = 2, 30.0
    assert rt.fit_points([row], "presentations", snapshots=False) == {"cnn7/8": [(30.0, row["ASR"]["k"], 6)]}
    assert rt.fit_points([row], "presentations", snapshots=True) == {"cnn7/8": [(0.0, 0, 6), (30.0, row["ASR"]["k"], 6)]}


def test_reclassify_snapshots_option_evaluates_the_snapshots(finished_run, tmp_path):
    import shutil

    rc = _script("reclassify")
    run = tmp_path / "one"
    shutil.copytree(finished_run / "seed_0", run)
    snap = run / "encoders" / "poisoned" / "snapshots"
    snap.mkdir()
    shutil.copy(run / "encoders" / "poisoned" / "encoder.pt", snap / "epoch_0.pt")  # a stand-in snapshot
    assert rc.main([str(run), "--classifier", "linear"]) == 0
    assert "over_training" not in json.loads((tmp_path / "one_linear" / "metrics.json").read_text())["tasks"][0]
    assert rc.main([str(run), "--classifier", "linear", "--suffix", "snap", "--snapshots"]) == 0
    over = json.loads((tmp_path / "one_snap" / "metrics.json").read_text())["tasks"][0]["over_training"]
    assert [o["epoch"] for o in over] == [0, 1]


def test_regime_table_names_encoders_by_the_width_they_have():
    rt = _script("regime_table")
    row = {"classifier": "mlp"}
    assert rt.family({**row, "backbone": "cnn7", "width": 16}) == "cnn7/16"
    assert rt.family({**row, "backbone": "resnet18w", "width": 16}) == "resnet18w/16"
    # resnet18 ignores pretrain.width: its name carries no width, its row says 64
    assert rt.family({**row, "backbone": "resnet18", "width": 32}) == "resnet18"
    assert rt.FIXED_WIDTH["resnet18"] == 64
    # parameters counted on the architecture, without weights: a GPU result copied back without encoders has them too
    assert rt._params({"backbone": "resnet18", "width": 32}) == 11_168_832
    assert rt._params({"backbone": "cnn7", "width": 16}) == 146_288
    assert rt._params({"backbone": "nope", "width": 16}) is None


def test_view_pairs_gap_raises_the_share_of_split_pairs():
    vp = _script("view_pairs")
    plain = vp.measure(32, 64, 0.08, 0.0, 40_000, 0)["split"]
    gapped = vp.measure(32, 80, 0.08, 0.0, 40_000, 0, gap=16)["split"]
    assert 0.06 < plain < 0.085           # 7.2% (docs/DESIGN.md, large_crops)
    assert gapped > 3 * plain             # 16 gray columns: views rarely straddle both parts
    # without the gap argument the gray columns would count as reference: a different, lower share
    assert vp.measure(32, 80, 0.08, 0.0, 40_000, 0)["split"] < gapped


def test_view_pairs_reports_the_adaptive_shapes():
    """attack.poisonedencoder's variants: square (the clean size, each part squeezed into its half)
    and the 2x2 tiling leave far fewer split pairs than the paper's 1:2 input at the same crops."""
    import torch

    vp = _script("view_pairs")
    tgt, ref = vp.tiles_2x2(16, 16)
    assert tgt == [(0, 0, 8, 8), (8, 8, 16, 16)] and ref == [(8, 0, 16, 8), (0, 8, 8, 16)]
    boxes = torch.tensor([[0.0, 0, 8, 8], [4.0, 4, 12, 12], [8.0, 0, 16, 8], [0.0, 0, 16, 16]])
    assert vp.region_share(boxes, tgt).tolist() == [1.0, 0.5, 0.0, 0.5]
    assert vp.region_share(boxes, ref).tolist() == [0.0, 0.5, 1.0, 0.5]
    paper = vp.measure(16, 32, 0.08, 0.0, 40_000, 0)["split"]
    square = vp.measure(16, 16, 0.08, 0.0, 40_000, 0)["split"]
    tiled = vp.measure(16, 16, 0.08, 0.0, 40_000, 0, layout="2x2")["split"]
    assert 0.06 < paper < 0.1 and 0 < square < paper / 4 and 0 < tiled < paper / 4
    assert vp.main(["--size", "16x16", "--layout", "2x2", "--pairs", "1000"]) == 0


def test_filter_detection_scores_each_filter_against_the_manifest(tmp_path, capsys):
    """aspect_ratio finds every paper-shaped poisoning input and no square one; an unknown variant
    and a filter whose clean encoder is not cached are one-line errors."""
    fd = _script("filter_detection")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"preset: demo\nseeds: [0, 1]\ncache_dir: {tmp_path / 'cache'}\npretrain_data: {{num_images: 200}}\n"
                      "tasks: [{dataset: digits, num_targets: 2}]\nattack: {poisoning_rate: 0.1, num_references: 10}\n")
    assert fd.main([str(recipe), "--out", str(tmp_path / "fd"), "--variants", "paper,square",
                    "--filters", "aspect_ratio,part_hash"]) == 0
    rows = {(r["variant"], r["filter"]): r for r in __import__("csv").DictReader(open(tmp_path / "fd" / "filter_detection.csv"))}
    paper, square = rows[("paper", "aspect_ratio")], rows[("square", "aspect_ratio")]
    assert int(paper["poisoning_inputs"]) == 2 * 2 * 10  # 2 seeds x 2 targets x round(0.1 * 200 / 2)
    assert float(paper["recall"]) == 1.0 and float(paper["precision"]) == 1.0 and paper["recall_per_seed"] == "1.00 1.00"
    assert float(square["recall"]) == 0.0 and int(square["flagged"]) == 0
    assert (tmp_path / "fd" / "filter_detection.md").read_text() in capsys.readouterr().out
    assert fd.main([str(recipe), "--out", str(tmp_path / "fv"), "--variants", "paper", "--filters", "part_hash",
                    "--variation", "1"]) == 0  # part_hash finds the paper's repeated targets, not fully varied ones
    rows = {r["variant"]: r for r in __import__("csv").DictReader(open(tmp_path / "fv" / "filter_detection.csv"))}
    assert set(rows) == {"paper", "varied_1"} and float(rows["varied_1"]["recall"]) < float(rows["paper"]["recall"])
    assert fd.main([str(recipe), "--out", str(tmp_path / "fd"), "--variation", "1.5"]) == 2
    assert fd.main([str(recipe), "--out", str(tmp_path / "fd"), "--variants", "round"]) == 2
    assert fd.main([str(recipe), "--out", str(tmp_path / "fd"), "--variants", "paper", "--filters", "crop_disagreement"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: --variation must be in (0, 1], got 1.5"
    assert err[1].startswith("error: unknown variant 'round'") and "no cached clean encoder" in err[2]
