"""The names of the per-agent observation features, in column order (no JAX, no PyTorch: shared by
:mod:`ganno.env` and :mod:`ganno.torch.features`). Their definitions are in :mod:`ganno.env`."""

#: Per-agent observation features, in order. ``log_*`` of norms, rates and ratios are
#: ``clip(log10(x), -8, 8) / 4``; losses are ``log10`` (their changes are per decision);
#: ``grad_cosine`` is the cosine between the layer's mean gradients of two consecutive intervals;
#: ``log_grad_noise`` is the spread of the interval's minibatch gradients relative to their mean.
FEATURE_NAMES: tuple[str, ...] = (
    "log_lr",
    "log_grad_norm",
    "log_weight_norm",
    "log_update_norm",
    "log_update_ratio",
    "grad_cosine",
    "log_grad_noise",
    "log_train_loss",
    "log_val_loss",
    "delta_log_train_loss",
    "delta_log_val_loss",
    "progress",
    "prev_action",
    "relative_depth",
    "is_first",
    "is_last",
)
