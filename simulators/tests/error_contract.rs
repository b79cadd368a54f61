//! The simulators' error behaviour over real HTTPS: envelopes, status codes and headers as the
//! vendor contracts describe them. (Happy paths are proven by the vendors' own clients in the
//! workspace's contract tests.)

use changeflow_simulators::{FaultConfig, RunningSimulators, SimulatorOptions};
use serde_json::{Value, json};

struct Fixture {
    sims: RunningSimulators,
    http: reqwest::Client,
    _dir: RemovedOnDrop,
}

struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fixture(faults: FaultConfig) -> Fixture {
    let dir = std::env::temp_dir().join(format!("cf-sim-{}", uuid::Uuid::new_v4().simple()));
    let mut options = SimulatorOptions::new(&dir);
    options.faults = faults;
    let sims = changeflow_simulators::start(options).await.unwrap();
    let ca = std::fs::read(sims.ca_file.as_ref().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    Fixture {
        sims,
        http,
        _dir: RemovedOnDrop(dir),
    }
}

impl Fixture {
    async fn catalyst_token(&self) -> String {
        let c = &self.sims.credentials;
        let r = self
            .http
            .post(format!(
                "{}/dna/system/api/v1/auth/token",
                self.sims.catalyst_url
            ))
            .basic_auth(&c.catalyst_username, Some(&c.catalyst_password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["Token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn sn(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let c = &self.sims.credentials;
        self.http
            .request(method, format!("{}{path}", self.sims.servicenow_url))
            .basic_auth(&c.servicenow_username, Some(&c.servicenow_password))
    }
}

#[tokio::test]
async fn catalyst_rejects_bad_credentials_and_missing_tokens() {
    let f = fixture(FaultConfig::default()).await;
    let url = &f.sims.catalyst_url;
    let bad = f
        .http
        .post(format!("{url}/dna/system/api/v1/auth/token"))
        .basic_auth("devnetuser", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let anonymous = f
        .http
        .get(format!("{url}/dna/intent/api/v1/network-device"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["version"], "1.0");
    assert!(body["response"]["errorCode"].is_string(), "{body}");

    let token = f.catalyst_token().await;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    f.sims.catalyst.revoke_tokens();
    let revoked = f
        .http
        .get(format!("{url}/dna/intent/api/v1/network-device"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        401,
        "a revoked token is refused like an expired one"
    );
}

#[tokio::test]
async fn catalyst_errors_use_the_documented_envelopes() {
    let f = fixture(FaultConfig::default()).await;
    let token = f.catalyst_token().await;
    let url = &f.sims.catalyst_url;
    let get = |path: String| {
        f.http
            .get(format!("{url}{path}"))
            .header("X-Auth-Token", &token)
            .send()
    };

    let missing = get("/dna/intent/api/v1/template-programmer/template/no-such-id".into())
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["response"]["message"],
        "Template not found"
    );

    let too_many = get("/dna/intent/api/v1/network-device?limit=501".into())
        .await
        .unwrap();
    assert_eq!(too_many.status(), 400, "limit is at most 500");
    let zero_offset = get("/dna/intent/api/v1/network-device?offset=0".into())
        .await
        .unwrap();
    assert_eq!(zero_offset.status(), 400, "offset is 1-based");

    let deploy = f
        .http
        .post(format!("{url}/dna/intent/api/v2/template-programmer/template/deploy"))
        .header("X-Auth-Token", &token)
        .json(&json!({"templateId": "nope", "targetInfo": [{"id": "x", "type": "MANAGED_DEVICE_UUID"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(deploy.status(), 400);
    let body: Value = deploy.json().await.unwrap();
    assert_eq!(body["status"], "failed");
    assert!(body["taskId"].is_null());
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(
        f.sims.stats.deploy_requests(),
        0,
        "a rejected deploy starts nothing"
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after_on_both_simulators() {
    let f = fixture(FaultConfig {
        rate_limit_rate: 1.0,
        retry_after_secs: 7,
        ..Default::default()
    })
    .await;
    let cc = f
        .http
        .post(format!(
            "{}/dna/system/api/v1/auth/token",
            f.sims.catalyst_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(cc.status(), 429);
    assert_eq!(cc.headers()["retry-after"], "7");
    assert_eq!(
        cc.json::<Value>().await.unwrap()["bapiExtendedStatusCode"],
        "REJECTED_ABOVE_MAX_CONCURRENCY_LIMIT"
    );

    let sn = f
        .sn(reqwest::Method::GET, "/api/now/table/change_request")
        .send()
        .await
        .unwrap();
    assert_eq!(sn.status(), 429);
    assert_eq!(sn.headers()["retry-after"], "7");
    assert!(sn.headers().contains_key("x-ratelimit-reset"));
    let body: Value = sn.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Rate limit exceeded", "detail": "The maximum number of requests per hour has been exceeded"}, "status": "failure"})
    );

    // Faults can be changed while running, over HTTP too.
    let cleared = f
        .http
        .put(format!("{}/_simulator/faults", f.sims.servicenow_url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(
        f.sn(reqwest::Method::GET, "/api/now/table/change_request")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let invalid = f
        .http
        .put(format!("{}/_simulator/faults", f.sims.servicenow_url))
        .json(&json!({"error_rate": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
}

#[tokio::test]
async fn servicenow_enforces_auth_state_model_and_not_found() {
    let f = fixture(FaultConfig::default()).await;
    let url = &f.sims.servicenow_url;
    let anonymous = f
        .http
        .get(format!("{url}/api/now/table/change_request"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.json::<Value>().await.unwrap()["error"]["message"],
        "User Not Authenticated"
    );

    let created = f
        .sn(reqwest::Method::POST, "/api/now/table/change_request")
        .json(&json!({"short_description": "x", "state": "-1", "risk": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let record = created.json::<Value>().await.unwrap()["result"].clone();
    assert_eq!(
        record["state"], "-5",
        "new changes start in New whatever the body says"
    );
    assert_eq!(record["risk"], "2", "values are stored as strings");
    let sys_id = record["sys_id"].as_str().unwrap();
    assert_eq!(sys_id.len(), 32);

    let path = format!("/api/now/table/change_request/{sys_id}");
    let jump = f
        .sn(reqwest::Method::PATCH, &path)
        .json(&json!({"state": "-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(jump.status(), 403, "New cannot jump to Implement");
    let body: Value = jump.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Operation Failed");
    assert!(
        body["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("New to Implement")
    );
    let close_without_code = f
        .sn(reqwest::Method::PATCH, &path)
        .json(&json!({"state": "4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        close_without_code.status(),
        200,
        "canceling needs no close code"
    );

    let all = f
        .sn(
            reqwest::Method::GET,
            &format!("{path}?sysparm_display_value=all"),
        )
        .send()
        .await
        .unwrap();
    let record = all.json::<Value>().await.unwrap()["result"].clone();
    assert_eq!(
        record["state"],
        json!({"display_value": "Canceled", "value": "4"})
    );

    let missing = f
        .sn(
            reqwest::Method::GET,
            "/api/now/table/change_request/0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["message"],
        "No Record found"
    );
    let deleted = f.sn(reqwest::Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let bad_query = f
        .sn(
            reqwest::Method::GET,
            "/api/now/table/change_request?sysparm_query=stateBETWEEN1@2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), 400);
}

#[tokio::test]
async fn servicenow_lists_paginate_with_total_count_and_links() {
    let f = fixture(FaultConfig::default()).await;
    for i in 0..3 {
        let r = f
            .sn(reqwest::Method::POST, "/api/now/table/change_request")
            .json(&json!({"short_description": format!("c{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let page = f
        .sn(
            reqwest::Method::GET,
            "/api/now/table/change_request?sysparm_limit=2&sysparm_query=ORDERBYDESCnumber",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["x-total-count"], "3");
    let link = page.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("rel=\"next\"") && link.contains("sysparm_offset=2"),
        "{link}"
    );
    let body: Value = page.json().await.unwrap();
    let numbers: Vec<&str> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, vec!["CHG0030003", "CHG0030002"]);
}
