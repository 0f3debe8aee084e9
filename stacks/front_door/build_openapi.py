"""Build `openapi.json` from the request schema, so the API description and the API Gateway
request model cannot drift apart. `python -m stacks.front_door.build_openapi` rewrites the file;
a test fails when the checked-in file is out of date.

Also the answer API Gateway gives without the Lambda (the GET /health MOCK integration), which the
local gateway serves byte for byte: `health_body()`. GET /openapi.json is the function's (this
document merged with the served model's description, decision 0011)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.front_door.runtime.model_openapi import to_openapi_schema

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
# The request model API Gateway applies (front_door/construct.py) and the local gateway applies
# (sagelab/local/serve.py); the function reads its own copy beside it (handler.REQUEST_SCHEMA_PATH).
REQUEST_SCHEMA = RUNTIME_DIR / "request_schema.json"
OPENAPI = RUNTIME_DIR / "openapi.json"


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def build() -> dict[str, Any]:
    request = to_openapi_schema(json.loads(REQUEST_SCHEMA.read_text()))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "SageLab front door",
            "version": "1.0.0",
            "description": (
                "Scores rows with the approved model of a SageLab environment. "
                "With serving.auth api_key, send the key in the x-api-key header: a key identifies a client for its usage plan "
                "(throttle and quota); it is not authentication. With serving.auth iam, sign requests with SigV4 (service execute-api)."
            ),
        },
        "servers": [
            {
                "url": "https://{apiId}.execute-api.{region}.amazonaws.com/prod",
                "variables": {"apiId": {"default": "api-id"}, "region": {"default": "us-east-1"}},
            },
            {"url": "http://127.0.0.1:8080", "description": "sagelab serve"},
        ],
        "security": [{"ApiKey": []}, {"SigV4": []}],
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Score up to 1,000 rows",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
                    "responses": {
                        "200": {
                            "description": "One prediction per row",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}},
                        },
                        "400": error_response("Malformed input; the message names the field"),
                        "403": error_response("Missing or unknown API key, or a missing or wrong SigV4 signature"),
                        "413": error_response("Body over SageMaker's 6 MB limit"),
                        "429": error_response("Throttled; retry after the Retry-After header"),
                        "502": error_response("The model failed on this request"),
                        "503": error_response("No model deployed yet, or not ready"),
                        "504": error_response("The endpoint did not answer in time"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness of the front door",
                    "security": [],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document, with the served model's features, labels and categorical values (same auth as /predict)",
                    "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "SigV4": {"type": "apiKey", "in": "header", "name": "Authorization", "x-amazon-apigateway-authtype": "awsSigv4"},
            },
            "schemas": {
                "PredictRequest": request,
                "PredictResponse": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "label": {"type": "string"},
                                    "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                                    "value": {"type": "number"},
                                    "cluster": {"type": "integer"},
                                    "distance": {"type": "number"},
                                },
                                "description": "By problem type: label and probabilities (binary, multiclass), value (regression), "
                                "cluster and distance (clustering); GET /openapi.json of a deployment says which",
                            },
                        }
                    },
                },
                "Health": {"type": "object", "properties": {"status": {"type": "string"}, "endpoint": {"type": "string"}}},
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "requestId": {"type": "string", "description": "Quote it when asking about a failure: the details are logged under it"},
                    },
                },
            },
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def health_body(endpoint_name: str) -> str:
    """What GET /health answers: the front door is up, and which endpoint it fronts."""
    return json.dumps({"status": "ok", "endpoint": endpoint_name}, separators=(",", ":"))


if __name__ == "__main__":
    OPENAPI.write_text(render())
