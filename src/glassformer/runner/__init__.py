"""The runs of train_step_by_step.py, built, resumed and summarised in one place: digits and sentences
(epochs.py, tasks.py), lm and qa; each trains on train/trainer.py's Trainer. cli/ parses and prints."""
