"""The ranking service: FastAPI app, background reloader, routes and Prometheus metrics."""
