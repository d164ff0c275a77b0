"""Model compression after training: int8 weight quantisation (pruning lives in the optimizer,
research/training/pruning.py; distillation is a task, research/tasks/distillation.py)."""
