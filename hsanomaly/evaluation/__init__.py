"""Evaluation of anomaly heatmaps against truth masks: AUC, logAUC, lgFAR, Pd, per target,
plots."""

from .metrics import RocCurve, Target, class_masks, evaluate, label_targets, roc_curve, score_targets
from .files import evaluate_arrays, evaluate_files, format_summary, read_heatmap, read_mask, write_json

__all__ = ["RocCurve", "Target", "class_masks", "evaluate", "evaluate_arrays", "evaluate_files", "format_summary",
           "label_targets", "read_heatmap", "read_mask", "roc_curve", "score_targets",
           "write_json"]
