"""Command-line front end: argument parsing only; all work is done by the `pipeline` library."""
