"""The report's figures as a reader sees them."""

import pytest

from cxr.evaluation.plots import learning_curves_figure


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
