"""Accuracy predictors: collect (arch, accuracy) samples from a supernet, fit, select, save, load.

    from predictors import AccuracyPredictor
    predictor = AccuracyPredictor.load("work/predictor")
    top1 = predictor.predict(archs)              # numpy array, fraction in [0, 1]
"""
from predictors.features import Encoding
from predictors.predictor import AccuracyPredictor, PredictorError
from predictors.samples import Sample, SampleFile, SamplesError, SamplesHeader, read_samples

__all__ = [
    "AccuracyPredictor",
    "PredictorError",
    "Encoding",
    "Sample",
    "SampleFile",
    "SamplesHeader",
    "SamplesError",
    "read_samples",
]
