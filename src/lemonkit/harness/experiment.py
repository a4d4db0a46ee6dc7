"""An experiment config (TOML) -> every run of one comparison, each saved as JSON.

A config names the experiment (``name``, ``title``, ``task``), its data (a ``[data]``
table, see ``sources``) and its presets (``[preset.small]``, ``[preset.large]``...: the
models, steps, seeds, baselines and ablations). ``run_experiment`` trains the runs that
``runs.run_specs`` lists, in order, into ``out/{name}/{preset}/{run}.json``. An optional
``[tokenizer]`` table (``kind``, ``vocab``) trains a subword vocabulary on the training text
(``tokenize``) and sizes the text models' embeddings to it. A run is
skipped when its JSON exists with the same ``cache_key`` (so an interrupted experiment
resumes; a run interrupted half-way resumes from its own checkpoint).

Example:
    >>> cfg = {"name": "lm", "task": "causal_lm", "data": {"kind": "text_files"},
    ...        "preset": {"small": {"seeds": [0]}}}
    >>> exp = experiment_from_config(cfg, "small", out=Path("results"))
    >>> exp.out, [s.name for s in run_specs(exp.p)]
    (PosixPath('results/lm/small'), ['small', 'scratch-s0', 'lemon-s0'])
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

import lemonkit
from lemonkit.harness import invocation, loop, tokenize
from lemonkit.harness import jobs as jobs_module
from lemonkit.harness.checkpoints import remove_checkpoint, save_weights, write_json
from lemonkit.harness.data import ImageData, TextData
from lemonkit.harness.errors import HarnessError
from lemonkit.harness.growth import add_noise, tied_count
from lemonkit.harness.models import TASKS, build_model, expand_kwargs
from lemonkit.harness.runs import NOT_RUNS, RunSpec, is_lossy, key_fields, run_specs
from lemonkit.harness.sources import load_source

log = logging.getLogger(__name__)

DEFAULT_GEOMETRY = {"image_size": 28, "channels": 1, "labels": 10}  # Fashion-MNIST's


@dataclass
class Experiment:
    """One preset of one config; its runs are saved under ``out``."""

    name: str
    title: str
    task: str  # "causal_lm" | "mlm" | "image"
    preset: str
    p: dict  # the preset's values
    out: Path  # this preset's results folder: {results}/{name}/{preset}
    data: dict  # the [data] table: where the data comes from (not part of the cache key)
    tokenizer: dict | None = None  # the [tokenizer] table: a subword vocabulary (key: yes)

    def specs(self) -> list[RunSpec]:
        """Every run of this preset, in order (``runs.run_specs`` for its task)."""
        return run_specs(self.p, self.task)


def experiment_from_config(cfg: dict, preset: str, out: Path, where: str = "config") -> Experiment:
    """One preset of a parsed config; its runs go to ``out/{name}/{preset}``."""
    presets = cfg.get("preset", {})
    if preset not in presets:
        raise HarnessError(f"{where}: no preset {preset!r} (have {sorted(presets)})")
    if "data" not in cfg:
        raise HarnessError(f"{where}: no [data] table (where the data comes from)")
    if cfg["task"] not in set(TASKS.values()):
        raise HarnessError(f"{where}: unknown task {cfg['task']!r}")
    p, tokenizer = presets[preset], cfg.get("tokenizer")
    if tokenizer is not None:  # the text models' embeddings fit the vocabulary
        tokenize.check(tokenizer, f"{where}: [tokenizer]")
        vocab = tokenize.model_vocab(tokenizer)
        p = {**p, "small": {**p["small"], "vocab": vocab}, "large": {**p["large"], "vocab": vocab}}
    return Experiment(
        cfg["name"],
        cfg.get("title", cfg["name"]),
        cfg["task"],
        preset,
        p,
        Path(out) / cfg["name"] / preset,
        cfg["data"],
        tokenizer,
    )


def load_experiment(path: str | Path, preset: str, out: Path) -> Experiment:
    """Read a config file and pick one preset (``small`` for CPU, ``large`` for a GPU)."""
    if not Path(path).is_file():
        raise HarnessError(f"{path}: no such config file")
    try:
        cfg = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"{path}: not valid TOML ({e})") from e
    return experiment_from_config(relative_to(cfg, Path(path).parent), preset, out, str(path))


def relative_to(cfg: dict, folder: Path) -> dict:
    """Relative data roots and tokenizer paths are relative to the config file's folder."""
    cfg = dict(cfg)
    for table, key in (("data", "root"), ("tokenizer", "path")):
        value = cfg.get(table, {}).get(key)
        if value is not None and not Path(value).is_absolute():
            cfg[table] = {**cfg[table], key: str(folder / value)}
    return cfg


