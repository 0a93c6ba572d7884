"""The HTTP service: FastAPI routes over Deployments whose state lives in SQL."""
