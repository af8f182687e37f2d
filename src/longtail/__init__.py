"""longtail: what neural networks memorize, and which training examples each test prediction
leans on (Feldman & Zhang 2020), as Kedro pipelines.

The library parts are plain Python: ``longtail.estimate`` (memorization and influence
estimators, their intervals, exact tests and q-values, and the selection rule), ``longtail.nets``
(networks, the trainer's settings with their allowed values, the batched ensemble trainer and
its shard sizing), ``longtail.shards``
and ``longtail.executors`` (resumable, distributed training), ``longtail.sources`` (datasets),
``longtail.diagnostics`` and ``longtail.figures``.
"""

__version__ = "0.1.0"
