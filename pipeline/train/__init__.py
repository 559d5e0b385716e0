"""Training data (composites, image folders), losses, schedules, the trainer, evaluation and the masking sweep."""
