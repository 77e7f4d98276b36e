"""Drift monitoring: reference profiles, divergence statistics and the drift worker."""
