"""The provider's algorithms."""

from .detect import DetectAnomalies
from .evaluate import Evaluate
from .train import TrainModel

ALGORITHMS = (DetectAnomalies, TrainModel, Evaluate)
