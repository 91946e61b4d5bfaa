"""Deploying trained GANNO policies in PyTorch training loops.

* :class:`GannoScheduler` drives the per-layer learning rates of any ``torch.optim`` optimiser
  from a trained policy (one parameter group per weight layer: :func:`layerwise_param_groups`).
* :class:`TorchPolicy` (:func:`pretrained_policy`, ``TorchPolicy.load(dir)``) runs a trained
  policy's actor in PyTorch from its saved files, so none of this needs JAX.
* :mod:`ganno.torch.features` computes the environment's observation from PyTorch tensors.
* :mod:`ganno.torch.evaluation` (``ganno torch-eval``) compares the scheduler with PyTorch SGD
  baselines on the config's task.

Names are imported lazily, so ``import ganno.torch`` (e.g. by the command line) does not load
PyTorch until one of them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GannoScheduler": "ganno.torch.scheduler",
    "TrainingDivergedError": "ganno.torch.scheduler",
    "DogStepSize": "ganno.torch.dog",
    "TorchPolicy": "ganno.torch.actor",
    "TorchActor": "ganno.torch.actor",
    "pretrained_policy": "ganno.torch.actor",
    "layerwise_param_groups": "ganno.torch.networks",
    "TorchMLP": "ganno.torch.networks",
    "TorchCNN1D": "ganno.torch.networks",
    "make_torch_network": "ganno.torch.networks",
    "from_jax_params": "ganno.torch.networks",
    "observe": "ganno.torch.features",
    "initial_observation": "ganno.torch.features",
    "FEATURE_NAMES": "ganno.torch.features",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ganno.torch' has no attribute {name!r}")
