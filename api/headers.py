"""Response headers that keep a browser from running or keeping what the API serves.

The API shares its origin with the patients' web portal, so nothing it answers may become a page
that runs there: a deposited HTML or SVG document, a JSON body a browser is tricked into rendering.
Every response gets:

- `X-Content-Type-Options: nosniff`: the declared type is the only one a browser uses;
- `Content-Security-Policy` with `sandbox` and `default-src 'none'`: even rendered, a response
  runs no script, loads nothing and is its own opaque origin; `frame-ancestors 'none'` (and
  `X-Frame-Options: DENY` for older browsers): no page may frame it;
- `Cache-Control: no-store`: nothing about a patient is kept by a browser or a proxy;
- `Referrer-Policy: no-referrer`, `Cross-Origin-Resource-Policy: same-origin`.

Pages (the portal, api/portal/, and the self-hosted `/docs`) set their own policy, which this one then
leaves alone: scripts, styles and images from this origin only, nothing from another host.

Document content (`content_headers`) is served with its stored type only when it is a type the
pipeline accepts, as an attachment unless it is one a browser shows inertly (images, plain text),
under a file name made of the document id: never the title, never a name from the sender.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from api.middleware import HttpMiddleware

API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox"
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# The types the pipeline accepts (pipeline/documents/inspect.py), with the extension of their file name.
# A stored type outside this list is served as application/octet-stream.
EXTENSIONS = {
    "application/pdf": ".pdf",
    "application/xml": ".xml",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/tiff": ".tif",
    "text/plain": ".txt",
}
# Shown in the browser rather than downloaded: formats a browser renders without running anything.
# Not PDF: its viewers are refused under a sandbox policy (Chrome shows nothing), and a PDF is better
# opened in the reader the download hands it to. Not XML: a browser renders XHTML and its scripts.
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "text/plain"})
OCTET_STREAM = "application/octet-stream"


def served_type(mime_type: str) -> str:
    """The Content-Type to serve a stored document under."""
    return mime_type if mime_type in EXTENSIONS else OCTET_STREAM


def content_headers(document_id: str, mime_type: str) -> dict[str, str]:
    """Headers of a document's content: its disposition and a safe file name (the id, ASCII only)."""
    kind = served_type(mime_type)
    disposition = "inline" if kind in INLINE_TYPES else "attachment"
    name = "".join(c for c in document_id if c.isascii() and (c.isalnum() or c == "-")) or "document"
    return {"Content-Disposition": f'{disposition}; filename="{name}{EXTENSIONS.get(kind, ".bin")}"'}


class SecurityHeaders(HttpMiddleware):
    """ASGI middleware adding the headers above to every response that does not set its own."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", API_POLICY)
            await send(message)

        await self.app(scope, receive, stamped)
