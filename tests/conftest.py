import pytest
import torch

# The suite runs as `pytest -n 2` on a 2-core machine: one torch thread per
# worker keeps the cores busy without OpenMP oversubscription (which slows tiny
# models by an order of magnitude).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


class Drawn:
    """One figure as it was saved: its pixel size and the arrays its axes draw."""

    def __init__(self, fig, dpi):
        w, h = fig.get_size_inches() * dpi
        self.size = (round(h), round(w))  # (rows, columns) of the PNG
        self.lines = [[(line.get_xdata(), line.get_ydata()) for line in ax.get_lines()] for ax in fig.axes]
        self.images = [[im.get_array() for im in ax.get_images()] for ax in fig.axes]

    def check_png(self, path):
        """The PNG at ``path`` has this figure's size and is not blank."""
        import matplotlib.image

        img = matplotlib.image.imread(str(path))
        assert abs(img.shape[0] - self.size[0]) <= 1 and abs(img.shape[1] - self.size[1]) <= 1, (img.shape, self.size)
        assert img[..., :3].std() > 0.01


@pytest.fixture
def drawn(monkeypatch):
    """Records every matplotlib figure saved during the test, as :class:`Drawn`, in order."""
    from matplotlib.figure import Figure

    saved, original = [], Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append(Drawn(fig, kwargs.get("dpi") or fig.dpi))
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved
