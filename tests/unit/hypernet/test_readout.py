"""The closed-form readout: exact ridge algebra, pattern choice, and held-out class combinations composed from
classes seen in other tasks (the synthetic bank's adapters are additive in (class, slot), as the suite's nearly are).
"""

from __future__ import annotations

import torch

from loragen.hypernet.condition import EXAMPLES, LABEL, collate_conditions, condition_texts, embed_conditions
from loragen.hypernet.data import HypernetDataModule
from loragen.hypernet.module import HypernetModule
from loragen.hypernet.readout import _ridge, pattern_of
from tests.unit.hypernet._synthetic import description, synthetic_adapter
from tests.unit.hypernet.conftest import tiny_config


def test_ridge_primal_and_dual_forms_agree():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)
    wide = torch.randn(6, 10, generator=g, dtype=torch.float64)  # n < F: dual form
    tall = torch.randn(12, 4, generator=g, dtype=torch.float64)  # n > F: primal form
    for x, yy in ((wide, y), (tall, torch.randn(12, 3, generator=g, dtype=torch.float64))):
        w = _ridge(x, yy, 0.1, x.shape[1])
        lam = 0.1 * float((x * x).sum()) / x.shape[1]
        direct = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=x.dtype), x.T @ yy)
        assert torch.allclose(w, direct, atol=1e-10)


def test_pattern_follows_the_optional_channels():
    present = torch.zeros(4, 3, 3, dtype=torch.bool)
    present[:, :2, 0] = True
    present[1, 0, LABEL] = True
    present[2, 1, EXAMPLES] = True
    present[3, :, LABEL] = present[3, :, EXAMPLES] = True
    assert pattern_of(present).tolist() == [0, 1, 2, 3]


def _relative_error(adapter, truth) -> float:
    num = sum((adapter.delta_weight(m) - truth.delta_weight(m)).pow(2).sum() for m in truth.modules)
    den = sum(truth.delta_weight(m).pow(2).sum() for m in truth.modules)
    return float((num / den).sqrt())


def test_readout_alone_composes_held_out_pairs(source, encode):
    """Before any SGD step (the transformer's head starts at zero) the model is its readout: it reproduces in-bank
    adapters and composes the held-out pairs (Polish, Czech) and (Czech, Polish) from the classes' other tasks,
    with the label order right, far better than the mean adapter."""
    config = tiny_config()
    dm = HypernetDataModule(source, config, encode)
    dm.setup("fit")
    module = HypernetModule(config, dm.layout)
    module.fit_statistics(dm.train_set.tokens, dm.whitening_sample(), dm.readout_sample())
    model = module.model.eval()
    base = dm.layout.base_model
    mean = model.space.to_adapter(model.token_mean)

    def generate(x: str, y: str):
        cond = collate_conditions(embed_conditions([condition_texts(description(x, y), None, None, 8)], encode, 8,
                                                   384))
        return model.space.to_adapter(model.sample(cond, 1)[0, 0])

    assert _relative_error(generate("German", "French"), synthetic_adapter(base, "German", "French")) < 0.1
    for x, y in (("Polish", "Czech"), ("Czech", "Polish")):
        truth = synthetic_adapter(base, x, y)
        err, err_mean = _relative_error(generate(x, y), truth), _relative_error(mean, truth)
        swapped = _relative_error(generate(x, y), synthetic_adapter(base, y, x))
        assert err < 0.15 and err < 0.2 * err_mean and err < 0.2 * swapped, (x, y, err, err_mean, swapped)
