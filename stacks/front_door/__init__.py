"""The front door unit: `construct.py` (API, WAF, function), beside `runtime/` (the function: handler, codecs,
capture, request schema, OpenAPI) and `build_openapi.py` (builds runtime/openapi.json; not shipped).
Importing the runtime never imports aws_cdk (`sagelab serve` runs the handler locally)."""
