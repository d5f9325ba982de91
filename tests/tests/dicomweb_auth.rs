//! DICOMweb over HTTPS: TLS, health probes, bearer tokens (401 vs 403),
//! tokens created and revoked by the CLI while the gateway runs.

use gateway_e2e::TestGateway;

#[tokio::test]
async fn health_needs_no_token_and_speaks_http2() {
    let gw = TestGateway::start("");
    let client = gw.https_client();
    for path in ["/health/live", "/health/ready"] {
        let response = client
            .get(format!("{}{path}", gw.http_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.version(),
            reqwest::Version::HTTP_2,
            "ALPN should pick h2"
        );
    }
}

#[tokio::test]
async fn missing_or_bad_token_is_401_with_a_challenge() {
    let gw = TestGateway::start("");
    let client = gw.https_client();
    let url = format!("{}/studies", gw.dicomweb_url());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    let response = client
        .get(&url)
        .bearer_auth("dgw_00000000_nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn read_token_cannot_write_and_revocation_is_immediate() {
    let gw = TestGateway::start("");
    let client = gw.https_client();
    let read = gw.create_token("demo", "read", "");
    // Works at once on the running gateway.
    let response = client
        .get(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    // An empty store: 204 No Content (PS3.18 8.3.4.4.1).
    assert_eq!(response.status(), 204);
    let response = client
        .post(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&read)
        .header(
            "content-type",
            "multipart/related; type=\"application/dicom\"; boundary=x",
        )
        .body("--x--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let id = read.split('_').nth(1).unwrap().to_string();
    let out = std::process::Command::new(gateway_e2e::gateway_binary())
        .args(["tokens", "revoke", &id, "--data-dir"])
        .arg(gw.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response = client
        .get(format!("{}/studies", gw.dicomweb_url()))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn tls_is_required_and_plain_http_is_refused() {
    let gw = TestGateway::start("");
    let plain = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/health/live", gw.http.unwrap().port());
    assert!(
        plain.get(url).send().await.is_err(),
        "plain HTTP must not be served on the TLS port"
    );
}

#[tokio::test]
async fn hashed_tokens_in_config_work_with_their_scopes() {
    use sha2::{Digest, Sha256};
    let token = "dgw_cafe0001_managed-as-code-secret-for-tests";
    let sha = hex::encode(Sha256::digest(token.as_bytes()));
    let gw = TestGateway::start_with_config(gateway_e2e::base_config("").replace(
        "body_timeout = \"20s\"",
        &format!(
            "body_timeout = \"20s\"\n[[dicomweb.tokens]]\nid = \"pacs-ro\"\nsite = \"demo\"\nscopes = [\"read\"]\nsha256 = \"{sha}\"\n"
        ),
    ));
    let client = gw.https_client();
    let url = format!("{}/studies", gw.dicomweb_url());
    let response = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 204, "configured read token works");
    let response = client
        .post(&url)
        .bearer_auth(token)
        .header("content-type", gateway_e2e::stow_content_type("x"))
        .body("--x--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "read-only token cannot STOW");
    let response = client
        .get(&url)
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
