"""The experiment harness: a tiny config end to end, cached runs, savings arithmetic, the
report, torchrun (DDP) runs, the demo, and every committed preset."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from lemonkit.harness import cli, experiment, report
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.experiment import load_experiment, run_experiment
from lemonkit.harness.runs import run_specs

ROOT = Path(__file__).parents[1]
CONFIG_DIR = ROOT / "experiments" / "configs"
RESULTS = ROOT / "experiments" / "results"


def data_table(config: str) -> str:
    """A committed config's ``[data]`` table as TOML: the tiny configs read the same data."""
    spec = tomllib.loads((CONFIG_DIR / f"{config}.toml").read_text())["data"]
    return "\n[data]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in spec.items())


# the run settings both tiny experiments share: a few steps of a few bytes
TINY_RUN = """seq_len = 16
batch_size = 4
lr = 3e-3
warmup = 1
small_steps = 4
steps = 4
eval_every = 2
eval_batches = 2
"""

TINY = (
    """
name = "tiny"
task = "causal_lm"
[preset.tiny]
small = { arch = "llama", hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64 }
large = { arch = "llama", hidden = 48, layers = 3, heads = 6, kv_heads = 3, intermediate = 96 }
"""
    + TINY_RUN
    + """lemon_ratio = 0.5
small_min_lr_ratio = 1.0
seeds = [0, 1]
ckpt_every = 2
baselines = ["lemon-default", "net2net", "aki", "stack", "hyperclone", "stack-default", "ki-soft"]
ablation_lr = [0.2]
ablation_decay = [0.75]
baseline_seeds = [0, 1]
grow_after = [0.5]
anneal_source = true
"""
    + data_table("lm_llama")
)


TINY_MLM = (
    """
name = "tiny"
task = "mlm"
[preset.tiny]
small = { arch = "bert", hidden = 32, layers = 2, heads = 4, intermediate = 64 }
large = { arch = "bert", hidden = 64, layers = 3, heads = 8, intermediate = 128 }
"""
    + TINY_RUN
    + """seeds = [0]
"""
    + data_table("bert")
)


# ---------------------------------------------------------------- experiment + report


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exp")
    config = root / "tiny.toml"
    config.write_text(TINY)
    exp = load_experiment(config, "tiny", out=root / "results")
    run_experiment(exp, progress=False)
    report.write_results(root / "results")
    return root / "results"


