"""Helpers the tests share: loading a script from ``examples/`` as a module, and saving
the nanoGPT example as a source folder."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """``examples/<name>.py`` imported as the module ``example_<name>`` (once)."""
    module_name = f"example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def save_nanogpt_source(nanogpt, folder: Path):
    """A float32 nanoGPT (``examples/nanogpt.py``, the module given) saved as a source
    folder: its config and its weights without the head tied to the embedding. Returns
    the model."""
    from safetensors.torch import save_file

    small = nanogpt.NanoGPT(nanogpt.NanoGPTConfig()).float().eval()
    folder.mkdir()
    small.config.save_pretrained(folder)
    state = {k: v for k, v in small.state_dict().items() if k != "lm_head.weight"}  # tied
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return small
