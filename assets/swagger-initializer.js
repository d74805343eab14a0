// Starts Swagger UI on the service's own OpenAPI document. It is a served
// file rather than an inline script so the page's Content-Security-Policy
// can forbid inline scripts altogether.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The public validator badge would call out to the internet.
    validatorUrl: null,
    // Tokens stay in memory only: nothing left in localStorage.
    persistAuthorization: false,
  });
});
