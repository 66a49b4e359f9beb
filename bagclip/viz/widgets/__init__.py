"""Interactive views for the lessons (ipywidgets): each keeps its controls in `.widget` and
exposes every callback as a method, so tests call them directly and compare
`figure_array(view.fig)` before and after."""
from .failure_gallery import FailureGallery
from .sag_explorer import SAGExplorer

__all__ = ["FailureGallery", "SAGExplorer"]
