//! The NOC web view in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/web/browser.mjs`, pinned in tools/node) against a real `changeflow dev`: sign-in
//! through the development OpenID provider, a change followed live to its end, an approval from
//! the browser, refusals (own change, no CSRF token, a service-desk cancel), a confirmed cancel,
//! an auditor's evidence download, sign-out, no resource from elsewhere, and axe-core's
//! accessibility rules.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noc_engineers_approvers_and_auditors_use_the_web_view_in_a_real_browser() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run `make tools` (it installs Debian's chromium)"
    );
    let node = node_dir();
    assert!(
        node.join("node_modules/playwright-core").is_dir()
            && node.join("node_modules/axe-core").is_dir(),
        "{} lacks playwright-core or axe-core: run `make tools`",
        node.display()
    );
    let dir = common::TempDir::new("changeflow-web");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let endpoints = &dev.endpoints;
    let mut alice = dev.client("alice").await;
    let approve = common::request_ntp_change(&mut alice, "NTP, approved in the browser").await;
    let cancel = common::request_ntp_change(&mut alice, "NTP, canceled in the browser").await;

    // The script runs next to node_modules so its imports resolve.
    let script = node.join(format!("web-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/browser.mjs"),
        &script,
    )
    .unwrap();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view-change.png");
    let run = tokio::process::Command::new(node.join("node_modules/.bin/node"))
        .arg(&script)
        .env("UI", endpoints["ui"].as_str().unwrap())
        .env("ISSUER", endpoints["oidc_issuer"].as_str().unwrap())
        .env("APPROVE", &approve)
        .env("CANCEL", &cancel)
        .env("SCREENSHOT", &screenshot)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(480), run).await;
    let _ = std::fs::remove_file(&script);
    let output = output.expect("the browser run ends in time").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{stderr}\n--- dev log ---\n{}",
        std::fs::read_to_string(dir.0.join("dev.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stdout.contains("none outside changeflow"), "{stdout}");
    assert!(screenshot.exists(), "the change page's screenshot");
}

/// Runs a script of `tests/web/` next to node_modules with `envs`; its stdout once it passed.
async fn browse(script: &str, envs: &[(&str, &str)], log: &Path) -> String {
    let node = node_dir();
    let copy = node.join(format!("web-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/web")
            .join(script),
        &copy,
    )
    .unwrap();
    let run = tokio::process::Command::new(node.join("node_modules/.bin/node"))
        .arg(&copy)
        .envs(envs.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(480), run).await;
    let _ = std::fs::remove_file(&copy);
    let output = output.expect("the browser run ends in time").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}\n--- log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_signs_in_through_npm_oidc_provider_too() {
    let node = node_dir();
    assert!(
        node.join("node_modules/oidc-provider").is_dir(),
        "run `make tools`"
    );
    let dir = common::TempDir::new("changeflow-web-oidc");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let endpoints = &dev.endpoints;
    let field = |name: &str| endpoints[name].as_str().unwrap().to_string();
    let (provider_port, serve_port) = (common::free_port(), common::free_port());
    let front = format!("http://127.0.0.1:{serve_port}");
    let issuer = format!("http://127.0.0.1:{provider_port}");

    let script = node.join(format!("provider-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs"),
        &script,
    )
    .unwrap();
    let mut provider = tokio::process::Command::new(node.join("node_modules/.bin/node"))
        .arg(&script)
        .env("PORT", provider_port.to_string())
        .env("RESOURCE", format!("{front}/mcp"))
        .env("LOGIN_REDIRECT", format!("{front}/ui/callback"))
        .env("GROUPS", "network-engineers")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut ready = String::new();
    {
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(provider.stdout.take().unwrap()).lines();
        if let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
        {
            ready = line;
        }
        // Keep reading: it logs its interactions, and a closed pipe would stop it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    }
    let _ = std::fs::remove_file(&script);
    assert!(
        ready.starts_with("ready"),
        "oidc-provider did not start: {ready}"
    );

    let serve_log = dir.0.join("serve.log");
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .arg("--data-dir")
        .arg(dir.0.join("serve"))
        .args(["--temporal-address", &field("temporal")])
        .args(["--namespace", &field("namespace")])
        .args(["--task-queue", &field("task_queue")])
        .args(["serve", "--listen", &format!("127.0.0.1:{serve_port}")])
        .args(["--oidc-issuer", &issuer])
        .args(["--ui-client-id", "web", "--ui-scope", "profile,email,mcp"])
        .arg("--policy-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policy"))
        .env("CHANGEFLOW_UI_CLIENT_SECRET", "web-secret")
        .stderr(std::fs::File::create(&serve_log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{front}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never came up: {}",
            std::fs::read_to_string(&serve_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = browse(
        "oidc-provider.mjs",
        &[("UI", &format!("{front}/ui/")), ("ISSUER", &issuer)],
        &serve_log,
    )
    .await;
    assert!(out.contains("signed in through oidc-provider"), "{out}");
    let _ = serve.kill().await;
    let _ = provider.kill().await;
    drop(dev);
}

/// A query parameter of a URL.
fn param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Sign-in's refusals, without a browser: the development provider's authorization endpoint
/// and code grant (PKCE, single use, redirect and client binding), and the web view's callback
/// (a state it did not issue, a browser that did not begin the sign-in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_refuses_forged_or_replayed_steps() {
    let dir = common::TempDir::new("changeflow-web-refusals");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let endpoints = &dev.endpoints;
    let ui = endpoints["ui"].as_str().unwrap().trim_end_matches('/');
    let issuer = endpoints["oidc_issuer"].as_str().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The web view begins a sign-in: PKCE S256, a nonce, a state, a Lax binding cookie.
    let begun = http.get(format!("{ui}/login")).send().await.unwrap();
    assert_eq!(begun.status(), 303);
    let authorize = begun.headers()["location"].to_str().unwrap().to_string();
    assert!(
        authorize.starts_with(&format!("{issuer}/authorize?")),
        "{authorize}"
    );
    assert_eq!(
        param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&authorize, "nonce").is_some());
    let state = param(&authorize, "state").unwrap();
    let binding = set_cookies(&begun)
        .into_iter()
        .find(|c| c.starts_with("changeflow_login="))
        .expect("a login binding cookie");
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );
    let binding = binding.split(';').next().unwrap().to_string();

    // The provider refuses what it cannot send back safely, on its page.
    for (what, url) in [
        (
            "another client",
            authorize.replace("client_id=changeflow-ui", "client_id=evil"),
        ),
        (
            "a redirect off loopback",
            format!(
                "{issuer}/authorize?response_type=code&client_id=changeflow-ui&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&code_challenge={}&code_challenge_method=S256",
                "a".repeat(43)
            ),
        ),
        (
            "no PKCE",
            authorize.replace("code_challenge_method=S256", "code_challenge_method=plain"),
        ),
    ] {
        let refused = http.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 400, "{what}");
    }

    // Alice picks herself; the code comes back to the web view's callback with the state.
    let form: Vec<(String, String)> = reqwest::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("user".to_string(), "alice".to_string())])
        .collect();
    let picked = || http.post(format!("{issuer}/authorize")).form(&form).send();
    let back = picked().await.unwrap();
    assert_eq!(back.status(), 303);
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{ui}/callback?")),
        "{callback}"
    );
    assert_eq!(param(&callback, "state").as_deref(), Some(state.as_str()));

    // A GET carrying a cookie, as a browser sends it.
    let get_as = |url: &str, cookie: &str| http.get(url).header("cookie", cookie).send();
    // A callback the view did not begin, or from another browser, makes no session.
    let unknown = get_as(&format!("{ui}/callback?code=x&state=forged"), &binding)
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert!(
        set_cookies(&unknown)
            .iter()
            .all(|c| !c.starts_with("changeflow_session="))
    );
    let other_browser = http.get(&callback).send().await.unwrap();
    assert_eq!(other_browser.status(), 400, "no binding cookie");
    // The right browser signs in: a Strict, HttpOnly session cookie scoped to /ui.
    let signed_in = get_as(&callback, &binding).await.unwrap();
    assert_eq!(
        signed_in.status(),
        200,
        "{}",
        signed_in.text().await.unwrap()
    );
    let session = set_cookies(&signed_in)
        .into_iter()
        .find(|c| c.starts_with("changeflow_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attribute), "{session}");
    }
    let session = session.split(';').next().unwrap().to_string();
    // Signed in: a live stream runs until the session ends; signing out ends it.
    let page = get_as(&format!("{ui}/"), &session)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's CSRF token")
        .to_string();
    // A sign-out with a CSRF token.
    let sign_out = |csrf: &str| {
        http.post(format!("{ui}/logout"))
            .header("cookie", &session)
            .form(&[("csrf", csrf)])
            .send()
    };
    let mut stream = get_as(&format!("{ui}/events"), &session).await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let wrong_csrf = sign_out("forged").await.unwrap();
    assert_eq!(
        wrong_csrf.status(),
        403,
        "sign-out needs the CSRF token too"
    );
    let signed_out = sign_out(&csrf).await.unwrap();
    assert_eq!(signed_out.status(), 303);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "signing out ends the session's streams");
    let after = get_as(&format!("{ui}/"), &session).await.unwrap();
    assert_eq!(after.status(), 303, "the ended session is gone");
    // The same state again (a replayed callback) is refused.
    let replayed = get_as(&callback, &binding).await.unwrap();
    assert_eq!(replayed.status(), 400);

    // The provider's code grant: PKCE verifier, single use, bound to client and redirect.
    let code = param(
        picked().await.unwrap().headers()["location"]
            .to_str()
            .unwrap(),
        "code",
    )
    .unwrap();
    let redirect = param(&authorize, "redirect_uri").unwrap();
    let token = |code: &str, verifier: &str, client: &str, redirect: &str| {
        http.post(format!("{issuer}/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("client_id", client),
                ("redirect_uri", redirect),
            ])
            .send()
    };
    let wrong = token(&code, &"v".repeat(43), "changeflow-ui", &redirect)
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // A refused exchange used the code up.
    let again = token(&code, &"v".repeat(43), "changeflow-ui", &redirect)
        .await
        .unwrap();
    let body: serde_json::Value = again.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
    let code = param(
        picked().await.unwrap().headers()["location"]
            .to_str()
            .unwrap(),
        "code",
    )
    .unwrap();
    let other_redirect = token(
        &code,
        &"v".repeat(43),
        "changeflow-ui",
        "http://127.0.0.1:1/cb",
    )
    .await
    .unwrap();
    let body: serde_json::Value = other_redirect.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri"),
        "{body}"
    );

    // Pages need a session; the security headers are on every page.
    let page = http.get(format!("{ui}/")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert!(
        page.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let events = http.get(format!("{ui}/events")).send().await.unwrap();
    assert_eq!(events.status(), 303, "a stream needs a session too");
}
