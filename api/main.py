"""The seed's entry point: `uvicorn api.main:app --host 0.0.0.0 --port 8080` from the repository root."""

from ltr_pipeline.service.app import create_app

app = create_app()
