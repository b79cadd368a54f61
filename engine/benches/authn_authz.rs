//! Authentication and authorization per call, in process: verifying a development ES256
//! access token with cached keys, then one policy decision on the shipped policy (a read of
//! Catalyst Center devices by a network engineer, the commonest call). Criterion measures each,
//! a token's first use (its signature checked) and both together; a last pass times 20,000
//! calls of a client reusing its token one by one and prints p50/p99, which `make bench` reads
//! (`authn+authz p50 ... p99 ...`).

use changeflow_devstack::dev_issuer::{DevIssuer, DevTokenRequest};
use changeflow_engine::identity::{TokenVerifier, VerifiedIdentity, VerifierConfig};
use changeflow_engine::policy::{PolicyEngine, PolicyIdentity, PolicyInput, PolicyTool};
use criterion::{Criterion, criterion_group};
use serde_json::json;
use std::time::{Duration, Instant};

const ISSUER: &str = "http://127.0.0.1:1/bench-issuer";
const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    issuer: DevIssuer,
    verifier: TokenVerifier,
    token: String,
    policy: PolicyEngine,
}

fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("changeflow-bench-{}", std::process::id()));
    let issuer = DevIssuer::load_or_create(&dir, ISSUER).expect("development issuer");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let verifier = runtime.block_on(async {
        TokenVerifier::with_keys(
            VerifierConfig::new(ISSUER, AUDIENCE),
            &json!({"keys": [issuer.jwk()]}),
            &format!("{ISSUER}/jwks"),
            reqwest::Client::new(),
        )
        .expect("verifier")
    });
    let token = mint(&issuer);
    let policy = PolicyEngine::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../policy"))
        .expect("the shipped policy");
    let _ = std::fs::remove_dir_all(&dir);
    Fixture {
        runtime,
        issuer,
        verifier,
        token,
        policy,
    }
}

fn mint(issuer: &DevIssuer) -> String {
    issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: AUDIENCE.into(),
            ttl: Duration::from_secs(3600),
            mfa: None,
        })
        .expect("token")
}

fn input(identity: &VerifiedIdentity) -> PolicyInput {
    PolicyInput {
        identity: PolicyIdentity::from(identity),
        resource: "catalyst-center".into(),
        action: "read".into(),
        tool: PolicyTool {
            name: "list_devices".into(),
            arguments: json!({"hostname": "sj-access-01"}),
        },
        context: json!({"time": 1_795_000_000u64, "client": identity.client_id}),
        change: None,
        devices: None,
        source: None,
        pull_request: None,
    }
}

/// One call's authentication and authorization; panics unless allowed.
fn authorize(f: &Fixture) {
    let identity = f
        .runtime
        .block_on(f.verifier.verify(&f.token))
        .expect("valid token");
    let decision = f.policy.decide(&input(&identity));
    assert!(decision.allow, "{}", decision.reason);
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let identity = f.runtime.block_on(f.verifier.verify(&f.token)).unwrap();
    let decided = input(&identity);
    c.bench_function("jwt verification (cached keys)", |b| {
        b.iter(|| f.runtime.block_on(f.verifier.verify(&f.token)).unwrap())
    });
    // A token's first use verifies its signature (later uses find it verified).
    c.bench_function("jwt verification (first use of a token)", |b| {
        b.iter_batched(
            || mint(&f.issuer),
            |token| f.runtime.block_on(f.verifier.verify(&token)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("policy decision", |b| b.iter(|| f.policy.decide(&decided)));
    c.bench_function("authn+authz", |b| b.iter(|| authorize(&f)));
}

criterion_group!(group, benches);

/// p50/p99 of `calls` timed one by one (criterion reports means and medians, not tails).
fn percentiles(calls: usize) {
    let f = fixture();
    for _ in 0..1000 {
        authorize(&f);
    }
    let mut took: Vec<Duration> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            authorize(&f);
            start.elapsed()
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    println!(
        "authn+authz p50 {:.1} us p99 {:.1} us ({calls} calls)",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    percentiles(20_000);
}
