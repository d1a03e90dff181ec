import numpy as np
import pytest
import torch

from loragen.hypernet.condition import (
    EXAMPLES,
    LABEL,
    SEGMENT,
    Whitener,
    collate_conditions,
    condition_texts,
    count_slots,
    embed_conditions,
)


def test_unstructured_description_gives_two_classes():
    assert count_slots("decide whether a sentence is Polish or Czech", None, None, 8) == 2


def test_count_slots_from_labels_examples_and_limit():
    assert count_slots("x", ("a", "b", "c"), None, 8) == 3
    assert count_slots("x", None, (("t", 4),), 8) == 5
    with pytest.raises(ValueError, match="at most 8"):
        count_slots("x", tuple("abcdefghi"), None, 8)


def test_swapped_descriptions_swap_slots_while_mean_pooling_cannot_tell(encode):
    a = "Label 0 if the text is written in Polish, label 1 if the text is written in Czech."
    b = "Label 0 if the text is written in Czech, label 1 if the text is written in Polish."
    ca, cb = embed_conditions([condition_texts(t, None, None, 8) for t in (a, b)], encode, 8, 384)
    glob_cos = float(ca.glob @ cb.glob)
    slot0_cos = float(ca.slots[0, SEGMENT] @ cb.slots[0, SEGMENT])
    assert glob_cos > 0.95  # pitfall 1: the whole-description embeddings are nearly equal
    assert slot0_cos < glob_cos - 0.2  # the slots are not
    assert torch.allclose(ca.slots[0, SEGMENT], cb.slots[1, SEGMENT], atol=1e-5)


def test_labels_and_examples_fill_their_channels(encode):
    req = condition_texts("Which is it? 0 = Polish, 1 = Czech.", ("Polish", "Czech"),
                          (("dzień dobry", 0), ("dobrý den", 1), ("tak", 0)), 8)
    [c] = embed_conditions([req], encode, 8, 384)
    assert c.present[:2].all() and not c.present[2:].any()
    expected = encode(["dzień dobry", "tak"]).mean(0)
    assert np.allclose(c.slots[0, EXAMPLES].numpy(), expected, atol=1e-5)
    assert np.allclose(c.slots[1, LABEL].numpy(), encode(["Czech"])[0], atol=1e-5)
    batch = collate_conditions([c, c])
    assert batch["slots"].shape == (2, 8, 3, 384) and batch["slot_mask"].sum() == 4


def test_global_text_fallback_embeds_the_description_only_when_clauses_miss_a_class(encode):
    """"fallback" skips the one long text per request when every class has its clause (latency), and keeps it when
    the parser could not cut the description per class (then it is the only signal)."""
    seen: list[str] = []

    def spy(texts):
        seen.extend(texts)
        return encode(texts)

    cut = condition_texts("Label 0 if the text is written in Polish, label 1 if it is Czech.", None, None, 8)
    uncut = condition_texts("Tell Polish sentences from Czech ones.", ("Polish", "Czech"), None, 8)
    c_cut, c_uncut = embed_conditions([cut, uncut], spy, 8, 384, global_text="fallback")
    assert cut.description not in seen and uncut.description in seen
    assert not c_cut.glob.any() and np.allclose(c_uncut.glob.numpy(), encode([uncut.description])[0], atol=1e-5)
    [always] = embed_conditions([cut], encode, 8, 384)
    assert torch.equal(always.slots, c_cut.slots) and always.glob.any()


def test_whitener_whitens_and_is_identity_without_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0
    w = Whitener(6, eps=1e-6)
    w.fit(x[:1])
    assert torch.equal(w(x), x)  # too few samples: left as identity
    w.fit(torch.zeros(50, 6))
    assert torch.equal(w(x), x)  # a channel that is always zero ("fallback" global text): identity, never NaN
    w.fit(x)
    y = w(x)
    assert torch.allclose(y.mean(0), torch.zeros(6), atol=1e-3)
    assert torch.allclose(torch.cov(y.T), torch.eye(6), atol=0.05)


def test_free_text_is_never_read_as_label_slots(encode):
    """"summarise legal text in 3 sentences" used to become slot 3 of a 4-class task."""
    req = condition_texts("summarise legal text in 3 sentences", None, None, 8)
    assert req.segments == {} and req.n_slots == 2
    gen = condition_texts("summarise legal text in 3 sentences", None, None, 8, label_slots=False)
    assert gen.segments == {} and gen.n_slots == 0
    with pytest.raises(ValueError, match="no label names"):
        condition_texts("summarise legal text", ("a", "b"), None, 8, label_slots=False)
    # Free text is the whole condition: embedded even where "fallback" skips descriptions whose clauses cover all.
    [c] = embed_conditions([gen], encode, 8, 384, global_text="fallback")
    assert not c.present.any() and np.allclose(c.glob.numpy(), encode([gen.description])[0], atol=1e-5)
    assert collate_conditions([c])["slot_mask"].sum() == 0
