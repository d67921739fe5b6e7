import pytest
import torch

# The suite runs as `pytest -n 2` on a 2-core machine: one torch thread per
# worker keeps the cores busy without OpenMP oversubscription (which slows tiny
# models by an order of magnitude).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
