"""`/docs`: Swagger UI served from this app (the swagger-ui-bundle package's files), never from a CDN.

The page is static HTML; its start-up script is a file of ours (static/docs-init.js), so the policy needs no
inline script. ReDoc is not offered (it would need fonts and a worker from other hosts).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SWAGGER = "/static/swagger-ui"
PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>DMP API</title>
<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/static/portal/docs-init.js"></script>
</body></html>"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs() -> HTMLResponse:
    """The interactive documentation of /openapi.json."""
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": DOCS_POLICY})


def mount_swagger(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.mount(SWAGGER, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
