"""Command-line programs (train_step_by_step.py, test_model_manually.py); nothing else imports cli/."""
