"""The benchmark script runs and reports the three throughputs and their ratios (no timing assertions)."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "pretrain_throughput.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH.parent / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pretrain_throughput_reports_three_methods_and_ratios(tmp_path):
    spec = importlib.util.spec_from_file_location("pretrain_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "b.json"
    assert mod.main(["--width", "4", "--batch-size", "16", "--steps", "1", "--rounds", "1", "--warmup", "0",
                     "--bf16", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    ips = r["images_per_s"]
    assert set(ips) == {"a_this_loop", "b_per_sample_pipeline", "c_model_only", "a_this_loop_bf16",
                        "c_model_only_bf16"} and all(v > 0 for v in ips.values())
    assert abs(r["c_model_only_bf16_over_c"] - ips["c_model_only_bf16"] / ips["c_model_only"]) < 0.01
    assert abs(r["a_over_b"] - ips["a_this_loop"] / ips["b_per_sample_pipeline"]) < 0.01
    assert abs(r["a_over_c"] - ips["a_this_loop"] / ips["c_model_only"]) < 0.01


def test_augmentation_equality_compares_both_pipelines_per_seed(tmp_path):
    spec = importlib.util.spec_from_file_location("augmentation_equality", BENCH.parent / "augmentation_equality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "eq"
    assert mod.main(["--dataset", "digits", "--seeds", "0,1", "--epochs", "1", "--num-images", "256", "--downstream-epochs", "3",
                     "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    r = json.loads((out / "equality.json").read_text())
    runs = {(x["augmentation"], x["seed"]): x for x in r["runs"]}
    assert set(runs) == {(a, s) for a in ("batched", "per_sample") for s in (0, 1)}
    assert len({x["encoder"] for x in r["runs"]}) == 4  # four different encoders, none shared
    for x in r["runs"]:
        ca = x["CA"]
        assert ca["n"] == 450 and ca["ci95"][0] <= ca["value"] <= ca["ci95"][1] and x["logged_epoch_seconds"]
    diff = r["summary"]["per_sample_minus_batched"]["CA"]
    want = sum(runs["per_sample", s]["CA"]["value"] - runs["batched", s]["CA"]["value"] for s in (0, 1)) / 2
    assert abs(diff["mean"] - want) < 1e-12 and diff["n"] == 2


def test_backbone_cost_reports_each_spec_with_its_size_and_parameters(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("backbone_cost", BENCH.parent / "backbone_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "c.json"
    assert mod.main(["cnn7:4:16", "cnn7:8:8", "--batch-size", "4", "--steps", "1", "--rounds", "1", "--precision", "fp32",
                     "--json", str(out)]) == 0
    a, b = json.loads(out.read_text())
    assert (a["width"], a["size"], b["width"], b["size"]) == (4, 16, 8, 8)
    # CNN7's parameters grow with the square of its width: 8 has about 4 times those of 4
    assert 3.5 < b["params"] / a["params"] < 4.1
    assert a["inputs_per_second"] > 0 and b["inputs_per_second"] > 0
    assert "cost x1.0 of cnn7:4:16" in capsys.readouterr().out
    assert mod.main(["cnn7:4"]) == 2 and mod.main(["mlp:4:16"]) == 2
    # --precision reaches autocast, --batch-size the inputs per step, --steps x --rounds the timed steps
    assert (a["compute_dtype"], a["batch_size"], a["timed_steps"], a["rounds"]) == ("float32", 4, 1, 1)
    assert mod.main(["cnn7:4:16", "--batch-size", "6", "--steps", "2", "--rounds", "3", "--precision", "bf16",
                     "--json", str(out)]) == 0
    (c,) = json.loads(out.read_text())
    assert (c["compute_dtype"], c["batch_size"], c["timed_steps"], c["rounds"]) == ("bfloat16", 6, 6, 3)
    assert mod.main(["cnn7:4:16", "--rounds", "0"]) == 2
    assert c["inputs_per_second"] * c["seconds_per_step"] == pytest.approx(6)


def test_batched_eval_times_both_paths_and_compares_their_logits(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("batched_eval", BENCH.parent / "batched_eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "e.json"
    assert mod.main(["--models", "2", "--num-train", "100", "--dim", "8", "--classes", "3", "--epochs", "2",
                     "--batch-size", "32", "--rounds", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["models"], r["steps_per_model"], r["rounds"], r["device"]) == (2, 8, 2, "cpu")  # 2 epochs x ceil(100 / 32)
    assert r["seconds_sequential"] > 0 and r["seconds_batched"] > 0
    assert abs(r["sequential_over_batched"] - r["seconds_sequential"] / r["seconds_batched"]) < 1e-9
    assert r["max_abs_logit_difference"] < 1e-5 and r["prediction_agreement"] == 1.0
    assert r["machine"] in capsys.readouterr().out
    assert mod.main(["--models", "0"]) == 2


@pytest.mark.slow
def test_compare_trees_times_both_trees_in_alternating_rounds(capsys):
    mod = _load("compare_trees")
    src = str(Path(__file__).resolve().parents[1] / "src")
    assert mod.main(["--a", src, "--b", src, "--rounds", "2", "--", "demo", "--set", "pretrain.epochs=1",
                     "--set", "downstream.epochs=1", "--set", "pretrain.threads=1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[1:3]] == ["round 1", "round 2"]
    assert out[-1].startswith("b / a: ") and "95% t interval" in out[-1]


def test_compare_trees_refuses_a_folder_without_the_package(tmp_path, capsys):
    mod = _load("compare_trees")
    assert mod.main(["--a", str(tmp_path), "--b", str(tmp_path), "--", "demo"]) == 2
    assert "holds no poisonedencoder package" in capsys.readouterr().err
    assert mod.main(["--a", str(tmp_path), "--b", str(tmp_path)]) == 2


def test_scan_speed_times_the_whole_set_and_both_paths(tmp_path, capsys, load_file):
    mod = load_file(BENCH.parent / "scan_speed.py")
    out = tmp_path / "s.json"
    assert mod.main(["--dataset", "digits", "--size", "16", "--limit", "40", "--subset", "8", "--rounds", "2",
                     "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["images"] == 40 and r["subset"] == 8 and 0 < r["encoder_share"] < 1
    assert abs(r["images_per_s"] - 40 / r["seconds"]) < 1e-6
    assert abs(r["batched_over_one_at_a_time"] - r["batched_images_per_s"] / r["one_at_a_time_images_per_s"]) < 1e-9
    assert r["machine"] in capsys.readouterr().out
    assert mod.main(["--subset", "1"]) == 2
    assert mod.main(["--dataset", "eurosat", "--data-root", str(tmp_path / "none")]) == 2
    assert "dataset eurosat not found" in capsys.readouterr().err


def test_step_settings_reports_images_per_s_and_mfu_for_one_and_several_processes(tmp_path):
    mod = _load("step_settings")
    out = tmp_path / "s.json"
    assert mod.main(["--width", "4", "--batch-size", "16", "--steps", "1", "--rounds", "1", "--warmup", "1",
                     "--procs", "1,2", "--peak-tflops", "2.5", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["variants"]) == {"before", "default", "contiguous"}
    # on the CPU the defaults resolve to what the loop did before the settings: one code path
    assert r["resolved"]["before"] == r["resolved"]["default"] == {
        "compile": False, "memory_format": "channels_last", "precision": r["resolved"]["default"]["precision"], "batch_size": 16}
    assert r["resolved"]["contiguous"]["memory_format"] == "contiguous"
    for n in ("1", "2"):
        run = r["runs"][n]
        assert run["processes"] == int(n)
        for k, ips in run["images_per_s"].items():
            assert ips > 0 and len(run["per_process_images_per_s"][k]) == int(n)
            assert abs(ips - sum(run["per_process_images_per_s"][k])) <= 0.05 * int(n) + 1e-9 * ips
            assert run["mfu"][k] == pytest.approx(ips * r["flops_per_image"] / 2.5e12, rel=1e-3, abs=1e-4)
            assert run["over_before"][k] == pytest.approx(ips / run["images_per_s"]["before"], rel=1e-2, abs=1e-3)


@pytest.mark.parametrize("argv", [["--variant", "x"], ["--variant", "a=compile:maybe"], ["--procs", "0"],
                                  ["--variant", "a=batch_size:1"], ["--peak-tflops", "-1"]])
def test_step_settings_refuses_bad_input_in_one_line(argv, capsys):
    assert _load("step_settings").main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_step_settings_compiles_the_variants_that_ask_with_their_mode(tmp_path, monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: calls.append((type(module).__name__, mode)) or module)
    out = tmp_path / "c.json"
    assert _load("step_settings").main(["--width", "4", "--batch-size", "8", "--steps", "1", "--rounds", "1", "--warmup", "0",
                                        "--variant", "eager=compile:auto", "--variant", "graphs=compile:true,compile_mode:reduce-overhead",
                                        "--variant", "big=compile:false,batch_size:16", "--json", str(out)]) == 0
    assert calls == [("_ContrastiveStep", "reduce-overhead")]
    r = json.loads(out.read_text())["resolved"]
    assert r["eager"]["compile"] is False and r["graphs"] == {**r["graphs"], "compile": True, "compile_mode": "reduce-overhead"}
    assert r["big"]["batch_size"] == 16
