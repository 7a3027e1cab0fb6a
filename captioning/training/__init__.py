"""The training wing: datasets, the feature cache, objectives, the trainer, evaluation and
metrics, weight averaging, ensembling and run logs. Inference needs none of it."""
