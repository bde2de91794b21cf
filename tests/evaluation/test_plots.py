"""The report's figures as a reader sees them."""

import numpy as np
import pytest

from cxr.data.preprocess import Preprocessing
from cxr.evaluation.plots import (
    confusion_figure,
    learning_curves_figure,
    roc_figure,
    threshold_figure,
)
from cxr.evaluation.predictions import Predictions
from cxr.models.card import ModelCard, Threshold
from cxr.numbers import share


@pytest.mark.parametrize("epochs", [2, 3, 7])
def test_learning_curves_mark_whole_epochs_only(tmp_path, epochs):
    """Two epochs were drawn with ticks at 1.2, 1.4, 1.6 and 1.8."""
    history = tmp_path / "history.csv"
    rows = [f"{e},{1 / e},{0.9 / e},{0.8},{0.85},{0.9 + e / 100}" for e in range(1, epochs + 1)]
    history.write_text("epoch,train_loss,val_loss,train_acc,val_acc,val_auroc\n" + "\n".join(rows))
    fig = learning_curves_figure(history)
    fig.canvas.draw()
    for ax in fig.axes:
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if low <= t <= high]
        assert shown and all(t == int(t) for t in shown), shown


def _predictions(n_normal=201, false_alarms=1, n_pneumonia=582, missed=35, threshold=0.5):
    """A binary model's calls at threshold 0.5: the demo's internal-test counts."""
    card = ModelCard(
        architecture="cxr_cnn",
        args={},
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=Preprocessing(size=64),
        threshold=Threshold(threshold, "youden", "PNEUMONIA"),
    )
    p = np.r_[
        np.full(n_normal - false_alarms, 0.1), np.full(false_alarms, 0.9),
        np.full(missed, 0.2), np.full(n_pneumonia - missed, 0.99996),
    ]  # fmt: skip
    labels = ["NORMAL"] * n_normal + ["PNEUMONIA"] * n_pneumonia
    n = len(labels)
    names = [f"{k}.png" for k in range(n)]
    return Predictions("m", card, names, names, names, labels, np.stack([1 - p, p], 1), "test")


def _texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_shares_that_are_not_all_or_none_never_read_1_or_0():
    """200 of 201 normals cleared was drawn as "1.00" (ROC marker, confusion matrix), a
    probability of 0.99996 as "1.00" over a misclassified film."""
    p = _predictions()
    confusion = _texts(confusion_figure(p))
    assert {"200", "1", "35", "547", "0.995", "0.005", "0.060", "0.940"} <= set(confusion)
    roc = " ".join(_texts(roc_figure([p])))
    assert "spec 0.995" in roc and "sens 0.940" in roc and "1.00" not in roc
    assert share(0.99996) == "0.99996" and share(1.0) == "1.000" and share(0.0) == "0.000"


def test_the_chosen_threshold_is_named_in_the_legend_not_over_the_curves():
    """A label beside the line ran over the sensitivity curve and out of the axes near 1."""
    for value, shown in ((0.9326, "0.933"), (0.99996, "0.99996")):  # never "1.00" short of 1
        fig = threshold_figure(_predictions(threshold=value))
        fig.canvas.draw()
        (ax,) = fig.axes
        assert len(ax.texts) == 0
        assert f"chosen threshold {shown}" in [t.get_text() for t in ax.get_legend().get_texts()]
