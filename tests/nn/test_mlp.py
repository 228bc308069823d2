"""TransitionMLP: shapes, conditioning contract, embeddings."""

import pytest
import torch

from itomd.errors import InvalidInputError
from itomd.nn import SinusoidalEmbedding, TransitionMLP


def test_conditional_shapes_and_dependence_on_every_input():
    net = TransitionMLP(2, hidden=16, n_blocks=2, n_frequencies=4)
    for block in net.blocks:  # zero-initialised output layers would hide the dependence
        torch.nn.init.normal_(block.fc2.weight, std=0.1)
    x, c = torch.randn(5, 2), torch.randn(5)
    cond, lag = torch.randn(5, 2), torch.tensor([1.0, 2.0, 5.0, 10.0, 100.0])
    out = net(x, c, cond=cond, lag=lag)
    assert out.shape == (5, 2)
    assert not torch.allclose(out, net(x, c, cond=cond + 1, lag=lag))
    assert not torch.allclose(out, net(x, c, cond=cond, lag=lag * 2))
    assert not torch.allclose(out, net(x, c + 0.5, cond=cond, lag=lag))


def test_contract_errors():
    net = TransitionMLP(1, hidden=8, n_blocks=1)
    with pytest.raises(InvalidInputError, match="needs cond"):
        net(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(InvalidInputError, match=r"\[B, 1\]"):
        net(torch.zeros(3, 2), torch.zeros(3), cond=torch.zeros(3, 2), lag=torch.ones(3))
    eq = TransitionMLP(1, hidden=8, n_blocks=1, conditional=False)
    assert eq(torch.zeros(3, 1), torch.zeros(3)).shape == (3, 1)
    with pytest.raises(InvalidInputError, match="takes no cond"):
        eq(torch.zeros(3, 1), torch.zeros(3), cond=torch.zeros(3, 1), lag=torch.ones(3))
    with pytest.raises(InvalidInputError):
        TransitionMLP(2, condition_scale=[1.0, 0.0])


def test_sinusoidal_embedding_is_bounded_and_keeps_the_value():
    emb = SinusoidalEmbedding(3, 0.1, 1.0)
    t = torch.linspace(-5, 5, 11)
    out = emb(t)
    assert out.shape == (11, 7)
    assert torch.all(out[:, :6].abs() <= 1) and torch.equal(out[:, 6], t)
