"""Per-image metrics over batched maps, neuron coverage and aggregation (docs/conventions.md)."""
from .batch import MapBatch, boxes_to_masks
from .concentration import entropy, gini
from .coverage import NeuronCoverage
from .harmonization import CLICKME_CEILING, gaussian_blur, harmonization, prepare_human_maps, spearman
from .localisation import area_ratio, box_iou, energy_pg, hit, pointing_game
from .registry import METRICS, SUMMARY_METRICS, MetricInfo, MetricSpec, compute_map_metrics, metric_info, register_metric
from .stats import bootstrap_ci, pointing_game_per_class

__all__ = ["METRICS", "SUMMARY_METRICS", "MetricInfo", "MetricSpec", "metric_info", "register_metric", "compute_map_metrics", "NeuronCoverage", "bootstrap_ci",
           "pointing_game_per_class", "area_ratio", "box_iou", "hit", "pointing_game", "energy_pg",
           "harmonization", "gini", "entropy", "boxes_to_masks", "gaussian_blur", "prepare_human_maps",
           "spearman", "CLICKME_CEILING", "MapBatch"]
