"""Training: configs (``config``), one loop for every objective (``trainer``: resume, DDP, log,
view-1 check, kept ``backbone.pt``), its objectives (``margin``: identity folders + a margin
head; ``function_matching``: distillation from a live teacher, with ``augment`` and
``teacher``), checkpoints (``checkpoint``) and the ``slimface train`` entry point
(``run.train_from_config``). The periodic LFW view-1 check is injected by the caller
(``view1_check``; see :mod:`slimface.eval.view1`), so training never imports evaluation.

Nothing here initialises ``torch.distributed`` at import; ``torchrun`` runs are detected from
``WORLD_SIZE`` when training starts.
"""
