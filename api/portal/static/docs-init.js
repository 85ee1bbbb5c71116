// Swagger UI start-up (api/portal/docs.py): a file, so the page's policy allows no inline script.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
