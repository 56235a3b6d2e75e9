"""Engine-side helpers: checkpoint loading, CPU distributed set-up."""
