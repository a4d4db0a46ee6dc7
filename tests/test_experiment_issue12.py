"""The evidence harness of issue 12, cheaply (no training): the growth methods as data, the
seeds and runs every config plans, the committed results' keys, the HyperCloning noise,
the paired statistics and the local subword vocabulary."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import lemonkit
from lemonkit.harness import experiment, stats, tokenize
from lemonkit.harness.data import TextData
from lemonkit.harness.experiment import Experiment, load_experiment
from lemonkit.harness.growth import GROWTHS, PAPER_C4, add_noise
from lemonkit.harness.loop import RunConfig
from lemonkit.harness.models import build_model
from lemonkit.harness.runs import BASELINES, NOT_RUNS, RunSpec, key_fields, run_specs

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.toml"))
RESULTS = ROOT / "experiments" / "results"

# the keywords the harness may hand lemonkit.expand (issue 11 adds the last three)
EXPAND_KEYWORDS = {"method", "depth", "split", "sigma", "new_blocks"}


def test_every_growth_method_is_expand_keywords_and_the_paper_is_c4_per_family():
    for g in GROWTHS.values():
        for task in ("causal_lm", "mlm", "image"):
            assert set(g.kwargs(task)) <= EXPAND_KEYWORDS, g.name
    assert GROWTHS["lemon"].kwargs("image") == {}
    assert GROWTHS["lemon-paper"].kwargs("image") == {
        "split": "paper",
        "sigma": 0.02,
        "depth": "cancel",
    }
    for task in ("causal_lm", "mlm"):
        assert PAPER_C4[task] == {"split": "paper", "sigma": 0.002, "new_blocks": "next"}
    assert GROWTHS["lemon-cancel"].kwargs("mlm") == {"depth": "cancel"}
    assert GROWTHS["stack"].kwargs("mlm") == {"depth": "stack"}  # G_stack: whole stack
    assert GROWTHS["hyperclone"].kwargs("mlm") == {"method": "net2net"}
    assert GROWTHS["hyperclone"].noise_snr > 0


def test_run_specs_give_every_method_its_seeds_and_the_task_its_options():
    preset = {
        "seeds": [0, 1, 2],
        "baseline_seeds": [0, 1, 2],
        "ablation_seeds": [0, 1],
        "baselines": list(BASELINES),
        "ablation_sigma": [0.02],
        "ablation_spread": [0.0, 0.95],
        "ablation_snr": [10.0],
        "grow_after": [0.5, 2.0],
        "anneal_source": True,
    }
    specs = {s.name: s for s in run_specs(preset, task="image")}
    assert len(specs) == len(run_specs(preset, task="image"))  # names are unique
    for b in BASELINES:
        assert {f"{b}-s{k}" for k in (0, 1, 2)} <= set(specs), b
    paper = specs["lemon-paper-s1"]
    assert (paper.method, paper.depth, paper.options) == (
        "lemon",
        "cancel",
        {"split": "paper", "sigma": 0.02},
    )
    lm = {s.name: s for s in run_specs(preset, task="causal_lm")}["lemon-paper-s1"]
    assert lm.options == {"split": "paper", "sigma": 0.002, "new_blocks": "next"}
    assert specs["lemon-paper-default-s2"].decay_ratio == 1.0  # the scratch schedule
    assert specs["lemon-paper-s2"].decay_ratio == 0.5  # the LEMON recipe
    assert specs["lemon-paper-sigma0.02-s1"].options["sigma"] == 0.02
    assert specs["lemon-spread0-s0"].options == {"spread": 0.0}  # equal splits
    assert specs["lemon-spread0.95-s1"].method == "lemon"
    assert specs["hyperclone-snr10-s0"].noise_snr == 10.0
    assert specs["lemon-x0.5-s1"].source == "small-x0.5"
    assert specs["small-x2"].steps_ratio == 2.0 and specs["small-annealed"].anneal
    assert specs["lemon-annealed-s0"].source == "small-annealed"
    assert [s.name for s in run_specs(preset)][:4] == [
        "small",
        "small-x0.5",
        "small-x2",
        "small-annealed",
    ]


def test_a_spec_at_its_defaults_keeps_the_cache_key_of_older_results():
    old = [f.name for f in fields(RunSpec)][:12]  # the fields every committed key holds
    assert list(key_fields(RunSpec("lemon-s0", "expand", "headline"))) == old
    spec = RunSpec("x", "expand", "baseline", options={"split": "paper"}, source="small-x2")
    assert key_fields(spec)["options"] == {"split": "paper"}
    assert key_fields(spec)["source"] == "small-x2" and "anneal" not in key_fields(spec)


COMMITTED = sorted(  # run records: not summaries, not the git-ignored .cache/ (tokenizers)
    f
    for f in RESULTS.glob("*/*/*.json")
    if f.name not in NOT_RUNS and not f.relative_to(RESULTS).parts[0].startswith(".")
)


def test_committed_keys_are_what_the_key_function_computes_from_their_own_settings():
    """Whatever the configs say now, the key of every committed run is reproduced from its
    recorded spec and settings: a refactor of the key would be caught here."""
    assert COMMITTED
    names = {f.name for f in fields(RunSpec)}
    for f in COMMITTED:
        record = json.loads(f.read_text())
        key = record["key"]
        task = "mlm" if "mask_prob" in key["config"] else "causal_lm"
        exp = Experiment("x", "x", task, "p", key["models"], f.parent, {}, key.get("tokenizer"))
        spec = RunSpec(**{k: v for k, v in record["run"].items() if k in names})
        cfg = RunConfig(**record["config"])
        assert experiment.cache_key(exp, spec, cfg) == key, f


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_small_preset_has_three_seeds_for_every_method_and_two_for_ablations(path):
    p = tomllib.loads(path.read_text())["preset"]["small"]
    assert len(p["seeds"]) >= 3 and len(p.get("baseline_seeds", [])) >= 3
    if any(k.startswith("ablation_") and k != "ablation_seeds" for k in p):
        assert len(p["ablation_seeds"]) >= 2


def test_the_gpu_presets_run_two_seeds_of_every_method():
    for path in CONFIGS:
        for name, p in tomllib.loads(path.read_text())["preset"].items():
            if name in ("medium", "large"):
                assert len(p["seeds"]) >= 2 and len(p["baseline_seeds"]) >= 2, (path, name)


def test_hyperclone_noise_has_the_stated_snr_and_spares_the_embeddings():
    spec = {"arch": "llama", "hidden": 64, "layers": 1, "heads": 4, "intermediate": 128}
    model = build_model(spec, "causal_lm", seq_len=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_noise(model, snr=100.0, seed=0)
    after = dict(model.named_parameters())
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    w = "model.layers.0.mlp.up_proj.weight"
    ratio = before[w].var() / (after[w] - before[w]).var()
    assert 80 < ratio < 125  # power ratio 100, up to sampling error
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])  # 1-D kept


def test_paired_comparison_pairs_seeds_and_applies_the_two_se_rule():
    def hist(vals):
        return [{"step": 10 * i, "val_loss": v} for i, v in enumerate(vals)]

    lemon = {k: {"history": hist([3, 2.0 + 0.01 * k]), "saved": 0.5} for k in range(3)}
    worse = {k: {"history": hist([3, 2.1 + 0.01 * k]), "saved": 0.4} for k in range(3)}
    noisy = {k: {"history": hist([3, 2.0 + 0.05 * (-1) ** k]), "saved": None} for k in range(3)}
    p = stats.paired(lemon, worse)
    assert p["seeds"] == [0, 1, 2] and p["verdict"] == "LEMON ahead"
    assert p["d_loss"] == pytest.approx([0.1] * 3) and p["d_saved"] == pytest.approx([0.1] * 3)
    assert stats.paired(lemon, noisy)["verdict"] == "no difference"
    assert stats.paired(worse, lemon)["verdict"] == "other ahead"
    assert stats.paired({0: lemon[0]}, {0: worse[0]})["verdict"] == "one seed: no verdict"
    assert stats.mean_se([1.0])[1] == math.inf
    assert stats.mean_std([0.5, None], pct=True) == "reached by 1/2 seeds"


def test_ablations_get_paired_verdicts_in_their_own_sentence():
    """An ablation (two seeds) is paired with LEMON like a method, but its verdict is not
    read as a method's: 'LEMON loses to' names methods only."""
    from lemonkit.harness import report

    def run(method, seed, group, loss):
        name = f"{method}-s{seed}"
        row = {"run": name, "method": method, "seed": seed, "group": group, "saved": 0.5}
        history = [{"step": 0, "val_loss": 3.0}, {"step": 20, "val_loss": loss}]
        return name, {"history": history}, row

    made = [run("lemon", k, "headline", 2.0 + 0.01 * k) for k in range(2)]
    made += [run("stack", k, "baseline", 1.9 + 0.01 * k) for k in range(2)]
    made += [run("lemon-spread0", k, "ablation", 1.8 + 0.01 * k) for k in range(2)]
    runs, rows = {n: r for n, r, _ in made}, [row for _, _, row in made]
    summary = {"rows": rows, "paired": report.paired_comparisons(runs, rows)}
    assert summary["paired"]["lemon-spread0"]["verdict"] == "other ahead"
    words = report.verdict(summary)
    assert "**LEMON loses to stack**" in words
    assert words.endswith("same rule): other ahead: lemon-spread0.")


