"""A widget's drawing and its refresh: `draw()` rebuilds `.fig`; `redraw()` also refreshes the
widget's output area once the widget has been built."""
from __future__ import annotations

import base64


class View:
    """A widget's drawing: `draw()` rebuilds self.fig; `redraw()` also refreshes the widget's
    output area when the widget has been built."""
    _widget = None

    def redraw(self) -> None:
        self.draw()
        if self._widget is not None:
            self._show()

    def _show(self) -> None:
        """self.fig into the output area (`self._out`, an ipywidgets Output) as the area's own
        state, in one assignment. Not `with self._out: display(fig)`: captured output reaches the
        area only once the browser holds the area's model, and the first drawing, made in the
        cell that builds the widget, can arrive before that; the explorer then stayed empty (a
        slow run of tests/test_browser.py). State reaches a view whenever it is made, and one
        assignment replaces the old drawing without a blank in between. Outside IPython: nothing."""
        from IPython import get_ipython

        ip = get_ipython()
        if ip is None:
            return
        data, metadata = ip.display_formatter.format(self.fig)
        # as a kernel's display message carries them: binary formats (image/png) in base64 text; as
        # bytes, widget state would travel as a binary buffer that the browser shows as a broken image
        data = {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}
        self._out.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
