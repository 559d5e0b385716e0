"""mbunet library: model files, engines, video pipeline, power and telemetry."""
