"""An upcycled source read by several workers at once hands each its own tensor
(its one-tensor cache was shared across threads: a worker could get another's tensor)."""

import sys
from concurrent.futures import ThreadPoolExecutor

import torch

from lemonkit.engine.upcycle import upcycled_source
from lemonkit.io.checkpoint import Checkpoint
from lemonkit.plan.upcycle import Upcycle
from lemonkit.testing.zoo import build


def test_concurrent_reads_get_their_own_tensors(tmp_path):
    build("llama", dtype=torch.float32).save_pretrained(tmp_path)
    ckpt = Checkpoint.open(tmp_path)
    source = upcycled_source(
        ckpt, ckpt.config, Upcycle("mixtral", 4, 2, 0), infos=ckpt.infos(), stacked=False
    )
    names = [n for n in source if ".experts." in n or "self_attn" in n]
    want = {n: source[n].clone() for n in names}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda n: (n, source[n]), names * 50))
    finally:
        sys.setswitchinterval(interval)
    assert all(torch.equal(t, want[n]) for n, t in got)
