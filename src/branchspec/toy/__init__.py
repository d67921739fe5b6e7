"""Toy problems of §4.1: sums of scalar Leaky-ReLU neurons (eq. 1 with eq. 4).

* :mod:`~branchspec.toy.problems` — the training sets Toy1 / Toy2;
* :mod:`~branchspec.toy.train` — :class:`ToyConfig`, :func:`train_toy` (every
  (M, trial) network of a sweep trained at once) and the per-trial reference;
* :mod:`~branchspec.toy.engine` — the vectorised gradient-descent engine;
* :mod:`~branchspec.toy.io` — results (JSON + NPZ) and toy checkpoints.

The branch itself, :class:`~branchspec.models.toy_neuron.ToyNeuron`, is a
model like the others and lives in :mod:`branchspec.models`.

Example:
    >>> from branchspec.toy import ToyConfig, train_toy
    >>> run = train_toy(ToyConfig(problem="toy1", branches=(2, 10), trials=4, steps=50))
    >>> [row["m"] for row in run.per_m()]
    [2, 10]
"""

from branchspec.models.toy_neuron import ToyNeuron, toy_model
from branchspec.toy.io import load_results, save_models, write_results
from branchspec.toy.problems import DEFAULT_STEPS, PROBLEMS, toy_data
from branchspec.toy.train import ToyConfig, ToyRun, initial_parameters, network_outputs, reference_train, train_toy

__all__ = [
    "DEFAULT_STEPS", "PROBLEMS", "ToyConfig", "ToyNeuron", "ToyRun", "initial_parameters", "load_results",
    "network_outputs", "reference_train", "save_models", "toy_data", "toy_model", "train_toy", "write_results",
]
