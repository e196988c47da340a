"""``slimface bench train``: training images/s (forward + backward + SGD step) of a backbone
with a head at a batch size, on synthetic input of the model's size.

Synthetic data isolates the model's cost from decoding and alignment; the first steps
(allocator, autotuning) are warm-up and excluded. Reports the median step time.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from slimface.cli._common import (Several, add_json_arg, add_model_arg, emit_result,
                                   format_table, hidden_alias, positive_int)


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="training images/s for a model and batch size",
                       description=__doc__)
    add_model_arg(p, default="mobilefacenet", help="backbone name (default mobilefacenet)")
    p.add_argument("--head", default="arcface", help="head name (default arcface)")
    p.add_argument("--classes", type=int, default=1000, help="head classes (default 1000)")
    batch = p.add_argument("--batch", action=Several, type=positive_int, default=[64],
                           help="one or more batch sizes (default 64)")
    hidden_alias(p, batch, "--batch-size")
    p.add_argument("--steps", type=int, default=5, help="timed steps per batch size")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="keep the NCHW memory format (default: channels_last)")
    add_json_arg(p)
    p.set_defaults(func=run)


def bench_train_step(model_name: str, head_name: str, classes: int, batch_size: int,
                     steps: int, warmup: int, channels_last: bool) -> dict[str, Any]:
    """Median seconds per training step and images/s for one batch size."""
    import torch

    from slimface.models import create_backbone, create_head

    torch.manual_seed(0)
    backbone = create_backbone(model_name)
    head = create_head(head_name, embedding_dim=backbone.embedding_dim, num_classes=classes)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    x = torch.rand(batch_size, 3, *backbone.input_size) * 255
    y = torch.randint(0, classes, (batch_size,))
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    backbone.train()
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        out = head(backbone(x), y)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"model": model_name, "head": head_name, "batch_size": batch_size,
            "step_ms": round(med * 1e3, 1), "images_per_s": round(batch_size / med, 2),
            "channels_last": channels_last}


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    rows = [bench_train_step(args.model, args.head, args.classes, b, args.steps, args.warmup,
                             not args.no_channels_last) for b in args.batch]
    emit_result(args.json, {"threads": args.threads, "torch": torch.__version__, "results": rows},
                format_table(rows, title=f"training throughput ({args.threads} threads, median "
                                         f"of {args.steps} steps after {args.warmup} warm-up)"))
    return 0
