"""The HTTP contract as OpenAPI 3.1: one document per service, built at start-up from the
same bounds the validation code checks (each service's openapi.py), served at
/api/openapi.json; merged for the gateway by tools/openapi.py (docs/api.md)."""
