"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2``: checks the collectives
of ``nasp.distributed.World`` on two gloo processes and prints "collectives ok" on each rank."""
import torch
from torch import nn

from nasp import distributed
from nasp.errors import NaspError

world = distributed.init(torch.device("cpu"))
assert world.size == 2 and world.parallel
r = world.rank

# a batch of 5 split 3 + 2: the weighted mean is the gradient of the whole batch's mean loss
examples = 3 if r == 0 else 2
assert world.bounds(5) == ((0, 3) if r == 0 else (3, 5))
dense = nn.Parameter(torch.zeros(2, 2))
sparse = nn.Embedding(4, 2, sparse=True)
missing_here = nn.Parameter(torch.zeros(3))  # has a gradient on rank 0 only
never = nn.Parameter(torch.zeros(1))          # on no rank
dense.grad = torch.full((2, 2), float(r + 1))
sparse(torch.tensor([r, 3, 3])).sum().backward()  # row r gets ones, row 3 (on both ranks, twice) twos
sparse_here = nn.Embedding(5, 2, sparse=True)     # a sparse gradient on rank 1 only
if r == 1:
    sparse_here(torch.tensor([4])).sum().backward()
missing_here.grad = torch.ones(3) if r == 0 else None
world.average_gradients([dense, sparse.weight, missing_here, never, sparse_here.weight], examples)
assert torch.allclose(dense.grad, torch.full((2, 2), (3 * 1 + 2 * 2) / 5))
expected = torch.zeros(4, 2)
expected[0], expected[1], expected[3] = 3 / 5, 2 / 5, 2.0
assert sparse.weight.grad.is_sparse and torch.allclose(sparse.weight.grad.to_dense(), expected)
assert sparse.weight.grad.indices().tolist() == [[0, 1, 3]]  # coalesced: only the rows some batch touched
assert sparse_here.weight.grad.is_sparse and torch.allclose(sparse_here.weight.grad.to_dense()[4], torch.full((2,), 2 / 5))
assert torch.allclose(missing_here.grad, torch.full((3,), 3 / 5)) and never.grad is None

assert torch.equal(world.sum(torch.tensor([1.0, float(r)])), torch.tensor([2.0, 1.0]))
assert world.share(f"name-from-{r}") == "name-from-0"
stats = world.mean_stats({"loss": torch.tensor(float(r))})
assert float(stats["loss"]) == 0.5
state = torch.full((3,), float(r))
world.broadcast([state])
assert torch.equal(state, torch.zeros(3))

world.agree({"architecture": [1, 2]}, "the architecture")
try:
    world.agree({"architecture": [r]}, "the architecture")
except NaspError as exc:
    assert "ranks disagree on the architecture (rank 1 differs from rank 0)" in str(exc)
else:
    raise AssertionError("a disagreement passed")
distributed.shutdown()
print("collectives ok", flush=True)