def test_a_subword_vocabulary_is_trained_once_and_masked_lm_batches_use_it(tmp_path):
    text = b"def spam(eggs):\n    return eggs + 1  # ham\n" * 200
    raw = torch.tensor(list(text), dtype=torch.uint8)
    spec = {"kind": "bpe", "vocab": 320}
    data = tokenize.encode(TextData(raw, raw[:400]), spec, tmp_path)
    cached = list(tmp_path.glob("*.pt"))
    assert len(cached) == 1 and (tmp_path / cached[0].with_suffix(".json").name).exists()
    assert data.mask_id == 322 and tokenize.model_vocab(spec) == 324
    assert int(data.train.min()) >= 2 and int(data.train.max()) < data.mask_id
    again = tokenize.encode(TextData(raw, raw[:400]), spec, tmp_path)  # read from the cache
    assert torch.equal(again.train, data.train)
    x, y = data.mlm_batch("train", 0, batch_size=8, seq_len=16, seed=0, mask_prob=0.5)
    assert (x == data.mask_id).any() and not (x == 1).any()  # never the padding id
    assert int(x.max()) <= data.mask_id and (y[y != -100] >= 2).all()
    with pytest.raises(lemonkit.LemonkitError, match="unknown kind"):
        tokenize.check({"kind": "unigram", "vocab": 4096})


