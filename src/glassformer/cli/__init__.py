"""Command-line programs: train_step_by_step.py and test_model_manually.py."""
