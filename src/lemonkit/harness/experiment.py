"""An experiment config (TOML) -> every run of one comparison, each saved as JSON.

Runs, in order (each skipped when its JSON exists, so an interrupted experiment resumes;
a run interrupted half-way resumes from its own checkpoint):

- ``small``: the source model, trained from scratch (``small_steps``).
- ``scratch-s{k}``: the large model from scratch, ``steps`` = T steps, one per seed. Their
  mean final validation loss is the *target*.
- ``lemon-s{k}``: LEMON expansion of ``small``, LEMON recipe (same peak LR, decay over
  ``lemon_ratio`` x T), one per seed (expansion seed and data seed).
- baselines: ``net2net`` (bert2BERT-FPI), ``aki`` (bert2BERT-AKI), ``stack`` (StackBERT
  depth), trained with the LEMON recipe, one run per ``baseline_seeds`` (default: the first
  seed); ``lemon-default`` (LEMON, the scratch schedule over T), ``net2net-default``,
  ``aki-default``, ``stack-default`` (the same with the scratch schedule) and ``ki-soft`` /
  ``ki-hard`` (the large model from scratch learning from ``small``), the first seed.
- ablations: ``lemon-lr{f}`` (peak LR x f) and ``lemon-decay{r}`` (decay over r x T).

Example:
    >>> exp = load_experiment("experiments/configs/lm_llama.toml", "small")
    >>> [s.name for s in run_specs(exp)][:4]
    ['small', 'scratch-s0', 'scratch-s1', 'lemon-s0']
"""

from __future__ import annotations

import argparse
import json
import logging
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

import lemonkit
from lemonkit.harness import loop
from lemonkit.harness.data import load_fashion_mnist, load_text
from lemonkit.harness.models import build_model, expand_kwargs

log = logging.getLogger(__name__)

OUT = Path("experiments/results")
LOSSY = {"aki", "stack"}


@dataclass
class Experiment:
    name: str
    title: str
    task: str
    preset: str
    p: dict  # the preset's values
    out: Path


@dataclass
class RunSpec:
    """One run. ``init``: "small" (train the source), "scratch", "expand"."""

    name: str
    init: str
    group: str  # "source" | "reference" | "headline" | "baseline" | "ablation"
    seed: int = 0
    method: str = "lemon"
    depth: str = "zero"
    lr_scale: float = 1.0
    decay_ratio: float = 1.0  # decay length as a fraction of T
    steps_ratio: float = 1.0  # longest run as a fraction of T
    min_ratio: float = 0.0  # with stop_at_target: not before this fraction of T
    ki: str | None = None
    stop_at_target: bool = False


def load_experiment(path: str | Path, preset: str, out: Path = OUT) -> Experiment:
    """Read a config file and pick one preset (``small`` for CPU, ``large`` for a GPU)."""
    cfg = tomllib.loads(Path(path).read_text())
    presets = cfg.get("preset", {})
    if preset not in presets:
        raise SystemExit(f"{path}: no preset {preset!r} (have {sorted(presets)})")
    return Experiment(
        cfg["name"],
        cfg.get("title", cfg["name"]),
        cfg["task"],
        preset,
        presets[preset],
        out / cfg["name"] / preset,
    )


def run_specs(exp: Experiment) -> list[RunSpec]:
    """Every run of the experiment, in the order they must run (names end in -s{seed})."""
    p = exp.p
    r = p.get("lemon_ratio", 0.5)
    # the LEMON recipe: decay over r T; then on at the floor LR until the target (at most T)
    recipe = {"decay_ratio": r, "min_ratio": r, "stop_at_target": True}
    seeds, first = p["seeds"], p["seeds"][:1]
    specs = [RunSpec("small", "small", "source")]
    specs += [RunSpec(f"scratch-s{s}", "scratch", "reference", seed=s) for s in seeds]
    specs += [RunSpec(f"lemon-s{s}", "expand", "headline", seed=s, **recipe) for s in seeds]
    for b in p.get("baselines", []):
        for s in p.get("baseline_seeds", first) if b in EXPANSION_BASELINES else first:
            specs.append(_baseline(b, s, recipe))
    for f in p.get("ablation_lr", []):
        specs.append(RunSpec(f"lemon-lr{f:g}", "expand", "ablation", lr_scale=f, **recipe))
    for d in p.get("ablation_decay", []):
        decay = {**recipe, "decay_ratio": d, "min_ratio": d}
        specs.append(RunSpec(f"lemon-decay{d:g}", "expand", "ablation", **decay))
    return specs


