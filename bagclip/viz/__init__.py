"""Every figure and widget of the kit, drawing only: the lessons and `bagclip reproduce` draw
with these, so what a notebook shows and what a command writes never disagree. Nothing here
trains or runs a model; callers pass arrays (maps, scores, graphs) in.

    base      new_figure, save_figure, overlay, heatmap, figure_array   shared by all
    decisions calibrated_map_figure, calibrated_vs_stretched (calibrated maps, lesson 11)
    maps      panel, panel_rows, compare_maps (Figs 3-4), failure_cases (Fig 7), tap maps;
              every map on a visible scale its colour bar names (maps.SCALES)
    graph     the SAG drawn: hand graph, construction steps, patch graph, over-smoothing
    curves    gates, losses, ROC/PR, tables, ablation bars, sensitivity (Figs 5-6), costs
    data      sample grids, the synthetic gallery (`python -m bagclip.viz.data OUT.png`)
    distributions  per-image scores, normal vs defective, per class (seaborn; lesson 06)
    widgets/  SAGExplorer (Fig 2, lesson 03), FailureGallery (lesson 09)

    from bagclip import viz
    viz.panel(image, mask, amap)      # one name space for the lessons
"""
from .base import (ERROR_COLORS, MAP_CMAP, figure_array, heatmap, new_figure, overlay, png_bytes,
                   save_figure, show)
from .curves import (LiveLoss, ablation_figure, plot_ablation, plot_cost_breakdown, plot_gates,
                     plot_loss, plot_metric_example, plot_scaling, plot_sensitivity, table_figure)
from .data import plot_samples, synth_gallery
from .decisions import calibrated_map_figure, calibrated_vs_stretched
from .distributions import score_distributions_figure
from .graph import (draw_patch_graph, plot_graph_steps, plot_hand_graph, plot_nonlocal,
                    plot_oversmoothing, plot_scatter_2d)
from .maps import (SCALES, compare_maps, failure_cases, map_norm, panel, panel_rows, plot_pos_embed,
                   plot_tap_maps)
from .widgets import FailureGallery, SAGExplorer

__all__ = ["ERROR_COLORS", "MAP_CMAP", "figure_array", "heatmap", "new_figure", "overlay",
           "png_bytes", "save_figure", "show", "LiveLoss", "ablation_figure", "plot_ablation",
           "plot_cost_breakdown", "plot_gates", "plot_loss", "plot_metric_example", "plot_scaling",
           "plot_sensitivity", "table_figure", "plot_samples", "synth_gallery", "draw_patch_graph",
           "plot_graph_steps", "plot_hand_graph", "plot_nonlocal", "plot_oversmoothing",
           "plot_scatter_2d", "compare_maps", "failure_cases", "panel", "panel_rows",
           "plot_pos_embed", "plot_tap_maps", "FailureGallery", "SAGExplorer",
           "calibrated_map_figure", "calibrated_vs_stretched", "score_distributions_figure", "SCALES",
           "map_norm"]