def load_data(exp: Experiment) -> TextData | ImageData:
    """The data the experiment's ``[data]`` table names, checked against its task; other
    images than Fashion-MNIST's set the models' ``image_size``, ``channels`` and ``labels``
    (``exp.p``, so the cache key has them)."""
    data = load_source(exp.data)
    if isinstance(data, ImageData) != (exp.task == "image"):
        kind = exp.data.get("kind")
        raise HarnessError(f"{exp.name}: data of kind {kind!r} does not fit task {exp.task!r}")
    if isinstance(data, ImageData):  # images other than Fashion-MNIST's: the ViTs fit them
        geometry = {k: v for k, v in data.geometry().items() if v != DEFAULT_GEOMETRY[k]}
        exp.p = {**exp.p, **{m: {**exp.p[m], **geometry} for m in ("small", "large")}}
    if exp.tokenizer is not None:
        return tokenize.encode(data, exp.tokenizer, tokenize.cache_dir(exp.out.parent.parent))
    return data


def run_config(
    exp: Experiment, spec: RunSpec, target: float | None, progress: bool = False
) -> loop.RunConfig:
    """The training settings of one run (``target``: the scratch runs' mean final loss)."""
    p = exp.p
    if spec.init == "small":  # a source: steps_ratio x small_steps
        steps = decay = round(p["small_steps"] * spec.steps_ratio)
        lr, min_steps = p.get("small_lr", p["lr"]), 0
        min_ratio = p.get("small_min_lr_ratio", p.get("min_lr_ratio", 0.1))
        if spec.anneal:  # decayed to the floor, as a finished pretraining run would be
            min_ratio = p.get("min_lr_ratio", 0.1)
    else:
        steps = round(p["steps"] * spec.steps_ratio)
        decay = round(p["steps"] * spec.decay_ratio)
        min_steps = round(p["steps"] * spec.min_ratio)
        lr, min_ratio = p["lr"] * spec.lr_scale, p.get("min_lr_ratio", 0.1)
    return loop.RunConfig(
        steps=steps,
        lr=lr,
        warmup=p["warmup"],
        batch_size=p["batch_size"],
        seq_len=p.get("seq_len", 0),
        decay_steps=decay,
        min_lr_ratio=min_ratio,
        seed=spec.seed + 1000 * (spec.init == "small"),
        eval_every=p["eval_every"],
        eval_batches=p["eval_batches"],
        ki=spec.ki,
        target=target if spec.stop_at_target else None,  # only runs that stop on it
        stop_at_target=spec.stop_at_target,
        min_steps=min_steps,
        mask_prob=p.get("mask_prob", 0.15),
        ckpt_every=p.get("ckpt_every", 200),
        progress=progress,
        label=f"{exp.name}/{spec.name}",
    )


def load_small_model(exp: Experiment, source: str = "small") -> torch.nn.Module:
    """A trained source model of the experiment (its ``source`` run's weights)."""
    model = build_model(exp.p["small"], exp.task, exp.p.get("seq_len", 0), seed=1000)
    model.load_state_dict(load_file(str(exp.out / f"{source}.safetensors")))
    return model


def _init_model(exp: Experiment, spec: RunSpec, data) -> tuple[torch.nn.Module, dict]:
    """The model a run starts from, and facts about its start (expansion error)."""
    seq = exp.p.get("seq_len", 0)
    if spec.init == "small":
        return build_model(exp.p["small"], exp.task, seq, seed=1000), {}
    if spec.init == "scratch":
        return build_model(exp.p["large"], exp.task, seq, seed=spec.seed), {}
    small = load_small_model(exp, spec.source)
    growth = {"seed": spec.seed, "method": spec.method, "depth": spec.depth, **spec.options}
    big = lemonkit.expand(
        small, **expand_kwargs(exp.p["large"]), **growth, allow_lossy=is_lossy(spec)
    )
    if spec.noise_snr is not None:  # HyperCloning-style: equal splits, then noise
        add_noise(big, spec.noise_snr, seed=spec.seed)
    facts = {"init_rel_error": init_error(small, big, exp, data), "growth": growth}
    facts["tied_units_start"] = tied_count(big)
    return big, facts


@torch.no_grad()
def init_error(small, big, exp: Experiment, data) -> float:
    """Relative max error of the expanded model's logits on one validation batch (f32)."""
    cfg = loop.RunConfig(steps=1, lr=0, warmup=0, batch_size=8, seq_len=exp.p.get("seq_len", 0))
    x, _ = loop.get_batch(exp.task, data, "val", 0, cfg, seed=0)
    a, b = loop.logits_of(small.eval(), exp.task, x), loop.logits_of(big.eval(), exp.task, x)
    big.train()
    return ((a - b).abs().max() / a.abs().max()).item()


def scratch_target(exp: Experiment) -> float | None:
    """Mean final validation loss of the from-scratch seeds; None until every one of them
    has run with the current settings (a stale scratch run must not set the target)."""
    finals = []
    for spec in exp.specs():
        if spec.group != "reference":  # scratch-s{k}; KI runs also start from scratch
            continue
        f = exp.out / f"{spec.name}.json"
        if not f.exists():
            return None
        record = json.loads(f.read_text())
        if record.get("key") != cache_key(exp, spec, run_config(exp, spec, None)):
            return None
        finals.append(record["history"][-1]["val_loss"])
    return sum(finals) / len(finals)


def cache_key(exp: Experiment, spec: RunSpec, cfg: loop.RunConfig) -> dict:
    """What a finished run's JSON must match to be reused: the models, the run, its
    settings (which include the target, so new scratch runs invalidate the rest).
    Settings that do not apply to the task (``mask_prob`` outside masked LM) are left out;
    so is the data's location (``exp.data``): a copy elsewhere gives the same results."""
    config = loop.comparable(cfg)
    if exp.task != "mlm":
        config.pop("mask_prob")
    key = {"models": {"small": exp.p["small"], "large": exp.p["large"]}, "run": key_fields(spec)}
    if exp.tokenizer is not None:  # the data the models see (absent: bytes or images)
        key["tokenizer"] = tokenize.key_of(exp.tokenizer)
    return json.loads(json.dumps({**key, "config": config}))


def run_one(exp: Experiment, spec: RunSpec, data, progress: bool = True, force=False) -> dict:
    """Train one run (or load it when done); returns its JSON record."""
    rank, _ = loop.world()
    target = scratch_target(exp)
    if spec.init == "expand" and target is None:
        raise HarnessError(
            f"{spec.name} needs the scratch runs first (missing, or run with other settings)"
        )
    cfg = run_config(exp, spec, target, progress)
    key = cache_key(exp, spec, cfg)
    cached = None if force else _cached(exp, spec, key)
    if cached is not None:
        return cached
    ckpt_dir = exp.out / "ckpt" / spec.name
    if force:  # start over, not from a leftover checkpoint
        remove_checkpoint(ckpt_dir)
    model, facts = _init_model(exp, spec, data)
    teacher = load_small_model(exp, spec.source) if spec.ki else None
    probe = _tied_probe if spec.init == "expand" and "tied_units_start" in facts else None
    res = loop.train(model, exp.task, data, cfg, teacher=teacher, ckpt_dir=ckpt_dir, probe=probe)
    record = {
        "key": key,
        "experiment": exp.name,
        "preset": exp.preset,
        "run": asdict(spec),
        "config": loop.config_dict(cfg),
        "history": res.history,
        "flops_per_step": res.flops_per_step,
        "stopped_early": res.stopped_early,
        "world_size": res.world_size,
        "wall_s": res.wall_s,
        "finished_at": time.time(),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "unigram_nats": unigram_nats(data),
        **facts,
    }
    if rank == 0:
        _save(exp, spec, model, record)
        remove_checkpoint(ckpt_dir)
    if dist.is_initialized():
        dist.barrier()  # the next run reads what rank 0 just wrote
    return record