EXPANSION_BASELINES = ("net2net", "aki", "stack")
DEFAULT_SCHEDULE_BASELINES = tuple(f"{b}-default" for b in EXPANSION_BASELINES)


def _baseline(b: str, seed: int, recipe: dict) -> RunSpec:
    name = f"{b}-s{seed}"
    if b in DEFAULT_SCHEDULE_BASELINES:  # the same start, the from-scratch schedule
        spec = _baseline(b.removesuffix("-default"), seed, recipe)
        return replace(spec, name=name, decay_ratio=1.0, min_ratio=0.0)
    if b == "lemon-default":  # LEMON init, the from-scratch schedule (decay over T)
        return RunSpec(name, "expand", "baseline", seed=seed, stop_at_target=True)
    if b == "net2net":  # equal splits, LEMON's zero-output depth: isolates symmetry breaking
        return RunSpec(name, "expand", "baseline", seed=seed, method=b, **recipe)
    if b == "aki":  # bert2BERT: AKI width, depth by stacking the widened model
        return RunSpec(name, "expand", "baseline", seed=seed, method=b, depth="stack", **recipe)
    if b == "stack":  # LEMON width, StackBERT depth: isolates the depth rule
        return RunSpec(name, "expand", "baseline", seed=seed, depth="stack", **recipe)
    if b in ("ki-soft", "ki-hard"):
        return RunSpec(name, "scratch", "baseline", seed=seed, ki=b[3:], stop_at_target=True)
    raise SystemExit(f"unknown baseline {b!r}")


def load_data(task: str):
    return load_fashion_mnist() if task == "image" else load_text()


def _run_config(exp: Experiment, spec: RunSpec, target: float | None, progress: bool):
    p = exp.p
    if spec.init == "small":
        steps, decay, lr = p["small_steps"], p["small_steps"], p.get("small_lr", p["lr"])
        min_steps = 0
        min_ratio = p.get("small_min_lr_ratio", p.get("min_lr_ratio", 0.1))
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


def _small_model(exp: Experiment) -> torch.nn.Module:
    model = build_model(exp.p["small"], exp.task, exp.p.get("seq_len", 0), seed=1000)
    model.load_state_dict(load_file(str(exp.out / "small.safetensors")))
    return model


def _init_model(exp: Experiment, spec: RunSpec) -> tuple[torch.nn.Module, dict]:
    """The model a run starts from, and facts about its start (expansion error)."""
    seq = exp.p.get("seq_len", 0)
    if spec.init == "small":
        return build_model(exp.p["small"], exp.task, seq, seed=1000), {}
    if spec.init == "scratch":
        return build_model(exp.p["large"], exp.task, seq, seed=spec.seed), {}
    small = _small_model(exp)
    lossy = spec.method in LOSSY or spec.depth in LOSSY
    big = lemonkit.expand(
        small,
        **expand_kwargs(exp.p["large"]),
        seed=spec.seed,
        method=spec.method,
        depth=spec.depth,
        allow_lossy=lossy,
    )
    return big, {"init_rel_error": init_error(small, big, exp)}


@torch.no_grad()
def init_error(small, big, exp: Experiment) -> float:
    """Relative max error of the expanded model's logits on one validation batch (f32)."""
    data = load_data(exp.task)
    cfg = loop.RunConfig(steps=1, lr=0, warmup=0, batch_size=8, seq_len=exp.p.get("seq_len", 0))
    x, _ = loop.get_batch(exp.task, data, "val", 0, cfg, seed=0)
    a, b = loop.logits_of(small.eval(), exp.task, x), loop.logits_of(big.eval(), exp.task, x)
    big.train()
    return ((a - b).abs().max() / a.abs().max()).item()


