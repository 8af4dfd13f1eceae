"""The control API for teams (`mlops api`): an HTTP shell (FastAPI) over the same library code
the CLI calls. `app.py` builds the app; `auth.py` verifies bearer JWTs; `access.py` holds the
roles matrix and the tenants (deploy/api/access.yaml); `ratelimit.py` limits calls per tenant;
`audit.py` records every mutating call in the Iceberg audit log; one router per domain."""
