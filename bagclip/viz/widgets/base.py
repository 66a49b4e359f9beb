"""A widget's drawing and its refresh: `draw()` rebuilds `.fig`; `redraw()` also refreshes the
widget's output area once the widget has been built."""
from __future__ import annotations

from ..base import show


class View:
    """A widget's drawing: `draw()` rebuilds self.fig; `redraw()` also refreshes the widget's
    output area when the widget has been built."""
    _widget = None

    def redraw(self) -> None:
        self.draw()
        if self._widget is not None:
            with self._out:
                self._out.clear_output(wait=True)
                show(self.fig)
