"""2 processes x batch b (torchrun, gloo) match 1 process x batch 2b.

The tiny model has no BatchNorm and no dropout: BN statistics over b images differ from those
over 2b, and each rank draws its own dropout masks, so only a BN-free, dropout-free model can be
compared exactly. Everything else (sampler order, augmentation, gradient averaging, weight
decay, LR schedule) must agree, up to float summation order.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from slimface.train.config import TrainConfig
from slimface.train.distributed import DistInfo
from slimface.train.margin import MarginObjective
from slimface.train.trainer import Trainer
from tests._train_tiny import TinyNet, synthetic_crops

STEPS = 4
CFG = dict(backbone="tiny", head="cosface", head_kwargs={"s": 16.0, "m": 0.2}, lr=0.05,
           warmup_steps=1, epochs=2, milestones=(1,), checkpoint_every=100, log_every=2,
           channels_last=False, max_steps=STEPS)

#: Every worker ends as train_from_config does: the trainer (and the DDP reducer holding the
#: group) is gone before the group is destroyed; one left to interpreter shutdown can abort.
RUN_MAIN = """
    from slimface.train.distributed import cleanup, init_distributed
    info = init_distributed()
    try:
        main(info)
    finally:
        cleanup(info)
    """

WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    from slimface.train.config import TrainConfig
    from slimface.train.margin import MarginObjective
    from slimface.train.trainer import Trainer
    from tests._train_tiny import TinyNet, synthetic_crops

    def main(info):
        torch.manual_seed(0)
        cfg = TrainConfig(batch_size=4, **{cfg!r})
        t = Trainer(cfg, MarginObjective(cfg, synthetic_crops()), {out!r}, progress=False,
                    backbone=TinyNet(), info=info)
        t.fit()
        if info.rank == 0:
            torch.save(t.model.state_dict(), {out!r} + "/final.pt")
    """ + RUN_MAIN)


def torchrun_two(worker: str, tmp_path: Path, **fields: object) -> None:
    """Run ``worker`` (formatted with the repo root, ``out`` = tmp_path/ddp and ``fields``)
    under ``torchrun --nproc_per_node 2``, one thread per rank; fail with its stderr."""
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "worker.py"
    script.write_text(worker.format(root=root, out=str(tmp_path / "ddp"), **fields))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one_process_with_double_batch(tmp_path: Path):
    torchrun_two(WORKER, tmp_path, cfg=CFG)
    ddp_state = torch.load(tmp_path / "ddp" / "final.pt", weights_only=True)

    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, **CFG)
    single = Trainer(cfg, MarginObjective(cfg, synthetic_crops()), tmp_path / "one",
                     progress=False, info=DistInfo(), backbone=TinyNet())
    single.fit()
    for name, ref in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], ref, rtol=1e-4, atol=1e-5, msg=name)
    torch.manual_seed(0)
    initial = TinyNet()
    changed = sum(not torch.allclose(initial.state_dict()[k], v)
                  for k, v in single.backbone.state_dict().items())
    assert changed > 0  # the comparison is not between two untouched models


DISTILL_WORKER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    from dataclasses import replace
    from tests.test_function_matching import config
    from tests._train_tiny import PixelTeacher, canvases
    from slimface.train.function_matching import FaceCanvases, FunctionMatching
    from slimface.train.trainer import Trainer

    def main(info):
        cfg = replace(config(), batch_size=2)
        t = Trainer(cfg, FunctionMatching(cfg, FaceCanvases(canvases()), PixelTeacher()),
                    {out!r}, progress=False, info=info)
        t.fit()
        torch.save(t.backbone.state_dict(), {out!r} + f"/final{{info.rank}}.pt")
    """ + RUN_MAIN)


@pytest.mark.slow
def test_distillation_runs_under_torchrun(tmp_path: Path):
    """Each rank embeds its own shard with its own teacher; gradients are averaged, so the
    ranks end with the same weights and rank 0 writes the run."""
    torchrun_two(DISTILL_WORKER, tmp_path)
    a, b = (torch.load(tmp_path / "ddp" / f"final{r}.pt", weights_only=True) for r in (0, 1))
    for name in a:
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(a[name], b[name]), name
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["step"] == 6
