//! End to end: tenants, tokens, per-tenant views and quotas.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A spec with no `tenant`: it belongs to whoever submits it.
fn app(vdc: &Vdc, name: &str, replicas: u32, port: u16) -> std::path::PathBuf {
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"app = "{name}"
[components.lb]
appliance = "builtin:http-lb"
gateway = {{ port = {port}, address = "127.0.0.1" }}
links = {{ backend = "web.http" }}
[components.web]
replicas = {replicas}
command = ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1"]
resources = {{ cpu = 0.25, memory = "64MiB" }}
inputs = {{ http = {{ protocol = "http", health = "/" }} }}
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_own_apps_streams_and_metrics() {
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let blue = vdc.create_tenant("blue", &[]);
    assert!(acme.starts_with("vdc-acme."), "{acme}");

    let port = free_port();
    let spec = app(&vdc, "alpha", 1, port);
    let out = as_token(&vdc, &acme, &["up", "-d", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The owner and the admin see it; the other tenant sees nothing, and a
    // name of another tenant's app is "not found", exactly like a missing one.
    let apps: serde_json::Value =
        serde_json::from_str(&stdout(&as_token(&vdc, &acme, &["apps", "-o", "json"]))).unwrap();
    assert_eq!(apps[0]["name"], "alpha");
    assert_eq!(apps[0]["tenant"], "acme");
    assert!(vdc.ok(&["apps"]).contains("alpha"));
    assert_eq!(
        stdout(&as_token(&vdc, &blue, &["apps", "-o", "json"])).trim(),
        "[]"
    );
    let out = as_token(&vdc, &blue, &["ps", "alpha"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no app named `alpha`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stdout(&as_token(&vdc, &blue, &["ps", "-o", "json"])).trim(),
        "[]"
    );
    for path in [
        "/v1/apps/alpha",
        "/v1/apps/alpha/topology",
        "/v1/logs/alpha/web/0",
        "/v1/events?app=alpha",
        "/v1/tenants/acme",
    ] {
        assert_eq!(vdc.api_get_as(path, &blue).await.status(), 404, "{path}");
        assert_eq!(vdc.api_get_as(path, &acme).await.status(), 200, "{path}");
    }
    assert_eq!(
        as_token(&vdc, &blue, &["down", "alpha"]).status.code(),
        Some(1)
    );

    // Streams and metrics: blue's subscription carries nothing of acme's.
    let client = http();
    let blue_stream = client
        .get(format!("http://{}/v1/streams/metrics", vdc.addr))
        .bearer_auth(&blue)
        .send()
        .await
        .unwrap();
    let mut acme_stream = client
        .get(format!("http://{}/v1/streams/metrics?app=alpha", vdc.addr))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    for _ in 0..20 {
        client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(4), acme_stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&got).contains("\"app\":\"alpha\""));
    let mut blue_stream = blue_stream;
    let nothing = tokio::time::timeout(Duration::from_secs(3), blue_stream.chunk()).await;
    assert!(nothing.is_err(), "blue received {nothing:?}");
    let metrics = vdc
        .api_get_as("/metrics", &blue)
        .await
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("alpha"), "{metrics}");
    let metrics = vdc
        .api_get_as("/metrics", &acme)
        .await
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("app=\"alpha\""), "{metrics}");

    // Only the admin manages tenants and the server.
    assert_eq!(
        as_token(&vdc, &acme, &["tenant", "create", "evil"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        as_token(&vdc, &acme, &["server", "stop"]).status.code(),
        Some(1)
    );
    assert!(vdc.is_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_wrong_and_rotated_tokens_are_refused() {
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let client = http();
    let url = format!("http://{}/v1/apps", vdc.addr);

    let none = client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: serde_json::Value = none.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("needs a token"));
    for bad in [
        "nonsense",
        "vdc-acme.1234",
        "vdc-acme.zz",
        &format!("{acme}x"),
    ] {
        let r = client.get(&url).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        let _: serde_json::Value = r.json().await.unwrap();
    }
    let forged = format!("vdc-acme.{}", "0".repeat(64));
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&forged)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // After rotation the old token is dead at once and the new one works.
    let rotated = vdc
        .ok(&["tenant", "rotate-token", "acme"])
        .trim()
        .to_owned();
    assert_ne!(rotated, acme);
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client
            .get(&url)
            .bearer_auth(&rotated)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let out = as_token(&vdc, &acme, &["apps"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    // `vdc login` saves a token for later commands.
    let login = std::process::Command::new(BIN)
        .args(["--addr", &vdc.addr, "login", "--with-token", &rotated])
        .env("XDG_CONFIG_HOME", vdc.dir.path().join("config"))
        .env("VDC_DATA_DIR", vdc.dir.path().join("elsewhere"))
        .env_remove("VDC_TOKEN")
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(stdout(&login).contains("tenant `acme`"));
    let saved = std::fs::metadata(vdc.dir.path().join("config/vdc/token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&saved.permissions()) & 0o777,
        0o600
    );

    // Bad bodies get a clean 4xx with a JSON error.
    let admin = vdc.admin_token();
    for body in ["{", "{\"name\": 3}", "{\"name\":\"x\",\"extra\":1}", "[]"] {
        let r = client
            .post(format!("http://{}/v1/tenants", vdc.addr))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
    }
    // /v1/self answers a token that is not an instance's as any endpoint
    // answers a wrong token.
    for token in [admin.as_str(), "garbage", "vdci-app.web.0.x.y"] {
        let r = client
            .get(format!("http://{}/v1/self", vdc.addr))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{token}");
    }
    // A body past the API's limit is refused before it is read whole; a
    // spec past the spec's own limit is refused as an invalid spec.
    for (size, status) in [(9usize << 20, 413), (5 << 20, 422)] {
        let huge = "#".repeat(size);
        let r = client
            .post(format!("http://{}/v1/apps", vdc.addr))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"file\":\"a\",\"base_dir\":\"/\",\"source\":\"{huge}\"}}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{size} bytes");
        if status == 422 {
            let body = r.text().await.unwrap();
            assert!(body.contains("at most 4194304 bytes"), "{body}");
        }
    }
    assert!(vdc.is_up());
}

#[test]
fn quotas_refuse_whole_apps_and_burst_allowances_admit_them() {
    let vdc = Vdc::start();
    let acme = vdc.create_tenant(
        "acme",
        &["--cpu", "1", "--memory", "1GiB", "--instances", "2"],
    );
    let spec = app(&vdc, "big", 3, free_port());
    let out = as_token(&vdc, &acme, &["up", "-d", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("quota exceeded")
            && err.contains("3 instances")
            && err.contains("quota 1 CPU"),
        "{err}"
    );
    assert_eq!(
        stdout(&as_token(&vdc, &acme, &["apps", "-o", "json"])).trim(),
        "[]"
    );
    assert_eq!(
        stdout(&as_token(&vdc, &acme, &["ps", "-o", "json"])).trim(),
        "[]"
    );

    // With a burst allowance the same app is admitted.
    vdc.ok(&[
        "tenant",
        "set-quota",
        "acme",
        "--cpu",
        "1",
        "--memory",
        "1GiB",
        "--instances",
        "2",
        "--burst-cpu",
        "1",
        "--burst-memory",
        "1GiB",
        "--burst-instances",
        "2",
    ]);
    let out = as_token(&vdc, &acme, &["up", "-d", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = vdc.ok(&["tenant", "show", "acme", "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["reserved"]["instances"], 3);
    assert_eq!(shown["apps"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_every_endpoint_gets_a_clean_4xx_with_a_json_error() {
    let vdc = Vdc::start();
    let admin = vdc.admin_token();
    let client = http();
    let base = format!("http://{}", vdc.addr);
    let json = "application/json";
    // (method, path, content type, body)
    let cases: Vec<(&str, String, &str, String)> = vec![
        ("POST", "/v1/apps".into(), json, "{".into()),
        ("POST", "/v1/apps".into(), json, "{\"file\": 1, \"base_dir\": \"/\", \"source\": \"\"}".into()),
        ("POST", "/v1/apps".into(), json, "{\"file\":\"a\",\"base_dir\":\"/\",\"source\":\"\",\"x\":1}".into()),
        ("POST", "/v1/apps".into(), "text/plain", "app = \"x\"".into()),
        ("POST", "/v1/apps".into(), json, "{\"file\":\"a.toml\",\"base_dir\":\"/\",\"source\":\"app = 3\"}".into()),
        ("GET", "/v1/apps/nope".into(), json, String::new()),
        ("DELETE", "/v1/apps/nope".into(), json, String::new()),
        ("GET", "/v1/instances?app=nope".into(), json, String::new()),
        ("GET", "/v1/logs/nope/web/0".into(), json, String::new()),
        ("GET", "/v1/logs/nope/web/notanumber".into(), json, String::new()),
        ("GET", "/v1/apps/nope/topology?seconds=abc".into(), json, String::new()),
        ("GET", "/v1/streams/metrics?kind=bogus".into(), json, String::new()),
        ("GET", "/v1/events?limit=-1".into(), json, String::new()),
        ("POST", "/v1/tenants".into(), json, "{\"name\": \"Bad Name\"}".into()),
        ("POST", "/v1/tenants".into(), json, "{\"name\": \"ok\", \"quota\": {\"cpu\": \"4GB\", \"memory\": \"1GiB\", \"instances\": 1}}".into()),
        ("POST", "/v1/tenants".into(), json, "{\"name\": \"ok\", \"prices\": {\"cpu_minute\": \"1.1234567\"}}".into()),
        ("PUT", "/v1/tenants/nope/quota".into(), json, "{}".into()),
        ("PUT", "/v1/tenants/default/quota".into(), json, "{\"quota\": 5}".into()),
        ("POST", "/v1/tenants/nope/token".into(), json, String::new()),
        ("GET", "/v1/tenants/nope/bill".into(), json, String::new()),
        ("GET", "/v1/tenants/default/bill?from=yesterday".into(), json, String::new()),
        ("GET", "/v1/usage?format=xml".into(), json, String::new()),
        ("GET", "/v1/nothing-here".into(), json, String::new()),
    ];
    for (method, path, content_type, body) in &cases {
        let request = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&admin)
            .header("content-type", *content_type)
            .body(body.clone());
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{method} {path} {body}: {status}");
        let text = response.text().await.unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        assert!(
            parsed["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {path}: {text}"
        );
    }
    // Nothing of that broke the server.
    assert_eq!(vdc.api_get("/v1/apps").await.status(), 200);
}

/// Names in a path are names: a tenant cannot walk out of its own logs
/// with `..` (percent-encoded, as a client may send it) to list another
/// tenant's instances or probe the node's directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_walk_out_of_its_logs() {
    let vdc = Vdc::start();
    let acme = vdc.create_tenant("acme", &[]);
    let blue = vdc.create_tenant("blue", &[]);
    for (token, name) in [(&acme, "alpha"), (&blue, "beta")] {
        let spec = app(&vdc, name, 1, free_port());
        let out = as_token(&vdc, token, &["up", "-d", spec.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mine = vdc.api_get_as("/v1/logs/beta", &blue).await;
    assert_eq!(mine.status(), 200);
    let missing = vdc.api_get_as("/v1/logs/nothing", &blue).await;
    assert_eq!(missing.status(), 404);
    for path in [
        "/v1/logs/..%2Facme%2Falpha",
        "/v1/logs/..%2Facme%2Falpha/web/0",
        "/v1/logs/beta?tenant=..%2Facme",
        "/v1/logs/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc",
        "/v1/logs/..%2F..%2F..%2F..%2F..%2F..%2F..%2Fnothing-here",
    ] {
        let r = vdc.api_get_as(path, &blue).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.contains("alpha/web"), "{path}: {body}");
    }
}