def scratch_target(exp: Experiment) -> float | None:
    """Mean final validation loss of the from-scratch seeds; None until every one of them
    has run with the current settings (a stale scratch run must not set the target)."""
    finals = []
    for spec in run_specs(exp):
        if spec.group != "reference":  # scratch-s{k}; KI runs also start from scratch
            continue
        f = exp.out / f"{spec.name}.json"
        if not f.exists():
            return None
        record = json.loads(f.read_text())
        if record.get("key") != cache_key(exp, spec, _run_config(exp, spec, None, False)):
            return None
        finals.append(record["history"][-1]["val_loss"])
    return sum(finals) / len(finals)


def cache_key(exp: Experiment, spec: RunSpec, cfg: loop.RunConfig) -> dict:
    """What a finished run's JSON must match to be reused: the models, the run, its
    settings (which include the target, so new scratch runs invalidate the rest).
    Settings that do not apply to the task (``mask_prob`` outside masked LM) are left out."""
    config = loop._comparable(cfg)
    if exp.task != "mlm":
        config.pop("mask_prob")
    key = {"models": {"small": exp.p["small"], "large": exp.p["large"]}, "run": asdict(spec)}
    return json.loads(json.dumps({**key, "config": config}))


def run_one(exp: Experiment, spec: RunSpec, data, progress: bool = True, force=False) -> dict:
    """Train one run (or load it when done); returns its JSON record."""
    path = exp.out / f"{spec.name}.json"
    rank, _ = loop.world()
    target = scratch_target(exp)
    if spec.init != "small" and spec.init != "scratch" and target is None:
        raise SystemExit(
            f"{spec.name} needs the scratch runs first (missing, or run with other settings)"
        )
    cfg = _run_config(exp, spec, target, progress)
    key = cache_key(exp, spec, cfg)
    # the small model's weights are not committed: a fresh clone trains it again
    weights_missing = spec.init == "small" and not (exp.out / "small.safetensors").exists()
    if path.exists() and not force:
        cached = json.loads(path.read_text())
        if cached.get("key") == key and not weights_missing:
            return cached
        why = "its weights are missing" if weights_missing else "settings changed since it ran"
        log.warning("%s: %s; running it again", spec.name, why)
    ckpt_dir = exp.out / "ckpt" / spec.name
    if force:  # start over, not from a leftover checkpoint
        loop.remove_checkpoint(ckpt_dir)
    model, facts = _init_model(exp, spec)
    teacher = _small_model(exp) if spec.ki else None
    res = loop.train(model, exp.task, data, cfg, teacher=teacher, ckpt_dir=ckpt_dir)
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
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **facts,
    }
    if rank == 0:
        exp.out.mkdir(parents=True, exist_ok=True)
        if spec.init == "small":
            weights = exp.out / "small.safetensors.tmp"
            loop.save_weights(model, weights)
            weights.replace(exp.out / "small.safetensors")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)
        loop.remove_checkpoint(ckpt_dir)
    if dist.is_initialized():
        dist.barrier()  # the next run reads what rank 0 just wrote
    return record


def run_experiment(
    exp: Experiment, only: list[str] | None = None, progress: bool = True, force: bool = False
) -> list[dict]:
    """Every run of ``exp`` in dependency order (``only``: a subset by name)."""
    data = load_data(exp.task)
    records = []
    for spec in run_specs(exp):
        if only and spec.name not in only:
            continue
        log.info("%s/%s: %s", exp.name, exp.preset, spec.name)
        records.append(run_one(exp, spec, data, progress, force=force))
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run one lemonkit experiment (a config file).")
    ap.add_argument("config", nargs="*", help="experiments/configs/*.toml")
    ap.add_argument("--report", action="store_true", help="only regenerate RESULTS.md")
    ap.add_argument("--preset", default="small", help="small (CPU) or large (GPU)")
    ap.add_argument("--only", nargs="*", help="run names to run (default: all)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--force", action="store_true", help="re-run finished runs")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    _, size = loop.world()
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on a GPU
    if args.threads or size > 1:
        torch.set_num_threads(args.threads or max(1, torch.get_num_threads() // size))
    if not args.config and not args.report:
        ap.error("give config files, or --report")
    for config in [] if args.report else args.config:
        exp = load_experiment(config, args.preset, args.out)
        run_experiment(exp, args.only, progress=not args.quiet, force=args.force)
    if args.report or (not args.no_report and loop.world()[0] == 0 and not args.only):
        from lemonkit.harness.report import write_results

        written = write_results(args.out)
        if not args.quiet:
            print(f"wrote {written}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
