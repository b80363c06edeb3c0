//! The interactive API docs at `/docs`: an HTML page whose scripts, styles and icon are the
//! embedded Swagger UI files, served from this origin with their types, under a policy that
//! allows nothing from elsewhere, pointed at `/v1/openapi.json`.

mod common;

use common::Server;

/// The values of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let opening = format!("{attribute}=\"");
    html.match_indices(&opening)
        .filter_map(|(at, _)| {
            let rest = &html[at + opening.len()..];
            rest.split_once('"').map(|(value, _)| value)
        })
        .collect()
}

async fn fetch(server: &Server, path: &str) -> reqwest::Response {
    server
        .client()
        .get(format!("{}{path}", server.base()))
        .send()
        .await
        .expect(path)
}

#[tokio::test]
async fn docs_page_serves_the_embedded_swagger_ui() {
    let server = Server::in_process(&[]).await;
    let mut pages = Vec::new();
    for path in ["/docs", "/docs/"] {
        let response = fetch(&server, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers["content-type"], "text/html; charset=utf-8",
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        pages.push(response.text().await.expect("page"));
    }
    assert_eq!(pages[0], pages[1]);
    let page = &pages[0];

    let mut assets: Vec<&str> = attribute_values(page, "src");
    assets.extend(attribute_values(page, "href"));
    for expected in [
        "/docs/swagger-ui-bundle.js",
        "/docs/init.js",
        "/docs/swagger-ui.css",
        "/docs/favicon-32x32.png",
    ] {
        assert!(assets.contains(&expected), "{expected} not in {assets:?}");
    }
    for asset in &assets {
        assert!(asset.starts_with("/docs/"), "{asset}: not from this server");
        let response = fetch(&server, asset).await;
        assert_eq!(response.status(), 200, "{asset}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        let expected = match asset.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            other => panic!("{asset}: unexpected asset type {other:?}"),
        };
        assert_eq!(content_type, expected, "{asset}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.bytes().await.expect("body");
        if *asset == "/docs/swagger-ui-bundle.js" {
            assert!(body.len() > 500_000, "the bundle is {} bytes", body.len());
        }
        if *asset == "/docs/init.js" {
            let init = String::from_utf8_lossy(&body);
            assert!(init.contains("url: \"/v1/openapi.json\""), "{init}");
            assert!(init.contains("validatorUrl: null"), "{init}");
            assert!(
                !init.contains("http://") && !init.contains("https://"),
                "{init}"
            );
        }
    }
    // The document the page loads is there, and the licence travels with the UI.
    let (status, document) = server.get("/v1/openapi.json", "").await;
    assert_eq!(status, 200);
    assert!(document["paths"].as_object().is_some_and(|p| !p.is_empty()));
    let license = fetch(&server, "/docs/LICENSE").await;
    assert_eq!(license.status(), 200);
    assert!(
        license
            .text()
            .await
            .expect("licence")
            .contains("Apache License")
    );
    // Any other path under /docs is the JSON not_found of unknown routes.
    let (status, body) = server.get("/docs/nope.js", "").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}
