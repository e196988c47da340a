"""Training: configs (``config``), identity-folder crops (``data``), the exact-resume, DDP-ready
loop (``trainer``), checkpoints (``checkpoint``) and the ``slimface train`` entry point
(``run.train_from_config``). The periodic LFW view-1 check is injected by the caller
(``view1_check``; see :mod:`slimface.eval.view1`), so training never imports evaluation.

Nothing here initialises ``torch.distributed`` at import; ``torchrun`` runs are detected from
``WORLD_SIZE`` when training starts.
"""
