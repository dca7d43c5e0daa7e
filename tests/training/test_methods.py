"""Methods against hand computations (docs/methods.md); the samplers: test_samplers.py."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
F = torch.nn.functional

from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.training.methods import METHOD_NAMES, TrainingGroups, make_method  # noqa: E402
from napari_patchwise.training.methods.gerne import beta_max, extrapolated_shares  # noqa: E402
from napari_patchwise.training.methods.reweight import reweight_weights  # noqa: E402
from napari_patchwise.training.models import build_model  # noqa: E402
from napari_patchwise.training.samplers import (  # noqa: E402
    ClassBalancedSampler,
    GerneSampler,
    GroupWeightedSampler,
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
    for bad in (3.5, 4.0):
        with pytest.raises(PatchwiseError, match=r"beta_max = .* = 3\.5 ") as err:
            make_method("gerne", data, config(beta=bad, c=0.5))
        assert "[-1, 3.5)" in str(err.value)
    # the lower bound needs no data: refused by check_options, before any patch is read
    with pytest.raises(PatchwiseError, match=r"GERNE needs beta >= -1, got beta=-1\.01"):
        make_method("gerne", data, config(beta=-1.01, c=0.5))
    with pytest.raises(PatchwiseError, match="c in"):
        make_method("gerne", data, config(c=0.0))


def test_gerne_accepted_beta_gives_no_group_a_negative_weight():
    # the example: shares [[.87, .13], [.09, .91]], c = 0.5, B = 16. Rounding the
    # same way in every batch drew tumor/large 15 times in the biased batch and 11 in the
    # less-biased one, so the realised bound was 11 / (15 - 11) = 2.75 while 3.44 was
    # checked, and beta = 3 gave tumor/large the weight 11 + 3 * (11 - 15) = -1 per batch.
    data = groups_with_counts([87, 13, 9, 91])
    c, beta, per_class = 0.5, 3.0, 16
    bound = beta_max(data.alpha, c)
    assert math.isclose(bound, 0.91 / (0.5 * 0.41) - 1) and beta < bound
    method = make_method("gerne", data, config(beta=beta, c=c))  # accepted
    sampler = method.make_sampler(batch_size=2 * per_class, seed=0)
    assert isinstance(sampler, GerneSampler)

    n_steps = 4000
    weights = np.zeros((n_steps, 4))
    for step in range(n_steps):
        b, lb = sampler.draw(step)
        n_b = np.bincount(data.groups[b], minlength=4)
        n_lb = np.bincount(data.groups[lb], minlength=4)
        weights[step] = n_lb + beta * (
            n_lb - n_b
        )  # each group's weight in L_lb + beta (L_lb - L_b)

    # expected weight per batch: B * p_ext = 16 * [.13, .87, .91, .09] = [2.08, ...]
    expected = per_class * extrapolated_shares(data.alpha, c, beta).ravel()
    np.testing.assert_allclose(expected, [2.08, 13.92, 14.56, 1.44], atol=1e-9)
    assert np.all(expected > 0)
    # tolerance from independent binomial draws (the sampler's counts spread less)
    p_b, p_lb = data.alpha.ravel(), (1 - c) * data.alpha.ravel() + c / 2
    var = (1 + beta) ** 2 * per_class * p_lb * (1 - p_lb) + beta**2 * per_class * p_b * (1 - p_b)
    tol = 5 * np.sqrt(var / n_steps)
    assert np.all(np.abs(weights.mean(axis=0) - expected) <= tol)
    assert np.all(weights.mean(axis=0) > 0)  # what is checked is what is realised


def test_gerne_bound_is_where_the_largest_group_weight_reaches_zero():
    alpha = np.array([[0.9, 0.1], [0.2, 0.8]])
    for c in (0.5, 1.0):
        bound = beta_max(alpha, c)
        assert math.isclose(extrapolated_shares(alpha, c, bound)[0, 0], 0.0, abs_tol=1e-12)
        assert extrapolated_shares(alpha, c, bound - 1e-3).min() > 0
        assert extrapolated_shares(alpha, c, bound + 1e-3).min() < 0
    # beta = -1 is the biased (class-balanced) batch, c = 1 and beta = 0 group balance
    np.testing.assert_allclose(extrapolated_shares(alpha, 0.5, -1.0), alpha)
    np.testing.assert_allclose(extrapolated_shares(alpha, 1.0, 0.0), 0.5)


def test_gerne_forwards_both_batches_in_one_pass():
    # with BatchNorm in training mode, separate forwards normalise each batch by its own
    # statistics (docs/methods.md, "BatchNorm"); one pass shares them
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 2),
    ).train()
    data = groups_with_counts([90, 10, 20, 80])
    gerne = make_method("gerne", data, config(beta=1.5))
    (xb, yb, gb), (xl, yl, gl) = batch(8, 1), batch(8, 2)
    xl = xl * 3 + 1  # the less-biased batch has other statistics
    _, logs = gerne.loss(model, [(xb, yb, gb), (xl, yl, gl)])

    with torch.no_grad():
        logits = model(torch.cat([xb, xl]))
        shared = F.cross_entropy(logits[:8], yb), F.cross_entropy(logits[8:], yl)
        separate = F.cross_entropy(model(xb), yb), F.cross_entropy(model(xl), yl)
    assert math.isclose(logs["loss_biased"], float(shared[0]), rel_tol=1e-5)
    assert math.isclose(logs["loss_less_biased"], float(shared[1]), rel_tol=1e-5)
    assert not math.isclose(logs["loss_biased"], float(separate[0]), rel_tol=1e-3)


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
    assert set(METHOD_NAMES) == {
        "erm",
        "gerne",
        "groupdro",
        "resample",
        "reweight",
        "dfr",
        "dfr-train",
        "jtt",
        "gerne-inferred",
    }
    data = groups_with_counts([10, 10, 10, 10])
    sampler = make_method("resample", data, config()).make_sampler(8, 0)
    assert isinstance(sampler, GroupWeightedSampler)
    with pytest.raises(PatchwiseError, match="unknown method 'lff'"):
        make_method("lff", data, config())


def test_the_registry_is_the_one_method_list_of_the_cli_and_the_report():
    import argparse

    from napari_patchwise.cli import train as train_command
    from napari_patchwise.training.methods import METHOD_LABELS, get_method
    from napari_patchwise.training.runs import Run

    assert METHOD_LABELS == {
        "erm": "ERM",
        "gerne": "GERNE",
        "groupdro": "GroupDRO",
        "resample": "ReSample",
        "reweight": "ReWeight",
        "dfr": "DFR (val labels)",
        "dfr-train": "DFR (train)",
        "jtt": "JTT",
        "gerne-inferred": "GERNE (inferred groups)",
    }
    assert tuple(METHOD_LABELS) == METHOD_NAMES
    # the report labels a run through runs.Run (its folder read by runs.load_run)
    labels = {
        name: Run(Path("r"), {"method": name}, {}, None).method_label for name in METHOD_NAMES
    }
    assert labels == METHOD_LABELS
    assert all(get_method(name).name == name for name in METHOD_NAMES)
    sub = argparse.ArgumentParser().add_subparsers()
    parser = train_command.add_parser(sub)
    (method,) = [a for a in parser._actions if a.dest == "method"]
    assert tuple(method.choices) == METHOD_NAMES
    assert sub.choices["train"] is parser
    assert sub._choices_actions[0].help == (
        "train a patch classifier (ERM, GERNE, GroupDRO, ReSample, ReWeight, "
        "DFR (val labels), DFR (train), JTT, GERNE (inferred groups))"
    )
