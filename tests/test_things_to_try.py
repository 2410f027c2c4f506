"""The "things to try" of the notebooks say what a reader will find; each such sentence is
checked here on the same quick-mode settings, so that text and figure cannot drift apart.
(Notebooks 03, 04 and 06 check theirs in checked cells; another of 05's is in
test_studies_learning_rules.)"""

from __future__ import annotations

import pytest

from nbkit import studies


@pytest.fixture(scope="module")
def fig1():
    """Notebook 01's quick model, swept by magnitude and random pruning."""
    s = studies.collapse.settings("quick")
    return studies.collapse.sweep(s.models[0], s, pruners=("magnitude", "random"))


def _first_empty(sweep, method):
    rows = sweep["pruners"][method]["density"]
    i = next(i for i, row in enumerate(rows) if min(row) == 0)
    return sweep["log10_rho"][i], [j for j, v in enumerate(rows[i]) if v == 0]


def test_01_magnitude_empties_the_largest_layers_random_a_small_one(fig1):
    sizes = fig1["sizes"]
    _, mag = _first_empty(fig1, "magnitude")
    _, rand = _first_empty(fig1, "random")
    assert all(sizes[j] == max(sizes) for j in mag)
    assert all(sizes[j] < sorted(sizes)[len(sizes) // 2] for j in rand)  # below the median


def test_01_random_pruning_disconnects_before_it_empties_a_layer(fig1):
    r = fig1["pruners"]["random"]
    i = fig1["log10_rho"].index(2.0)
    assert r["disconnected"][i] and not r["collapsed"][i] and r["effective"][i] == 0


def test_02_a_residual_block_breaks_the_layer_law_but_not_the_cut_law():
    report = studies.conservation.conservation(residual=True)["report"]
    assert not report["network_holds"] and report["cut"] < 1e-9


def test_04_with_100_classes_synflows_lead_at_rho_1000_is_much_wider():
    def lead(key):
        curves, _ = studies.fig6.published_curves(key)
        at = {c["method"]: c["top1"][c["log10_rho"].index(3.0)] for c in curves}
        return at["synflow"] - max(v for m, v in at.items() if m != "synflow")

    assert lead("cifar100/vgg16_bn") > 3 * lead("cifar10/vgg16_bn") > 0


def test_02_batchnorm_in_train_mode_leaves_synflow_alone_and_breaks_the_loss():
    synflow = studies.conservation.conservation(batchnorm="train")["report"]
    loss = studies.conservation.conservation(batchnorm="train", objective="loss")["report"]
    assert synflow["holds"] and not loss["neuron_holds"] and not loss["network_holds"]


def test_05_sign_symmetry_starts_far_closer_to_w_than_a_random_b():
    import nbkit

    def mean_angle(rule):
        nbkit.seed(0)
        model = nbkit.models.build("conv", depth=4, width=8)  # notebook 05's quick net
        nbkit.rules.convert(model, rule)
        angles = nbkit.rules.alignment_angles(model)
        return sum(angles.values()) / len(angles)

    assert mean_angle("sign_symmetry") < mean_angle("feedback_alignment") - 30
