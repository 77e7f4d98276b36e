"""Inference API: FastAPI app, model store and Prometheus metrics."""
