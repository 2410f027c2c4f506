"""The conservation study of notebook 02 (:mod:`nbkit.studies.conservation`): the demo
nets, the tour of what breaks each law, and Fig. 4's points, without any widget."""

from __future__ import annotations

import pytest

from nbkit.studies import conservation


def test_breaking_cases_name_their_causes():
    cases = dict(conservation.breaking_cases())
    assert cases["ReLU conv net, SynFlow"]["report"]["holds"]
    assert cases["+ BatchNorm, eval mode"]["report"]["holds"]
    assert "biases" in cases["+ nonzero biases"]["report"]["cause"]
    assert "residual" in cases["+ residual block"]["report"]["cause"]
    assert "BatchNorm in train mode" in cases["+ BatchNorm, train mode, loss"]["report"]["cause"]
    assert "non-homogeneous" in cases["tanh instead of ReLU"]["report"]["cause"]
    assert not cases["magnitude objective"]["report"]["holds"]


def test_demo_model_rejects_unknown_settings():
    with pytest.raises(ValueError, match="unknown demo net"):
        conservation.demo_model("transformer")
    with pytest.raises(ValueError, match="batchnorm must be"):
        conservation.demo_model(batchnorm="sometimes")
    m = conservation.demo_model(bias=True, batchnorm="train")
    assert m.training and all(mod.bias.abs().sum() > 0 for mod in m.modules()
                              if hasattr(mod, "bias") and mod.bias is not None
                              and type(mod).__name__ in ("Conv2d", "Linear"))




def test_results_are_cached_on_their_values_however_they_are_passed():
    a = conservation.conservation("synflow", "mlp", bias=1)
    b = conservation.conservation(objective="synflow", arch="mlp", bias=True)
    assert a is b                                     # bias=1 and bias=True: one setting
    assert a["setting"]["bias"] is True


def test_precompute_caches_every_setting_one_control_away():
    n = conservation.precompute()
    one_away = sum(len(v) - 1 for v in conservation.CONTROL_OPTIONS.values())
    assert n == 1 + one_away
    assert conservation._conservation.is_cached("synflow", "conv", False, "none", True, "relu",
                                                0, conservation.QUICK)


def test_fig4_uses_the_settings_sample_count_and_rejects_unknown_objectives():
    few = conservation.fig4("conv", "loss", conservation.QUICK.replace(fig4_samples=2))
    more = conservation.fig4("conv", "loss", conservation.QUICK.replace(fig4_samples=8))
    assert few["points"]["slope"] != more["points"]["slope"]   # other images, other scores
    with pytest.raises(ValueError, match="unknown objective"):
        conservation.fig4("conv", "entropy")