def unigram_nats(data) -> float | None:
    """The unigram plateau of text data: the entropy of its training tokens (nats); a model
    that only learned token frequencies sits there. None for images."""
    if not isinstance(data, TextData):
        return None
    counts = torch.bincount(data.train.long()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _tied_probe(model: torch.nn.Module) -> dict:
    """What the first evaluation after the start records besides the loss: tied units."""
    return {"tied_units": tied_count(model)}


def _cached(exp: Experiment, spec: RunSpec, key: dict) -> dict | None:
    """The run's saved record if it is current (same key; for ``small``, its weights too)."""
    path = exp.out / f"{spec.name}.json"
    if not path.exists():
        return None
    # the small model's weights are not committed: a fresh clone trains it again
    weights = exp.out / f"{spec.name}.safetensors"
    weights_missing = spec.init == "small" and not weights.exists()
    cached = json.loads(path.read_text())
    if cached.get("key") == key and not weights_missing:
        return cached
    why = "its weights are missing" if weights_missing else "settings changed since it ran"
    log.warning("%s: %s; running it again", spec.name, why)
    return None


def _save(exp: Experiment, spec: RunSpec, model: torch.nn.Module, record: dict) -> None:
    """Write the run's JSON (and the small model's weights), each atomically."""
    exp.out.mkdir(parents=True, exist_ok=True)
    if spec.init == "small":
        weights = exp.out / f"{spec.name}.safetensors.tmp"
        save_weights(model, weights)
        weights.replace(exp.out / f"{spec.name}.safetensors")
    write_json(exp.out / f"{spec.name}.json", record)


def run_experiment(
    exp: Experiment,
    only: list[str] | None = None,
    progress: bool = True,
    force: bool = False,
    jobs: int = 1,
    threads: int = 1,
) -> list[dict]:
    """Every run of ``exp`` in dependency order (``only``: a subset by name); ``jobs`` > 1
    runs that many at a time in worker processes of ``threads`` torch threads each
    (:mod:`lemonkit.harness.jobs`)."""
    start, cpu_start = time.time(), invocation.cpu_seconds()
    data = load_data(exp)  # also trains the tokenizer once, before any worker needs it
    specs = [s for s in exp.specs() if not only or s.name in only]
    if jobs > 1:
        records = jobs_module.run_in_phases(
            exp, specs, jobs, threads, load=load_data, run=run_one, force=force
        )
    else:
        records = []
        for spec in specs:
            log.info("%s/%s: %s", exp.name, exp.preset, spec.name)
            records.append(run_one(exp, spec, data, progress, force=force))
    if not only and loop.world()[0] == 0:
        invocation.save(exp.out, records, start, cpu_start, jobs, threads)
    return records


def stale_results(exp: Experiment) -> list[Path]:
    """Run records (and source weights) in the preset's folder that its config no longer
    lists: an older protocol's runs, which the report would otherwise show."""
    names = {s.name for s in exp.specs()} | {Path(f).stem for f in NOT_RUNS}
    files = [*exp.out.glob("*.json"), *exp.out.glob("*.safetensors")]
    return sorted(f for f in files if f.stem not in names)


def prune(exp: Experiment) -> list[Path]:
    """Delete :func:`stale_results` and their checkpoints; returns what was deleted."""
    stale = stale_results(exp)
    for f in stale:
        log.warning("removing %s (not a run of %s/%s any more)", f, exp.name, exp.preset)
        f.unlink()
        remove_checkpoint(exp.out / "ckpt" / f.stem)
    return stale
