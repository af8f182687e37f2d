"""The trainer's allowed values, in one torch-free, pydantic-free place: read by the torch
library (:mod:`longtail.nets`) and by the typed parameters (:mod:`longtail.params`)."""

ARCHITECTURES = ("mlp", "cnn", "resnet")  # built-in models (longtail.nets.models.build_model)
SCHEDULES = ("constant", "cosine", "linear")  # learning-rate schedules, per step (linear: to 0)
#: How a model's numbers are computed: float32 weights and activations; float32 weights under
#: bf16 autocast (matrix products and convolutions in bfloat16); or float64 throughout (slow:
#: a reference whose rounding is far below any difference a bug makes, used by the tests).
PRECISIONS = ("fp32", "bf16", "fp64")
#: What the ``training.precision`` parameter accepts: ``auto`` resolves to bf16 on CUDA, else fp32.
PARAM_PRECISIONS = ("auto", *PRECISIONS[:2])
