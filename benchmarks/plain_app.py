"""The floor of the stack for ``benchmarks/server.py``: a plain FastAPI app with one endpoint.

``POST /predict`` takes the same JSON body as banditops's predict route
(``{"features": {name: value, ...}}``), validates it with pydantic, and calls the same model
artifact, loaded by the same function banditops uses, on a one-row float input. No routing,
no database, no authentication. It is the cheapest ordinary FastAPI form: an ``async``
endpoint calling the model inline (a ``def`` endpoint would add a thread hop per request) and
answering a ``JSONResponse`` (no response-model validation).

Started by the benchmark like the banditops server (one worker, 127.0.0.1, log level
warning, no access log, ``gc.freeze()`` after loading)::

    BENCH_ARTIFACT=/path/v1.skops BENCH_FEATURES=x0,x1,... python -m uvicorn plain_app:app \
        --app-dir benchmarks --host 127.0.0.1 --port 8001 --log-level warning --no-access-log

It lives in ``benchmarks/`` so that nothing of it ships in the package.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from banditops.service.artifacts import load_artifact

ARTIFACT = Path(os.environ["BENCH_ARTIFACT"])
FEATURES = os.environ["BENCH_FEATURES"].split(",")
MODEL = load_artifact(ARTIFACT, [ARTIFACT.parent], allow_pickle=False)


class PredictBody(BaseModel):
    """One instance, as banditops's predict route takes it."""

    features: dict[str, float]


app = FastAPI()


@app.post("/predict")
async def predict(body: PredictBody) -> JSONResponse:
    row = np.array([[body.features[name] for name in FEATURES]], dtype=float)
    prediction = MODEL.predict(row)[0]
    return JSONResponse({"prediction": prediction.item() if isinstance(prediction, np.generic)
                         else prediction})


gc.freeze()  # as `banditops serve` does: the model and app are long-lived
