"""Methods and samplers against hand computations (METHODS.md)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.methods import METHOD_NAMES, TrainingGroups, make_method  # noqa: E402
from napari_patchwise.methods.gerne import beta_max  # noqa: E402
from napari_patchwise.methods.reweight import reweight_weights  # noqa: E402
from napari_patchwise.models import build_model  # noqa: E402
from napari_patchwise.samplers import (  # noqa: E402
    ClassBalancedSampler,
    GroupWeightedSampler,
    UniformSampler,
    gerne_counts,
    largest_remainder,
)


def config(**kw):
    base = dict(beta=1.0, c=0.5, eta=0.01, class_balanced=False)
    base.update(kw)
    return SimpleNamespace(**base)


def groups_with_counts(counts):
    """Training groups with exactly ``counts[g]`` patches in group g."""
    groups = np.repeat(np.arange(4), counts)
    return TrainingGroups(labels=groups // 2, groups=groups, tau=0.1)


def tiny_model():
    torch.manual_seed(0)
    return build_model("smallcnn", 2)


def batch(n, seed, labels=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 8, 8, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen) if labels is None else torch.as_tensor(labels)
    g = 2 * y + torch.randint(0, 2, (n,), generator=gen)
    return x, y, g


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


# -- samplers ------------------------------------------------------------------------
def test_largest_remainder_sums_exactly():
    assert largest_remainder(np.array([0.9, 0.1]), 10).tolist() == [9, 1]
    assert largest_remainder(np.array([1, 1, 1]), 10).tolist() == [4, 3, 3]
    assert largest_remainder(np.array([0.7, 0.3]), 16).tolist() == [11, 5]


def test_gerne_batches_have_the_counts_of_methods_md():
    # alpha: non-tumor 90 % small, tumor 80 % large; B = 16 per class; c = 0.5
    data = groups_with_counts([900, 100, 50, 200])
    np.testing.assert_allclose(data.alpha, [[0.9, 0.1], [0.2, 0.8]])
    biased, less = gerne_counts(data.alpha, 0.5, 16)
    # biased: 14.4, 1.6 -> 14, 2;  3.2, 12.8 -> 3, 13
    assert biased.tolist() == [[14, 2], [3, 13]]
    # less-biased p = 0.5 alpha + 0.25: 11.2, 4.8 -> 11, 5;  5.6, 10.4 -> 6, 10
    assert less.tolist() == [[11, 5], [6, 10]]

    method = make_method("gerne", data, config(beta=2.0, c=0.5))
    sampler = method.make_sampler(batch_size=32, seed=3)
    for step in (0, 7):
        b, lb = sampler.draw(step)
        assert np.bincount(data.groups[b], minlength=4).tolist() == [14, 2, 3, 13]
        assert np.bincount(data.groups[lb], minlength=4).tolist() == [11, 5, 6, 10]
    # draws depend only on (seed, step): resuming at a step redraws the same batches
    again = method.make_sampler(batch_size=32, seed=3).draw(7)
    assert all(np.array_equal(u, v) for u, v in zip(sampler.draw(7), again, strict=True))


def test_uniform_sampler_covers_every_patch_once_per_epoch():
    data = groups_with_counts([5, 3, 2, 2])  # 12 patches, batch 4: 3 steps per epoch
    sampler = UniformSampler(data.labels, data.groups, 4, seed=0)
    epoch = np.concatenate([sampler.draw(s)[0] for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(12))
    wrap = UniformSampler(data.labels, data.groups, 5, seed=0).draw(2)[0]  # spans epochs 0/1
    assert len(wrap) == 5


def test_class_balanced_and_group_weighted_samplers():
    data = groups_with_counts([900, 90, 9, 1])
    cb = ClassBalancedSampler(data.labels, data.groups, 10, seed=0).draw(0)[0]
    assert np.bincount(data.labels[cb], minlength=2).tolist() == [5, 5]
    gw = GroupWeightedSampler(data.labels, data.groups, 4000, seed=0).draw(0)[0]
    share = np.bincount(data.groups[gw], minlength=4) / 4000
    np.testing.assert_allclose(share, 0.25, atol=0.03)  # 1/n_g: every group equally likely


# -- GERNE -----------------------------------------------------------------------------
def test_gerne_beta_minus_one_is_class_balanced_erm():
    data = groups_with_counts([90, 10, 20, 80])
    gerne = make_method("gerne", data, config(beta=-1.0))
    erm = make_method("erm", data, config(class_balanced=True))
    assert isinstance(erm.make_sampler(8, 0), ClassBalancedSampler)
    biased, less_biased = batch(8, 1), batch(8, 2)

    model = tiny_model()
    loss_g, _ = gerne.loss(model, [biased, less_biased])
    loss_g.backward()
    g_gerne = grads(model)

    model = tiny_model()
    loss_e, _ = erm.loss(model, [biased])
    loss_e.backward()
    assert torch.allclose(loss_g, loss_e, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_gerne, grads(model), strict=True))


def test_gerne_gradient_is_the_extrapolation_of_the_two_gradients():
    data = groups_with_counts([90, 10, 20, 80])
    beta = 1.7
    gerne = make_method("gerne", data, config(beta=beta))
    biased, less_biased = batch(8, 1), batch(8, 2)

    def grad_of(x, y):
        model = tiny_model()
        F.cross_entropy(model(x), y).backward()
        return grads(model)

    g_b = grad_of(*biased[:2])
    g_lb = grad_of(*less_biased[:2])
    model = tiny_model()
    loss, logs = gerne.loss(model, [biased, less_biased])
    loss.backward()
    for got, gb, glb in zip(grads(model), g_b, g_lb, strict=True):
        assert torch.allclose(got, glb + beta * (glb - gb), atol=1e-5)
    assert math.isclose(
        logs["loss"],
        logs["loss_less_biased"] + beta * (logs["loss_less_biased"] - logs["loss_biased"]),
        rel_tol=1e-5,
    )


def test_gerne_refuses_beta_at_or_above_its_bound():
    data = groups_with_counts([90, 10, 10, 90])  # alpha_max = 0.9
    assert math.isclose(beta_max(data.alpha, 0.5), 3.5)
    assert math.isclose(beta_max(data.alpha, 1.0), 1.25)
    make_method("gerne", data, config(beta=3.49, c=0.5))
    for bad in (3.5, 4.0, -1.01):
        with pytest.raises(PatchwiseError, match=r"beta_max = .* = 3\.5 ") as err:
            make_method("gerne", data, config(beta=bad, c=0.5))
        assert "[-1, 3.5)" in str(err.value)
    with pytest.raises(PatchwiseError, match="c in"):
        make_method("gerne", data, config(c=0.0))


def test_gerne_refuses_an_empty_training_group():
    data = groups_with_counts([90, 10, 0, 90])
    with pytest.raises(
        PatchwiseError, match=r"group tumor/small has no training patches at tau=0\.1"
    ):
        make_method("gerne", data, config())


# -- GroupDRO and ReWeight -----------------------------------------------------------------
def test_groupdro_q_update_matches_hand_computation():
    data = groups_with_counts([10, 10, 10, 10])
    eta = 0.5
    method = make_method("groupdro", data, config(eta=eta))
    x, y, _ = batch(6, 4, labels=[0, 0, 1, 1, 1, 0])
    g = torch.tensor([0, 0, 2, 3, 3, 0])  # groups 0, 2, 3 present; group 1 absent
    model = tiny_model()
    with torch.no_grad():
        ce = F.cross_entropy(model(x), y, reduction="none").numpy().astype(np.float64)
    loss, _ = method.loss(model, [(x, y, g)])

    mean = np.array([ce[[0, 1, 5]].mean(), 0.0, ce[2], ce[3:5].mean()])
    q = np.full(4, 0.25) * np.exp(eta * mean * np.array([1, 0, 1, 1]))
    q /= q.sum()
    np.testing.assert_allclose(method.q.numpy(), q, rtol=1e-5)
    assert math.isclose(float(loss.detach()), float((q * mean).sum()), rel_tol=1e-5)

    # q is method state: it survives a checkpoint round trip
    other = make_method("groupdro", data, config(eta=eta))
    other.load_state_dict(method.state_dict())
    assert torch.equal(other.q, method.q)


def test_reweight_weights_match_hand_computation():
    w = reweight_weights(np.array([10, 30, 0, 60]))
    # inverse counts 0.1, 1/30, -, 1/60 (sum 0.15) scaled to sum to G = 3
    np.testing.assert_allclose(w, [2.0, 2 / 3, 0.0, 1 / 3])
    data = groups_with_counts([10, 30, 0, 60])
    method = make_method("reweight", data, config())
    x, y, _ = batch(4, 5, labels=[0, 0, 1, 1])
    g = torch.tensor([0, 1, 3, 3])
    model = tiny_model()
    with torch.no_grad():
        ce = F.cross_entropy(model(x), y, reduction="none").numpy()
    loss, _ = method.loss(model, [(x, y, g)])
    assert math.isclose(float(loss.detach()), float((w[[0, 1, 3, 3]] * ce).mean()), rel_tol=1e-5)


def test_registry_lists_every_method_and_rejects_unknown():
    assert set(METHOD_NAMES) == {"erm", "gerne", "groupdro", "resample", "reweight"}
    data = groups_with_counts([10, 10, 10, 10])
    sampler = make_method("resample", data, config()).make_sampler(8, 0)
    assert isinstance(sampler, GroupWeightedSampler)
    with pytest.raises(PatchwiseError, match="unknown method 'jtt'"):
        make_method("jtt", data, config())