def test_tiny_experiment_end_to_end(tiny_results):
    folder = tiny_results / "tiny" / "tiny"
    names = {p.stem for p in folder.glob("*.json")} - {"summary", "invocation"}
    seeded = ("scratch", "lemon", "lemon-default", "net2net", "aki", "stack", "hyperclone")
    seeded += ("stack-default", "ki-soft")
    assert names == {"small", "small-x0.5", "small-annealed"} | {
        f"{m}-s{k}" for m in seeded for k in (0, 1)
    } | {"lemon-lr0.2-s0", "lemon-decay0.75-s0", "lemon-x0.5-s0", "lemon-annealed-s0"}
    runs = report.load_runs(folder)
    # the expansion starts where the small model ended; lossy baselines do not
    small_final = runs["small"]["history"][-1]["val_loss"]
    for name in ("lemon-s0", "lemon-s1", "net2net-s1", "lemon-lr0.2-s0"):
        assert runs[name]["init_rel_error"] < 1e-5, name
        assert runs[name]["history"][0]["val_loss"] == pytest.approx(small_final, abs=1e-4)
    for name in ("aki-s0", "stack-s1", "hyperclone-s0"):  # hyperclone: net2net + noise
        assert runs[name]["init_rel_error"] > 1e-3, name
    assert runs["hyperclone-s1"]["run"]["method"] == "net2net"
    assert runs["hyperclone-s1"]["run"]["noise_snr"] == 100.0
    # when to grow: each LEMON run starts where its own source ended (lossless)
    for tag, steps in (("x0.5", 2), ("annealed", 4)):
        source = runs["small-" + tag]
        assert source["history"][-1]["step"] == steps
        grown = runs[f"lemon-{tag}-s0"]
        assert grown["run"]["source"] == "small-" + tag
        start = grown["history"][0]["val_loss"]
        assert start == pytest.approx(source["history"][-1]["val_loss"], abs=1e-4), tag
    assert runs["small-annealed"]["config"]["min_lr_ratio"] == 0.1  # decayed
    assert runs["small"]["config"]["min_lr_ratio"] == 1.0  # held constant
    # the recipe: decay over 0.5 T, then on (at the floor LR) until the target, at most T
    cfg = runs["lemon-s0"]["config"]
    assert (cfg["decay_steps"], cfg["min_steps"], cfg["steps"]) == (2, 2, 4)
    assert 2 <= runs["lemon-s0"]["history"][-1]["step"] <= 4
    assert runs["lemon-decay0.75-s0"]["config"]["decay_steps"] == 3
    assert runs["aki-s0"]["run"]["depth"] == "stack"  # bert2BERT grows depth by stacking
    # a baseline with the scratch schedule: the same start, decay over T, no minimum length
    default = runs["stack-default-s0"]
    assert default["run"]["depth"] == "stack" and default["run"]["method"] == "lemon"
    assert (default["config"]["decay_steps"], default["config"]["min_steps"]) == (4, 0)
    assert default["init_rel_error"] == pytest.approx(runs["stack-s0"]["init_rel_error"])
    assert runs["lemon-lr0.2-s0"]["config"]["lr"] == pytest.approx(0.2 * 3e-3)
    assert not (folder / "ckpt" / "lemon-s0").exists()  # finished runs drop their checkpoint
    # tied units: recorded at the start and at the first evaluation where lemonkit has them
    import lemonkit

    has_tied = hasattr(lemonkit, "tied_units")
    assert ("tied_units_start" in runs["net2net-s0"]) == has_tied
    assert ("tied_units" in runs["net2net-s0"]["history"][1]) == has_tied
    text = (tiny_results / "RESULTS.md").read_text()
    assert "## tiny" in text and "| aki-s1 |" in text and (folder / "curves.png").stat().st_size
    assert "When to grow" in text and (folder / "when_to_grow.png").stat().st_size
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["paired"]) >= {"net2net", "aki", "hyperclone", "ki-soft"}
    assert summary["paired"]["aki"]["seeds"] == [0, 1]
    rows = {r["run"]: r for r in summary["rows"]}
    assert rows["lemon-s0"]["dip"] is not None and rows["scratch-s0"]["dip"] is None
    # the preset's wall time: one command trained every run, so RESULTS.md states it
    invocation = json.loads((folder / "invocation.json").read_text())
    assert invocation["trained"] == invocation["runs"] == len(runs)
    assert (invocation["jobs"], invocation["threads"]) == (1, 1) and invocation["wall_s"] > 0
    assert invocation["cpu_s"] > 0
    assert "The whole preset, in one command (`--jobs 1 --threads 1`" in text
    assert "(one command:" in text


def test_a_second_command_that_trains_nothing_states_no_preset_time(tiny_results, tmp_path):
    """Running a finished preset again reuses every run: its invocation says so (0 trained)
    and the report no longer claims a whole-preset wall time."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    exp = load_experiment(tiny_results.parent / "tiny.toml", "tiny", out=results)
    run_experiment(exp, progress=False)
    invocation = json.loads((exp.out / "invocation.json").read_text())
    assert invocation["trained"] == 0 and invocation["runs"] > 0
    report.write_results(results)
    assert "The whole preset, in one command" not in (results / "RESULTS.md").read_text()


def test_finished_runs_are_not_rerun(tiny_results, tmp_path):
    folder = tiny_results / "tiny" / "tiny"
    names = ("small", "scratch-s0", "lemon-s0")  # small and scratch ran before the target existed
    before = [(folder / f"{n}.json").read_text() for n in names]
    exp = load_experiment(tiny_results.parent / "tiny.toml", "tiny", out=tiny_results)
    run_experiment(exp, only=list(names), progress=False)
    assert [(folder / f"{n}.json").read_text() for n in names] == before
    exp.p = {**exp.p, "lr": 2e-3}  # changed settings: the cached result is stale
    run_experiment(exp, only=["small"], progress=False)
    assert json.loads((folder / "small.json").read_text())["config"]["lr"] == 2e-3


@pytest.fixture
def tiny_copy(tiny_results, tmp_path):
    """A private copy of the tiny experiment's results, and the experiment reading it."""
    out = tmp_path / "results"
    shutil.copytree(tiny_results, out)
    return load_experiment(tiny_results.parent / "tiny.toml", "tiny", out=out)


def test_small_run_retrains_when_its_weights_are_missing(tiny_copy):
    """The small model's weights are not committed: a fresh clone must retrain it (the
    same model: a run is a function of its settings), not crash at the first expansion."""
    run_experiment(tiny_copy, only=["small"], progress=False)  # current (another test edits)
    weights = tiny_copy.out / "small.safetensors"
    before = weights.read_bytes()
    weights.unlink()
    run_experiment(tiny_copy, only=["small", "lemon-s0"], progress=False)
    assert weights.read_bytes() == before


