// Starts Swagger UI on this server's OpenAPI document. "Authorize" takes a bearer token (from
// `confab token` or POST /v1/dev/token); it stays in this page only.
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // The badge would send the document to validator.swagger.io.
  validatorUrl: null,
  persistAuthorization: false,
});
