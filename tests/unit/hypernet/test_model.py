import torch

from loragen.hypernet.data import HypernetDataModule, collate
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.model import CVAE, reconstruction_loss
from loragen.hypernet.module import HypernetModule
from loragen.hypernet.space import WeightSpace
from tests.unit.hypernet._synthetic import synthetic_adapter
from tests.unit.hypernet.conftest import tiny_config


def _delta_error(a, b) -> float:
    num = sum(float((a.delta_weight(m) - b.delta_weight(m)).norm() ** 2) for m in b.modules)
    return num / sum(float(b.delta_weight(m).norm() ** 2) for m in b.modules)


def test_layout_tokens_round_trip_delta_weights(tiny_llama_dir):
    from loragen.bank.base_model import canonical_base_model_id

    adapter = synthetic_adapter(canonical_base_model_id(tiny_llama_dir), "Polish", "Czech")
    layout = AdapterLayout.of(adapter)
    assert layout.n_modules == 4 and layout.token_dim == 32 * 2 + 2 * 32  # out*r + r*in
    back = layout.to_adapter(layout.to_tokens(adapter))
    assert _delta_error(back, adapter) < 1e-10


def test_subspace_is_linear_in_delta_w_and_exact_on_its_span(tiny_llama_dir):
    from loragen.bank.base_model import canonical_base_model_id

    base = canonical_base_model_id(tiny_llama_dir)
    adapters = [synthetic_adapter(base, x, y) for x, y in (("Polish", "Czech"), ("German", "French"))]
    layout = AdapterLayout.of(adapters[0])
    canon = torch.stack([layout.to_tokens(a) for a in adapters])
    space = WeightSpace(layout, "subspace", rank=4)
    space.fit(canon)
    assert space.energy_kept > 0.999
    tokens = space.encode(canon)
    for a, t in zip(adapters, tokens):
        assert _delta_error(space.to_adapter(t), a) < 1e-8
    # linear: the sum of two tokens is the adapter with the sum of the two ΔW
    mixed = space.to_adapter(tokens[0] + tokens[1])
    for m in layout.modules:
        expected = adapters[0].delta_weight(m) + adapters[1].delta_weight(m)
        assert torch.allclose(mixed.delta_weight(m), expected, atol=1e-5)


def test_forward_shapes_and_loss_decreases(source, encode):
    torch.manual_seed(0)
    config = tiny_config()
    dm = HypernetDataModule(source, config, encode)
    dm.setup("fit")
    module = HypernetModule(config, dm.layout)
    module.fit_statistics(dm.train_set.tokens, dm.whitening_sample(), dm.readout_sample())
    batch = collate([dm.train_set[i] for i in range(16)])
    out = module.model(batch["tokens"], batch["cond"], with_mean=True)
    m, t = dm.layout.n_modules, module.model.space.dim
    assert out["recon"].shape == out["target"].shape == out["mean"].shape == (16, m, t)
    assert out["z_loc"].shape == out["z_scale"].shape == (16, 8)
    opt = torch.optim.Adam(module.model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = module.model(batch["tokens"], batch["cond"], with_mean=True)
        loss = reconstruction_loss(out["recon"], out["target"], module.model.token_mask) + \
            reconstruction_loss(out["mean"], out["target"], module.model.token_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sample_is_mean_for_one_and_varies_for_many(trained, encode):
    _, module = trained
    model: CVAE = module.model.eval()
    from loragen.hypernet.condition import collate_conditions, condition_texts, embed_conditions

    cond = collate_conditions(embed_conditions(
        [condition_texts("label 0 if the text is written in Polish, label 1 if it is German", None, None, 8)],
        encode, 8, 384))
    one = model.sample(cond, 1)
    assert torch.equal(one, model.sample(cond, 1))
    many = model.sample(cond, 3, torch.Generator().manual_seed(0))
    assert many.shape[:2] == (1, 3) and not torch.allclose(many[0, 0], many[0, 1])
