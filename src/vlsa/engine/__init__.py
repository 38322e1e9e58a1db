"""Engine: wires readers, transforms, models and metrics from a config."""
