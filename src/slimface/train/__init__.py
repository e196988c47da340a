"""Training: configs (``config``), identity-folder crops (``data``), the exact-resume, DDP-ready
loop (``trainer``), checkpoints (``checkpoint``), the LFW view-1 hook (``lfw_hook``) and the
``slimface train`` entry point (``run.train_from_config``).

Nothing here initialises ``torch.distributed`` at import; ``torchrun`` runs are detected from
``WORLD_SIZE`` when training starts.
"""