def test_stale_scratch_runs_set_no_target(tiny_copy):
    assert experiment.scratch_target(tiny_copy) is not None
    tiny_copy.p = {**tiny_copy.p, "warmup": 2}  # the scratch runs on disk are now stale
    assert experiment.scratch_target(tiny_copy) is None
    lemon = next(s for s in tiny_copy.specs() if s.name == "lemon-s0")
    data = experiment.load_data(tiny_copy)
    with pytest.raises(HarnessError, match="scratch runs first"):
        experiment.run_one(tiny_copy, lemon, data, progress=False)


def test_force_starts_over_instead_of_resuming_a_leftover_checkpoint(tiny_copy):
    leftover = tiny_copy.out / "ckpt" / "scratch-s0"
    leftover.mkdir(parents=True)
    (leftover / "progress.json").write_text("{not a checkpoint")
    run_experiment(tiny_copy, only=["scratch-s0"], progress=False, force=True)
    assert not leftover.exists()
    assert json.loads((tiny_copy.out / "scratch-s0.json").read_text())["history"][-1]["step"] == 4


def test_a_config_naming_an_unknown_baseline_is_refused(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace('"stack-default"', '"stack-cosine"'))
    with pytest.raises(HarnessError, match="unknown baseline 'stack-cosine'"):
        run_specs(load_experiment(config, "tiny", out=tmp_path).p)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text, "{config}: no preset 'huge' (have ['tiny'])"),
        (
            lambda text: text.replace("[data]", "[unused]"),
            "{config}: no [data] table (where the data comes from)",
        ),
        (
            lambda text: text.replace('kind = "text_files"', 'kind = "parquet"'),
            "[data]: unknown kind 'parquet' (known: datasets_on_disk, idx_images, "
            "image_folder, text_file, text_files)",
        ),
    ],
    ids=["preset", "no-data", "data-kind"],
)
def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path, capsys, edit, message):
    config = tmp_path / "tiny.toml"
    config.write_text(edit(TINY))
    preset = "huge" if "preset" in message else "tiny"
    assert cli.main([str(config), "--preset", preset, "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == "error: " + message.format(config=config) + "\n"


def test_savings_arithmetic(monkeypatch):
    def run(name, group, vals, fps):
        hist = [{"step": 10 * i, "val_loss": v, "flops": 10 * i * fps} for i, v in enumerate(vals)]
        init = {"source": "small", "reference": "scratch"}.get(group, "expand")
        return {"run": {"group": group, "init": init}, "history": hist}

    runs = {
        "small": run("small", "source", [5, 3], 1.0),  # 10 FLOPs
        "scratch-s0": run("s", "reference", [5, 4, 3, 2.1], 10.0),
        "scratch-s1": run("s", "reference", [5, 4, 3, 1.9], 10.0),  # target 2.0, 300 FLOPs
        "lemon-s0": run("l", "headline", [3, 2.5, 1.99], 10.0),  # hit at 20 steps = 200
        "aki-s0": run("a", "baseline", [4, 3, 2.5], 10.0),
    }
    partial = {k: v for k, v in runs.items() if k in ("small", "scratch-s0")}
    assert report.summarise(partial) == {}  # no LEMON run yet: no savings to report
    s = report.summarise(runs)
    assert s["target"] == pytest.approx(2.0)
    rows = {r["run"]: r for r in s["rows"]}
    assert rows["lemon-s0"]["hit_step"] == 20
    assert rows["lemon-s0"]["saved"] == pytest.approx(1 - 200 / 300)
    assert rows["lemon-s0"]["saved_net"] == pytest.approx(1 - 210 / 300)
    assert rows["aki-s0"]["saved"] is None
    assert report.saved_by_method(s) == {"lemon": [pytest.approx(1 / 3)], "aki": [None]}
    assert "aki" in report.verdict(s) and "One seed, no verdict: aki" in report.verdict(s)
    assert "not reached" in report.table(s)
    # the dip: the worst loss above the source's final (3) in the first DIP_WINDOW x T (15)
    monkeypatch.setattr(report, "DIP_WINDOW", 0.5)
    rows = {r["run"]: r for r in report.summarise(runs)["rows"]}
    assert rows["lemon-s0"]["dip"] == pytest.approx(-0.5) and rows["aki-s0"]["dip"] == 0.0
    assert s["paired"]["aki"]["d_loss"] == [pytest.approx(0.51)]  # 2.5 - 1.99 at step 20


def _import_script(path: Path):
    """A script (examples/demo.py, experiments/run.py), not part of the package: by path."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripts_put_their_results_next_to_themselves_not_in_the_working_directory():
    assert _import_script(ROOT / "experiments" / "run.py").RESULTS == RESULTS
    assert _import_script(ROOT / "examples" / "demo.py").OUT == ROOT / "demo_out"


def test_demo_quick_tells_the_story(tmp_path, capsys):
    demo = _import_script(ROOT / "examples" / "demo.py")
    demo.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "LOSSLESS" in out and "lemon-s0" in out and "FLOPs" in out
    folder = tmp_path / "training" / "demo" / "quick"
    assert (folder / "curves.png").stat().st_size > 0
    assert (folder / "small.safetensors").exists()  # cached for the next run
    demo.main(["--quick", "--quiet", "--out", str(tmp_path)])
    assert capsys.readouterr().out == ""
    assert "decay over 0.5 T: 4 steps" in out  # the paper's T/2 of 8 steps, said


def test_demo_decay_is_a_fraction_of_t(tmp_path, capsys):
    demo = _import_script(ROOT / "examples" / "demo.py")
    demo.main(["--quick", "--decay", "0.25", "--out", str(tmp_path)])
    assert "decay over 0.25 T: 2 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.main(["--quick", "--decay", "1.5", "--out", str(tmp_path)])
    assert "is not a fraction of T in (0, 1]" in capsys.readouterr().err


CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
PRESETS = [(p, name) for p in CONFIGS for name in tomllib.loads(p.read_text())["preset"]]
# the presets with committed results (experiments/results/{name}/{preset}/)
COMMITTED = [
    (p, preset)
    for p, preset in PRESETS
    if (RESULTS / tomllib.loads(p.read_text())["name"] / preset).is_dir()
]


@pytest.mark.parametrize(("path", "preset"), COMMITTED, ids=[f"{p.stem}-{n}" for p, n in COMMITTED])
def test_committed_results_match_the_cache_keys_computed_now(path, preset):
    """Every committed run JSON is current: its ``key`` equals the key the harness computes
    now, so nothing re-runs. A refactor that changed a key (a renamed RunSpec or RunConfig
    field, a changed default) would throw away hours of training."""
    exp = load_experiment(path, preset, out=RESULTS)
    target = experiment.scratch_target(exp)
    specs = {s.name: s for s in exp.specs()}
    saved = {f.stem for f in exp.out.glob("*.json")} - {"summary", "invocation"}
    if target is None or saved != set(specs):  # the key function itself: test_..._issue12
        pytest.skip("results predate this preset's config: experiments/run_issue12.sh")
    for name, spec in specs.items():
        record = json.loads((exp.out / f"{name}.json").read_text())
        cfg = experiment.run_config(exp, spec, target)
        assert record["key"] == experiment.cache_key(exp, spec, cfg), name


def test_committed_presets_with_results():
    assert {(p.stem, n) for p, n in COMMITTED} >= {("lm_llama", "small"), ("lm_llama", "medium")}


@pytest.mark.parametrize(("path", "preset"), PRESETS, ids=[f"{p.stem}-{n}" for p, n in PRESETS])
def test_every_committed_preset_plans_the_large_model(path, preset):
    """Each config's presets (the GPU ones too, never run here) name a growth that every
    run's method accepts and that lands exactly on the large model's config."""
    import lemonkit
    from lemonkit.harness.models import _config, expand_kwargs

    exp = load_experiment(path, preset, out=RESULTS)
    seq = exp.p.get("seq_len", 0)
    source, large = _config(exp.p["small"], seq), _config(exp.p["large"], seq)
    specs = [s for s in exp.specs() if s.init == "expand"]
    assert {s.group for s in specs} >= {"headline"}
    growths = {(s.method, s.depth, json.dumps(s.options, sort_keys=True)) for s in specs}
    for method, depth, options in growths:
        if depth not in lemonkit.DEPTHS:  # a rule of a newer lemonkit (issue 11)
            continue
        plan = lemonkit.make_plan(
            source,
            **expand_kwargs(exp.p["large"]),
            method=method,
            depth=depth,
            allow_lossy=True,
            **json.loads(options),
        )
        assert (plan.lossy_reason is None) == (method != "aki" and depth != "stack")
        made = plan.target_config.to_dict()
        assert plan.target_config.num_hidden_layers == large.num_hidden_layers
        assert plan.target_config.hidden_size == large.hidden_size
        for key, value in large.to_dict().items():
            if key == "pooler_output_size":  # ViT's pooler keeps its size (unused here)
                continue
            if key.endswith(("_size", "_layers", "_heads", "heads")) and key in made:
                assert made[key] == value, (key, made[key], value)


# ---------------------------------------------------------------- the package's shape