def test_a_tokenized_config_sizes_the_models_and_keys_the_runs(tmp_path):
    exp = load_experiment(ROOT / "experiments" / "configs" / "bert.toml", "small", tmp_path)
    assert exp.tokenizer == {"kind": "bpe", "vocab": 4096} and exp.p["mask_prob"] == 0.15
    assert exp.p["small"]["vocab"] == exp.p["large"]["vocab"] == 4100
    spec = exp.specs()[1]
    key = experiment.cache_key(exp, spec, experiment.run_config(exp, spec, None))
    assert key["tokenizer"] == exp.tokenizer
    model = build_model(exp.p["large"], "mlm", exp.p["seq_len"])
    assert model.config.vocab_size == 4100


# the small model of the tests that grow one (1 x 32 -> 2 x 64 in the first)
TINY_LLAMA = {
    "arch": "llama",
    "hidden": 32,
    "layers": 1,
    "heads": 4,
    "kv_heads": 2,
    "intermediate": 64,
}


def test_the_paper_construction_starts_losslessly(tmp_path):
    """lemon-paper (split="paper", sigma, new_blocks="next") expands without loss."""
    cfg = {"name": "t", "task": "causal_lm", "data": {"kind": "text_files"}, "preset": {}}
    small = dict(TINY_LLAMA)
    cfg["preset"]["p"] = {
        "seeds": [0],
        "seq_len": 16,
        "baselines": ["lemon-paper"],
        "small": small,
        "large": {
            **small,
            "hidden": 64,
            "layers": 2,
            "heads": 8,
            "kv_heads": 4,
            "intermediate": 128,
        },
    }
    exp = experiment.experiment_from_config(cfg, "p", tmp_path)
    exp.out.mkdir(parents=True)
    from lemonkit.harness.checkpoints import save_weights

    save_weights(build_model(small, "causal_lm", 0, seed=1000), exp.out / "small.safetensors")
    data = TextData(
        torch.randint(0, 256, (4000,), dtype=torch.uint8),
        torch.randint(0, 256, (2000,), dtype=torch.uint8),
    )
    spec = next(s for s in exp.specs() if s.name == "lemon-paper-s0")
    _, facts = experiment._init_model(exp, spec, data)
    assert facts["init_rel_error"] < 1e-5 and facts["growth"]["split"] == "paper"


def test_type2_and_stack_runs_and_the_report_ignores_prepared_data(tmp_path):
    """``lemon-cancel`` (type-2 depth) and ``stack`` both run; the report reads no JSON
    under ``.cache/``."""
    data = tomllib.loads((ROOT / "experiments" / "configs" / "lm_llama.toml").read_text())
    small = dict(TINY_LLAMA)
    preset = {
        "small": small,
        "large": {**small, "layers": 2},
        "seq_len": 16,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup": 1,
        "small_steps": 2,
        "steps": 4,
        "eval_every": 2,
        "eval_batches": 1,
        "seeds": [0],
        "baselines": ["lemon-cancel", "stack"],
    }
    cfg = {"name": "t", "task": "causal_lm", "data": data["data"], "preset": {"p": preset}}
    exp = experiment.experiment_from_config(cfg, "p", tmp_path)
    experiment.run_experiment(exp, progress=False)
    assert (exp.out / "stack-s0.json").exists()
    assert json.loads((exp.out / "lemon-cancel-s0.json").read_text())["growth"]["depth"] == "cancel"
    prepared = tmp_path / ".cache" / "tokenizers"
    prepared.mkdir(parents=True)
    (prepared / "bpe-300-0.json").write_text('{"model": {}}')  # a tokenizer, not a run
    from lemonkit.harness import report

    assert "## t — preset `p`" in report.write_results(tmp_path).read_text()
