"""The training engine: the loop every stage runs (``loop.fit``) and the small artifacts' loop, batching,
sampling, resume, schedules, distillation, perception pretraining and inference."""
