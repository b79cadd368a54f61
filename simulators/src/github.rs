//! A GitHub REST v3 simulator following `../shared/contracts/github.md`: repositories with real
//! git semantics in memory (blobs, trees and commits with git's own SHA-1s, branches as refs,
//! fast-forward rules, three-way merges), contents, branches and refs, commits, pull requests
//! with reviews and merges (the default branch protected: a merge needs an approving review by
//! someone other than the author), pagination with `Link`, rate-limit headers, 403/429, and
//! GitHub's error envelopes, served under both `/` and `/api/v3`. PyGithub works against it
//! unchanged.

use crate::Stats;
use crate::faults::{FaultTarget, Faults, InjectedFault};
use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The scopes every token has (`X-OAuth-Scopes`).
const SCOPES: &str = "repo, read:org";
/// Requests per hour and user, as on github.com.
pub const RATE_LIMIT: u64 = 5000;

/// A GitHub user of the simulator.
#[derive(Debug, Clone)]
pub struct User {
    pub login: String,
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// The simulator: users and their tokens, repositories, the rate-limit window.
pub struct GitHub {
    hub: Mutex<Hub>,
    /// token -> login
    tokens: BTreeMap<String, String>,
    users: Vec<User>,
    faults: Faults,
    stats: Arc<Stats>,
    injected: AtomicU64,
}

struct Hub {
    repos: BTreeMap<String, Repo>,
    next_id: u64,
    /// Requests left this window, per login, and when the window resets (epoch seconds).
    remaining: HashMap<String, u64>,
    limit: u64,
    reset_at: u64,
    window_secs: u64,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    description: String,
    default_branch: String,
    blobs: HashMap<String, Vec<u8>>,
    commits: HashMap<String, Commit>,
    /// `heads/<branch>` or `tags/<tag>` -> commit sha
    refs: BTreeMap<String, String>,
    pulls: Vec<Pull>,
    created_at: String,
    pushed_at: String,
}

#[derive(Clone)]
struct Commit {
    sha: String,
    tree: String,
    /// path -> blob sha
    files: BTreeMap<String, String>,
    parents: Vec<String>,
    message: String,
    author: Person,
    committer: Person,
    /// The GitHub user who made it, when known.
    login: Option<String>,
    /// Creation order, for "newest first" among commits made in the same second.
    sequence: u64,
}

#[derive(Clone)]
struct Person {
    name: String,
    email: String,
    /// epoch seconds
    at: u64,
}

struct Pull {
    number: u64,
    id: u64,
    title: String,
    body: String,
    head: String,
    base: String,
    user: String,
    open: bool,
    draft: bool,
    created_at: String,
    updated_at: String,
    closed_at: Option<String>,
    merged_at: Option<String>,
    merge_commit_sha: Option<String>,
    merged_by: Option<String>,
    /// The head and base shas when it was closed or merged (the branches move on).
    head_sha: Option<String>,
    base_sha: Option<String>,
    reviews: Vec<Review>,
}

struct Review {
    id: u64,
    user: String,
    body: String,
    state: &'static str,
    commit_id: String,
    submitted_at: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// GitHub's timestamps: `2026-11-27T15:00:00Z`.
fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// git's object id: `sha1("<kind> <len>\0" + body)`.
fn object_id(kind: &str, body: &[u8]) -> String {
    let mut object = format!("{kind} {}\0", body.len()).into_bytes();
    object.extend_from_slice(body);
    sha1_hex(&object)
}

/// The blob SHA-1 git gives `bytes`.
pub fn blob_sha(bytes: &[u8]) -> String {
    object_id("blob", bytes)
}

/// The tree SHA-1 git gives these files (nested trees for directories).
fn tree_sha(files: &BTreeMap<String, String>) -> String {
    fn tree(entries: &BTreeMap<&str, String>) -> String {
        // name -> (mode, sha); directories sort as "name/".
        let mut children: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
        let mut items: Vec<(String, &str, String)> = Vec::new();
        for (path, sha) in entries {
            match path.split_once('/') {
                Some((dir, rest)) => {
                    children.entry(dir).or_default().insert(rest, sha.clone());
                }
                None => items.push((path.to_string(), "100644", sha.clone())),
            }
        }
        for (dir, inner) in &children {
            items.push((format!("{dir}/"), "40000", tree(inner)));
        }
        items.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut body = Vec::new();
        for (name, mode, sha) in items {
            body.extend_from_slice(format!("{mode} {}\0", name.trim_end_matches('/')).as_bytes());
            body.extend_from_slice(&hex::decode(sha).unwrap_or_default());
        }
        object_id("tree", &body)
    }
    tree(&files.iter().map(|(p, s)| (p.as_str(), s.clone())).collect())
}

impl Commit {
    fn new(
        files: BTreeMap<String, String>,
        parents: Vec<String>,
        message: &str,
        author: Person,
        committer: Person,
        login: Option<String>,
    ) -> Commit {
        let tree = tree_sha(&files);
        let mut body = format!("tree {tree}\n");
        for parent in &parents {
            body.push_str(&format!("parent {parent}\n"));
        }
        for (role, p) in [("author", &author), ("committer", &committer)] {
            body.push_str(&format!("{role} {} <{}> {} +0000\n", p.name, p.email, p.at));
        }
        body.push('\n');
        body.push_str(message);
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        Commit {
            sequence: SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sha: object_id("commit", body.as_bytes()),
            tree,
            files,
            parents,
            message: message.to_string(),
            author,
            committer,
            login,
        }
    }
}

/// An error in GitHub's envelope.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string()})),
    )
        .into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

fn validation(errors: Value) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Validation Failed", "errors": errors, "documentation_url": "https://docs.github.com/rest", "status": "422"})),
    )
        .into_response()
}

fn unprocessable(reason: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": "Unprocessable Entity", "errors": [reason], "documentation_url": "https://docs.github.com/rest", "status": "422"})),
    )
        .into_response()
}

type Reply = Result<Response, Response>;

/// Where a request came in: `{scheme}://{Host}{prefix}` (the prefix `""` or `/api/v3`), its
/// path and query, for absolute links.
#[derive(Clone)]
struct Base {
    base: String,
    path: String,
    query: Vec<(String, String)>,
}

impl Base {
    fn of(tls: bool, headers: &HeaderMap, uri: &axum::http::Uri) -> Base {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if tls { "https" } else { "http" };
        let prefix = if uri.path().starts_with("/api/v3/") || uri.path() == "/api/v3" {
            "/api/v3"
        } else {
            ""
        };
        Base {
            base: format!("{scheme}://{host}{prefix}"),
            path: format!("{scheme}://{host}{}", uri.path()),
            query: uri
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn repo(&self, full: &str) -> String {
        format!("{}/repos/{full}", self.base)
    }

    /// One page of `items` with GitHub's `Link` header (every query parameter repeated).
    fn page(&self, items: Vec<Value>) -> Response {
        let per_page = self
            .param("per_page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100);
        let page = self
            .param("page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let last = items.len().div_ceil(per_page).max(1);
        let shown: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut response = Json(shown).into_response();
        let link = |n: usize| {
            let mut query: Vec<(String, String)> = self
                .query
                .iter()
                .filter(|(k, _)| k != "page")
                .cloned()
                .collect();
            query.push(("page".into(), n.to_string()));
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            format!("<{}?{encoded}>", self.path)
        };
        let mut links = Vec::new();
        if page < last {
            links.push(format!("{}; rel=\"next\"", link(page + 1)));
            links.push(format!("{}; rel=\"last\"", link(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", link(1)));
            links.push(format!("{}; rel=\"prev\"", link(page - 1)));
        }
        if !links.is_empty()
            && let Ok(value) = HeaderValue::from_str(&links.join(", "))
        {
            response.headers_mut().insert(header::LINK, value);
        }
        response
    }
}

impl GitHub {
    /// Users, with a token each, and the seeded repositories.
    pub fn new(users: &[(&str, &str)], faults: Faults, stats: Arc<Stats>) -> Arc<Self> {
        let users: Vec<User> = users
            .iter()
            .enumerate()
            .map(|(i, (login, name))| User {
                login: login.to_string(),
                id: 1000 + i as u64,
                name: name.to_string(),
                email: format!("{login}@example.com"),
            })
            .collect();
        let tokens = users
            .iter()
            .map(|u| (token_of(&u.login), u.login.clone()))
            .collect();
        let github = GitHub {
            hub: Mutex::new(Hub {
                repos: BTreeMap::new(),
                next_id: 1,
                remaining: HashMap::new(),
                limit: RATE_LIMIT,
                reset_at: now() + 3600,
                window_secs: 3600,
            }),
            tokens,
            users,
            faults,
            stats,
            injected: AtomicU64::new(0),
        };
        crate::seed::github(&github);
        Arc::new(github)
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token of a seeded user.
    pub fn token(&self, login: &str) -> Option<String> {
        self.tokens
            .iter()
            .find(|(_, l)| *l == login)
            .map(|(t, _)| t.clone())
    }

    /// Every user's development token, by login.
    pub fn tokens(&self) -> BTreeMap<String, String> {
        self.tokens
            .iter()
            .map(|(token, login)| (login.clone(), token.clone()))
            .collect()
    }

    /// Sets the rate limit per user and its window (tests).
    pub fn set_rate_limit(&self, limit: u64, window_secs: u64) {
        let mut hub = self.hub();
        hub.limit = limit;
        hub.window_secs = window_secs;
        hub.reset_at = now() + window_secs;
        hub.remaining.clear();
    }

    fn user(&self, login: &str) -> Option<&User> {
        self.users.iter().find(|u| u.login == login)
    }

    fn user_json(&self, b: &Base, login: &str) -> Value {
        let (id, name, email) = self
            .user(login)
            .map(|u| (u.id, u.name.clone(), u.email.clone()))
            .unwrap_or((0, login.to_string(), String::new()));
        json!({
            "login": login, "id": id, "node_id": format!("U_{id}"), "type": "User",
            "site_admin": false, "name": name, "email": email,
            "avatar_url": format!("{}/avatars/{login}", b.base),
            "html_url": format!("{}/{login}", b.base),
            "url": format!("{}/users/{login}", b.base),
        })
    }

    /// Creates a repository with the given files on its default branch, committed by `login`.
    pub fn create_repo(
        &self,
        full_name: &str,
        description: &str,
        login: &str,
        files: &[(&str, &[u8])],
    ) {
        let (owner, name) = full_name.split_once('/').unwrap_or((full_name, full_name));
        let person = self.person(login);
        let mut blobs = HashMap::new();
        let mut tree = BTreeMap::new();
        for (path, bytes) in files {
            let sha = blob_sha(bytes);
            blobs.insert(sha.clone(), bytes.to_vec());
            tree.insert(path.to_string(), sha);
        }
        let commit = Commit::new(
            tree,
            Vec::new(),
            "Initial commit",
            person.clone(),
            person,
            Some(login.to_string()),
        );
        let mut hub = self.hub();
        let id = hub.next_id;
        hub.next_id += 1;
        let created = rfc3339(now());
        hub.repos.insert(
            full_name.to_string(),
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
                description: description.to_string(),
                default_branch: "main".into(),
                blobs,
                refs: BTreeMap::from([("heads/main".to_string(), commit.sha.clone())]),
                commits: HashMap::from([(commit.sha.clone(), commit)]),
                pulls: Vec::new(),
                created_at: created.clone(),
                pushed_at: created,
            },
        );
    }

    fn person(&self, login: &str) -> Person {
        let user = self.user(login);
        Person {
            name: user.map_or_else(|| login.to_string(), |u| u.name.clone()),
            email: user.map_or_else(|| format!("{login}@example.com"), |u| u.email.clone()),
            at: now(),
        }
    }
}

/// A seeded user's development token.
pub fn token_of(login: &str) -> String {
    format!(
        "ghp_dev{}",
        &sha1_hex(format!("changeflow:{login}").as_bytes())[..30]
    )
}

impl Repo {
    fn full(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// A branch, tag, sha (or unique prefix), `heads/x` or `refs/heads/x`, to a commit sha.
    fn resolve(&self, reference: &str) -> Option<String> {
        let short = reference.strip_prefix("refs/").unwrap_or(reference);
        for candidate in [
            short.to_string(),
            format!("heads/{short}"),
            format!("tags/{short}"),
        ] {
            if let Some(sha) = self.refs.get(&candidate) {
                return Some(sha.clone());
            }
        }
        if reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            let matches: Vec<&String> = self
                .commits
                .keys()
                .filter(|sha| sha.starts_with(&reference.to_lowercase()))
                .collect();
            if matches.len() == 1 {
                return Some(matches[0].clone());
            }
        }
        None
    }

    fn branch(&self, name: &str) -> Option<&String> {
        self.refs.get(&format!("heads/{name}"))
    }

    /// Every commit reachable from `tip`, newest first.
    fn history(&self, tip: &str) -> Vec<&Commit> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![tip.to_string()];
        let mut found = Vec::new();
        while let Some(sha) = stack.pop() {
            if !seen.insert(sha.clone()) {
                continue;
            }
            if let Some(commit) = self.commits.get(&sha) {
                found.push(commit);
                stack.extend(commit.parents.iter().cloned());
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse((c.committer.at, c.sequence)));
        found
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        self.history(of).iter().any(|c| c.sha == ancestor)
    }

    /// The newest common ancestor of two commits.
    fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let of_b: BTreeSet<&str> = self.history(b).iter().map(|c| c.sha.as_str()).collect();
        self.history(a)
            .into_iter()
            .find(|c| of_b.contains(c.sha.as_str()))
            .map(|c| c.sha.clone())
    }

    /// `head`'s changes merged onto `base` (three-way, by file); `Err` names a conflict.
    fn merge_files(&self, base: &str, head: &str) -> Result<BTreeMap<String, String>, String> {
        let ancestor = self
            .merge_base(base, head)
            .and_then(|sha| self.commits.get(&sha))
            .map(|c| c.files.clone())
            .unwrap_or_default();
        let ours = &self.commits[base].files;
        let theirs = &self.commits[head].files;
        let mut merged = ours.clone();
        let paths: BTreeSet<&String> = ancestor.keys().chain(theirs.keys()).collect();
        for path in paths {
            let (a, o, t) = (ancestor.get(path), ours.get(path), theirs.get(path));
            if t == a || t == o {
                continue;
            }
            if o != a {
                return Err(path.clone());
            }
            match t {
                Some(sha) => merged.insert(path.clone(), sha.clone()),
                None => merged.remove(path),
            };
        }
        Ok(merged)
    }

    fn git_commit_json(&self, b: &Base, c: &Commit) -> Value {
        let base = b.repo(&self.full());
        let person = |p: &Person| json!({"name": p.name, "email": p.email, "date": rfc3339(p.at)});
        json!({
            "sha": c.sha, "node_id": format!("C_{}", &c.sha[..12]),
            "url": format!("{base}/git/commits/{}", c.sha),
            "html_url": format!("{}/{}/commit/{}", b.base, self.full(), c.sha),
            "message": c.message, "author": person(&c.author), "committer": person(&c.committer),
            "tree": {"sha": c.tree, "url": format!("{base}/git/trees/{}", c.tree)},
            "parents": c.parents.iter().map(|p| json!({"sha": p, "url": format!("{base}/git/commits/{p}"), "html_url": format!("{}/{}/commit/{p}", b.base, self.full())})).collect::<Vec<_>>(),
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null},
        })
    }

    fn commit_json(&self, hub: &GitHub, b: &Base, c: &Commit) -> Value {
        let base = b.repo(&self.full());
        let mut git = self.git_commit_json(b, c);
        if let Some(map) = git.as_object_mut() {
            map.remove("sha");
            map.remove("node_id");
            map.remove("html_url");
            map.remove("parents");
            map.insert("comment_count".into(), json!(0));
        }
        let user = c.login.as_deref().map(|l| hub.user_json(b, l));
        json!({
            "sha": c.sha, "node_id": format!("C_{}", &c.sha[..12]),
            "url": format!("{base}/commits/{}", c.sha),
            "html_url": format!("{}/{}/commit/{}", b.base, self.full(), c.sha),
            "comments_url": format!("{base}/commits/{}/comments", c.sha),
            "commit": git, "author": user, "committer": user,
            "parents": c.parents.iter().map(|p| json!({"sha": p, "url": format!("{base}/commits/{p}"), "html_url": format!("{}/{}/commit/{p}", b.base, self.full())})).collect::<Vec<_>>(),
        })
    }

    /// The files that differ between two file maps, as a commit or PR lists them.
    fn diff(
        &self,
        b: &Base,
        at: &str,
        from: &BTreeMap<String, String>,
        to: &BTreeMap<String, String>,
    ) -> Vec<Value> {
        let base = b.repo(&self.full());
        let paths: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
        let lines = |sha: Option<&String>| -> Vec<String> {
            sha.and_then(|s| self.blobs.get(s))
                .map(|bytes| {
                    String::from_utf8_lossy(bytes)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        paths
            .into_iter()
            .filter(|p| from.get(*p) != to.get(*p))
            .map(|path| {
                let (old, new) = (from.get(path), to.get(path));
                let status = match (old, new) {
                    (None, _) => "added",
                    (_, None) => "removed",
                    _ => "modified",
                };
                let (old_lines, new_lines) = (lines(old), lines(new));
                let common = lcs(&old_lines, &new_lines);
                let (additions, deletions) = (new_lines.len() - common, old_lines.len() - common);
                let mut patch = format!("@@ -1,{} +1,{} @@", old_lines.len(), new_lines.len());
                for line in &old_lines {
                    patch.push_str(&format!("\n-{line}"));
                }
                for line in &new_lines {
                    patch.push_str(&format!("\n+{line}"));
                }
                let sha = new.or(old).cloned().unwrap_or_default();
                json!({
                    "sha": sha, "filename": path, "status": status,
                    "additions": additions, "deletions": deletions, "changes": additions + deletions,
                    "blob_url": format!("{}/{}/blob/{at}/{path}", b.base, self.full()),
                    "raw_url": format!("{}/{}/raw/{at}/{path}", b.base, self.full()),
                    "contents_url": format!("{base}/contents/{path}?ref={at}"),
                    "patch": patch,
                })
            })
            .collect()
    }

    fn content_json(
        &self,
        b: &Base,
        path: &str,
        sha: &str,
        reference: &str,
        with_content: bool,
    ) -> Value {
        let base = b.repo(&self.full());
        let bytes = self.blobs.get(sha).cloned().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or(path);
        let url = format!("{base}/contents/{path}?ref={reference}");
        let git_url = format!("{base}/git/blobs/{sha}");
        let html_url = format!("{}/{}/blob/{reference}/{path}", b.base, self.full());
        let mut value = json!({
            "type": "file", "size": bytes.len(), "name": name, "path": path, "sha": sha,
            "url": url, "git_url": git_url, "html_url": html_url,
            "download_url": format!("{}/{}/raw/{reference}/{path}", b.base, self.full()),
            "_links": {"self": url, "git": git_url, "html": html_url},
        });
        if with_content {
            value["encoding"] = json!("base64");
            value["content"] = json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
        value
    }

    fn repo_json(&self, hub: &GitHub, b: &Base) -> Value {
        let full = self.full();
        json!({
            "id": self.id, "node_id": format!("R_{}", self.id), "name": self.name, "full_name": full,
            "owner": hub.user_json(b, &self.owner), "private": true, "visibility": "private",
            "fork": false, "archived": false, "description": self.description,
            "default_branch": self.default_branch,
            "html_url": format!("{}/{full}", b.base),
            "clone_url": format!("{}/{full}.git", b.base),
            "permissions": {"admin": true, "push": true, "pull": true},
            "created_at": self.created_at, "updated_at": self.pushed_at, "pushed_at": self.pushed_at,
            "url": b.repo(&full),
        })
    }

    fn ref_json(&self, b: &Base, name: &str, sha: &str) -> Value {
        let base = b.repo(&self.full());
        json!({
            "ref": format!("refs/{name}"), "node_id": format!("REF_{}", sha1_hex(name.as_bytes()).get(..12).unwrap_or_default()),
            "url": format!("{base}/git/refs/{name}"),
            "object": {"type": "commit", "sha": sha, "url": format!("{base}/git/commits/{sha}")},
        })
    }

    fn pull_head_sha(&self, pull: &Pull) -> Option<String> {
        pull.head_sha
            .clone()
            .or_else(|| self.branch(&pull.head).cloned())
    }

    fn pull_base_sha(&self, pull: &Pull) -> Option<String> {
        pull.base_sha
            .clone()
            .or_else(|| self.branch(&pull.base).cloned())
    }

    /// Whether `pull` can merge now: `Ok(())`, or the 405 message.
    fn mergeability(&self, pull: &Pull) -> (Option<bool>, &'static str, Result<(), &'static str>) {
        if pull.merged_at.is_some() || !pull.open {
            return (Some(false), "unknown", Err("Pull Request is not mergeable"));
        }
        let (Some(head), Some(base)) = (self.pull_head_sha(pull), self.branch(&pull.base)) else {
            return (Some(false), "unknown", Err("Pull Request is not mergeable"));
        };
        if self.merge_files(base, &head).is_err() {
            return (Some(false), "dirty", Err("Pull Request is not mergeable"));
        }
        if pull.draft {
            return (Some(true), "draft", Err("Pull Request is still a draft"));
        }
        if pull.base == self.default_branch && !approved(pull, &head) {
            return (
                Some(true),
                "blocked",
                Err("At least 1 approving review is required by reviewers with write access."),
            );
        }
        (Some(true), "clean", Ok(()))
    }

    fn pull_json(&self, hub: &GitHub, b: &Base, pull: &Pull, full: bool) -> Value {
        let base_url = b.repo(&self.full());
        let url = format!("{base_url}/pulls/{}", pull.number);
        let html = format!("{}/{}/pull/{}", b.base, self.full(), pull.number);
        let head_sha = self.pull_head_sha(pull).unwrap_or_default();
        let base_sha = self.pull_base_sha(pull).unwrap_or_default();
        let side = |branch: &str, sha: &str| {
            json!({"label": format!("{}:{branch}", self.owner), "ref": branch, "sha": sha,
                   "user": hub.user_json(b, &self.owner), "repo": self.repo_json(hub, b)})
        };
        let mut value = json!({
            "url": url, "id": pull.id, "node_id": format!("PR_{}", pull.id), "number": pull.number,
            "state": if pull.open { "open" } else { "closed" }, "locked": false,
            "title": pull.title, "body": pull.body, "user": hub.user_json(b, &pull.user),
            "draft": pull.draft, "author_association": "MEMBER",
            "labels": [], "assignees": [], "requested_reviewers": [],
            "created_at": pull.created_at, "updated_at": pull.updated_at,
            "closed_at": pull.closed_at, "merged_at": pull.merged_at,
            "html_url": html, "diff_url": format!("{html}.diff"), "patch_url": format!("{html}.patch"),
            "issue_url": format!("{base_url}/issues/{}", pull.number),
            "commits_url": format!("{url}/commits"), "review_comments_url": format!("{url}/comments"),
            "comments_url": format!("{base_url}/issues/{}/comments", pull.number),
            "statuses_url": format!("{base_url}/statuses/{head_sha}"),
            "head": side(&pull.head, &head_sha), "base": side(&pull.base, &base_sha),
            "merge_commit_sha": pull.merge_commit_sha,
        });
        if full {
            let (mergeable, state, _) = self.mergeability(pull);
            let files = self.pull_files(b, pull);
            let additions: u64 = files.iter().filter_map(|f| f["additions"].as_u64()).sum();
            let deletions: u64 = files.iter().filter_map(|f| f["deletions"].as_u64()).sum();
            // The commits on head since the merge base (which head reaches).
            let commits = self
                .merge_base(&base_sha, &head_sha)
                .map(|mb| self.history(&head_sha).len() - self.history(&mb).len())
                .unwrap_or(0);
            let extra = json!({
                "merged": pull.merged_at.is_some(), "mergeable": mergeable, "mergeable_state": state,
                "merged_by": pull.merged_by.as_deref().map(|l| hub.user_json(b, l)),
                "comments": 0, "review_comments": 0, "commits": commits,
                "additions": additions, "deletions": deletions, "changed_files": files.len(),
                "maintainer_can_modify": false, "rebaseable": true,
            });
            if let (Some(map), Some(more)) = (value.as_object_mut(), extra.as_object()) {
                map.extend(more.clone());
            }
        }
        value
    }

    /// The files a pull request changes (merge base to head).
    fn pull_files(&self, b: &Base, pull: &Pull) -> Vec<Value> {
        let Some(head) = self.pull_head_sha(pull) else {
            return Vec::new();
        };
        let base = self.pull_base_sha(pull).unwrap_or_default();
        let from = self
            .merge_base(&base, &head)
            .and_then(|mb| self.commits.get(&mb))
            .map(|c| c.files.clone())
            .unwrap_or_default();
        let to = self
            .commits
            .get(&head)
            .map(|c| c.files.clone())
            .unwrap_or_default();
        self.diff(b, &head, &from, &to)
    }

    fn review_json(&self, hub: &GitHub, b: &Base, pull: &Pull, r: &Review) -> Value {
        let url = format!("{}/pulls/{}", b.repo(&self.full()), pull.number);
        let html = format!(
            "{}/{}/pull/{}#pullrequestreview-{}",
            b.base,
            self.full(),
            pull.number,
            r.id
        );
        let mut value = json!({
            "id": r.id, "node_id": format!("PRR_{}", r.id), "user": hub.user_json(b, &r.user),
            "body": r.body, "state": r.state, "html_url": html, "pull_request_url": url,
            "commit_id": r.commit_id, "author_association": "MEMBER",
            "_links": {"html": {"href": html}, "pull_request": {"href": url}},
        });
        if let Some(at) = &r.submitted_at {
            value["submitted_at"] = json!(at);
        }
        value
    }
}

/// Approved on `head` by someone other than the author (the last review of each reviewer).
fn approved(pull: &Pull, head: &str) -> bool {
    let mut last: BTreeMap<&str, &Review> = BTreeMap::new();
    for review in pull
        .reviews
        .iter()
        .filter(|r| r.state != "PENDING" && r.state != "COMMENTED")
    {
        last.insert(&review.user, review);
    }
    last.values()
        .any(|r| r.state == "APPROVED" && r.user != pull.user && r.commit_id == head)
}

/// The length of the longest common subsequence of two line lists.
fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut previous = 0;
        for (j, y) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if x == y {
                previous + 1
            } else {
                row[j + 1].max(row[j])
            };
            previous = current;
        }
    }
    row[b.len()]
}

impl FaultTarget for GitHub {
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn fault_counters(&self) -> (&AtomicU64, &AtomicU64) {
        (&self.stats.github_requests, &self.injected)
    }
    fn fault_response(fault: InjectedFault) -> Response {
        match fault {
            InjectedFault::RateLimited { retry_after_secs } => {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                );
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                response
            }
            InjectedFault::ServerError => error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error"),
        }
    }
}

/// Who a request is: the token's user, or 401.
#[derive(Clone)]
struct Caller(String);

/// Authentication (`token`, `Bearer` or `Basic` with the token as password), the rate limit
/// and its headers on every answer.
async fn authenticate(State(gh): State<Arc<GitHub>>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let login = match presented.as_deref().and_then(|v| v.split_once(' ')) {
        None => None,
        Some((scheme, value)) => {
            let token = match scheme.to_ascii_lowercase().as_str() {
                "token" | "bearer" => Some(value.trim().to_string()),
                "basic" => base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_string())),
                _ => None,
            };
            match token.and_then(|t| gh.tokens.get(&t).cloned()) {
                Some(login) => Some(login),
                None => {
                    return with_limits(
                        &gh,
                        None,
                        error(StatusCode::UNAUTHORIZED, "Bad credentials"),
                    );
                }
            }
        }
    };
    let Some(login) = login else {
        return with_limits(
            &gh,
            None,
            error(StatusCode::UNAUTHORIZED, "Requires authentication"),
        );
    };
    {
        let mut hub = gh.hub();
        if now() >= hub.reset_at {
            hub.reset_at = now() + hub.window_secs;
            hub.remaining.clear();
        }
        let limit = hub.limit;
        let remaining = hub.remaining.entry(login.clone()).or_insert(limit);
        if *remaining == 0 {
            let id = gh.user(&login).map_or(0, |u| u.id);
            drop(hub);
            let response = error(
                StatusCode::FORBIDDEN,
                &format!("API rate limit exceeded for user ID {id}."),
            );
            return with_limits(&gh, Some(&login), response);
        }
        *remaining -= 1;
    }
    request.extensions_mut().insert(Caller(login.clone()));
    let response = next.run(request).await;
    with_limits(&gh, Some(&login), response)
}

fn with_limits(gh: &GitHub, login: Option<&str>, mut response: Response) -> Response {
    let hub = gh.hub();
    let remaining = login
        .and_then(|l| hub.remaining.get(l).copied())
        .unwrap_or(hub.limit);
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", hub.limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", hub.reset_at.to_string()),
        (
            "x-ratelimit-used",
            hub.limit.saturating_sub(remaining).to_string(),
        ),
        ("x-ratelimit-resource", "core".to_string()),
        ("x-oauth-scopes", SCOPES.to_string()),
        ("x-github-api-version-selected", "2022-11-28".to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::HeaderName::from_static(name), value);
        }
    }
    response
}

/// The routes, under `/` and `/api/v3`.
pub fn router(gh: Arc<GitHub>) -> Router {
    let api = Router::new()
        .route("/", get(root).head(root))
        .route("/user", get(current_user))
        .route("/users/{login}", get(user))
        .route("/rate_limit", get(rate_limit))
        .route("/repos/{o}/{r}", get(repository))
        .route("/repos/{o}/{r}/contents", get(contents_root))
        .route("/repos/{o}/{r}/contents/", get(contents_root))
        .route(
            "/repos/{o}/{r}/contents/{*path}",
            get(contents).put(write_file).delete(delete_file),
        )
        .route("/repos/{o}/{r}/branches", get(branches))
        .route("/repos/{o}/{r}/branches/{*branch}", get(branch))
        .route("/repos/{o}/{r}/git/ref/{*reference}", get(git_ref))
        .route("/repos/{o}/{r}/git/refs", post(create_ref))
        .route(
            "/repos/{o}/{r}/git/refs/{*reference}",
            get(git_ref).patch(update_ref).delete(delete_ref),
        )
        .route("/repos/{o}/{r}/git/commits/{sha}", get(git_commit))
        .route("/repos/{o}/{r}/git/blobs/{sha}", get(git_blob))
        .route("/repos/{o}/{r}/commits", get(commits))
        .route("/repos/{o}/{r}/commits/{reference}", get(commit))
        .route("/repos/{o}/{r}/pulls", get(pulls).post(create_pull))
        .route("/repos/{o}/{r}/pulls/{n}", get(pull).patch(update_pull))
        .route("/repos/{o}/{r}/pulls/{n}/merge", get(is_merged).put(merge))
        .route("/repos/{o}/{r}/pulls/{n}/files", get(pull_files))
        .route(
            "/repos/{o}/{r}/pulls/{n}/reviews",
            get(reviews).post(review),
        )
        .layer(axum::middleware::from_fn_with_state(
            gh.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            gh.clone(),
            crate::faults::inject::<GitHub>,
        ))
        .with_state(gh.clone());
    // Test hook: `PUT /_simulator/github/rate_limit {"limit": N, "window_secs": S}`.
    let admin = Router::new()
        .route(
            "/_simulator/github/rate_limit",
            axum::routing::put(
                |State(gh): State<Arc<GitHub>>, Json(v): Json<Value>| async move {
                    gh.set_rate_limit(
                        v["limit"].as_u64().unwrap_or(RATE_LIMIT),
                        v["window_secs"].as_u64().unwrap_or(3600),
                    );
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(gh);
    Router::new()
        .nest("/api/v3", api.clone())
        .merge(api)
        .merge(admin)
}

/// What every handler gets: the simulator, the caller, where the request came in.
struct Ctx {
    gh: Arc<GitHub>,
    caller: String,
    b: Base,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx
where
    Arc<GitHub>: axum::extract::FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        use axum::extract::FromRef as _;
        let gh = Arc::<GitHub>::from_ref(state);
        let caller = parts
            .extensions
            .get::<Caller>()
            .map(|c| c.0.clone())
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
        let tls = parts
            .extensions
            .get::<crate::Tls>()
            .map(|t| t.0)
            .unwrap_or(false);
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map(|o| o.0.clone())
            .unwrap_or_else(|| parts.uri.clone());
        Ok(Ctx {
            gh,
            caller,
            b: Base::of(tls, &parts.headers, &uri),
        })
    }
}

impl Ctx {
    /// Runs `f` on the repository `o/r`, or answers 404.
    fn with_repo<T>(
        &self,
        o: &str,
        r: &str,
        f: impl FnOnce(&GitHub, &mut Repo) -> T,
    ) -> Result<T, Response> {
        let mut hub = self.gh.hub();
        let repo = hub
            .repos
            .get_mut(&format!("{o}/{r}"))
            .ok_or_else(not_found)?;
        Ok(f(&self.gh, repo))
    }
}

async fn root() -> Response {
    Json(json!({"current_user_url": "/user"})).into_response()
}

async fn current_user(ctx: Ctx) -> Response {
    Json(ctx.gh.user_json(&ctx.b, &ctx.caller)).into_response()
}

async fn user(ctx: Ctx, Path(login): Path<String>) -> Response {
    match ctx.gh.user(&login) {
        Some(_) => Json(ctx.gh.user_json(&ctx.b, &login)).into_response(),
        None => not_found(),
    }
}

async fn rate_limit(ctx: Ctx) -> Response {
    let hub = ctx.gh.hub();
    let remaining = hub.remaining.get(&ctx.caller).copied().unwrap_or(hub.limit);
    let core = json!({"limit": hub.limit, "remaining": remaining, "reset": hub.reset_at, "used": hub.limit - remaining});
    Json(json!({"resources": {"core": core}, "rate": core})).into_response()
}

async fn repository(ctx: Ctx, Path((o, r)): Path<(String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        Json(repo.repo_json(gh, &ctx.b)).into_response()
    })
}

async fn contents_root(ctx: Ctx, Path((o, r)): Path<(String, String)>) -> Reply {
    read_contents(&ctx, &o, &r, "")
}

async fn contents(ctx: Ctx, Path((o, r, path)): Path<(String, String, String)>) -> Reply {
    read_contents(&ctx, &o, &r, path.trim_end_matches('/'))
}

fn read_contents(ctx: &Ctx, o: &str, r: &str, path: &str) -> Reply {
    ctx.with_repo(o, r, |_, repo| {
        let reference = ctx
            .b
            .param("ref")
            .map(str::to_string)
            .unwrap_or_else(|| repo.default_branch.clone());
        let Some(sha) = repo.resolve(&reference) else {
            return error(StatusCode::NOT_FOUND, &format!("No commit found for the ref {reference}"));
        };
        let files = &repo.commits[&sha].files;
        if let Some(blob) = files.get(path) {
            return Json(repo.content_json(&ctx.b, path, blob, &reference, true)).into_response();
        }
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        let mut entries: BTreeMap<String, Value> = BTreeMap::new();
        for (file, blob) in files.range(prefix.clone()..) {
            let Some(rest) = file.strip_prefix(&prefix) else { break };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    let dir_path = format!("{prefix}{dir}");
                    let base = ctx.b.repo(&repo.full());
                    let sub: BTreeMap<String, String> = files
                        .iter()
                        .filter_map(|(p, s)| p.strip_prefix(&format!("{dir_path}/")).map(|rest| (rest.to_string(), s.clone())))
                        .collect();
                    let tree = tree_sha(&sub);
                    entries.entry(dir.to_string()).or_insert_with(|| json!({
                        "type": "dir", "name": dir, "path": dir_path, "sha": tree, "size": 0,
                        "url": format!("{base}/contents/{dir_path}?ref={reference}"),
                        "html_url": format!("{}/{}/tree/{reference}/{dir_path}", ctx.b.base, repo.full()),
                        "git_url": format!("{base}/git/trees/{tree}"), "download_url": null,
                    }));
                }
                None => {
                    entries.insert(rest.to_string(), repo.content_json(&ctx.b, file, blob, &reference, false));
                }
            }
        }
        if entries.is_empty() {
            return not_found();
        }
        Json(entries.into_values().collect::<Vec<_>>()).into_response()
    })
}

/// What `PUT` and `DELETE` contents take.
#[derive(serde::Deserialize, Default)]
struct FileWrite {
    message: Option<String>,
    content: Option<String>,
    sha: Option<String>,
    branch: Option<String>,
    committer: Option<Value>,
    author: Option<Value>,
}

fn person_from(value: Option<&Value>, fallback: &Person) -> Person {
    match value {
        Some(v) => Person {
            name: v["name"].as_str().unwrap_or(&fallback.name).to_string(),
            email: v["email"].as_str().unwrap_or(&fallback.email).to_string(),
            at: now(),
        },
        None => fallback.clone(),
    }
}

fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: &axum::body::Bytes,
) -> Result<T, Response> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("Problems parsing JSON: {e}"),
        )
    })
}

async fn write_file(
    ctx: Ctx,
    Path((o, r, path)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: FileWrite = json_body(&body)?;
    change_file(&ctx, &o, &r, &path, write, false)
}

async fn delete_file(
    ctx: Ctx,
    Path((o, r, path)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: FileWrite = json_body(&body)?;
    change_file(&ctx, &o, &r, &path, write, true)
}

fn change_file(ctx: &Ctx, o: &str, r: &str, path: &str, write: FileWrite, delete: bool) -> Reply {
    ctx.with_repo(o, r, |gh, repo| {
        let branch = write
            .branch
            .clone()
            .unwrap_or_else(|| repo.default_branch.clone());
        let Some(head) = repo.branch(&branch).cloned() else {
            return error(StatusCode::NOT_FOUND, &format!("Branch {branch} not found"));
        };
        let Some(message) = write.message.clone() else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\n\"message\" wasn't supplied.",
            );
        };
        let bytes = if delete {
            None
        } else {
            let Some(content) = &write.content else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"content\" wasn't supplied.",
                );
            };
            match base64::engine::general_purpose::STANDARD
                .decode(content.replace(['\n', '\r'], ""))
            {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "content is not valid Base64",
                    );
                }
            }
        };
        let mut files = repo.commits[&head].files.clone();
        let existing = files.get(path).cloned();
        match (&existing, &write.sha) {
            (None, _) if delete => return not_found(),
            (Some(_), None) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.\n\n\"sha\" wasn't supplied.",
                );
            }
            (Some(current), Some(given)) if current != given => {
                return error(
                    StatusCode::CONFLICT,
                    &format!("{path} does not match {given}"),
                );
            }
            _ => {}
        }
        match &bytes {
            Some(bytes) => {
                let sha = blob_sha(bytes);
                repo.blobs.insert(sha.clone(), bytes.clone());
                files.insert(path.to_string(), sha);
            }
            None => {
                files.remove(path);
            }
        }
        let me = gh.person(&ctx.caller);
        let author = person_from(write.author.as_ref().or(write.committer.as_ref()), &me);
        let committer = person_from(write.committer.as_ref(), &me);
        let commit = Commit::new(
            files,
            vec![head],
            &message,
            author,
            committer,
            Some(ctx.caller.clone()),
        );
        let sha = commit.sha.clone();
        let commit_json = repo.git_commit_json(&ctx.b, &commit);
        repo.commits.insert(sha.clone(), commit);
        repo.refs.insert(format!("heads/{branch}"), sha);
        repo.pushed_at = rfc3339(now());
        let content = match &bytes {
            Some(bytes) => repo.content_json(&ctx.b, path, &blob_sha(bytes), &branch, false),
            None => Value::Null,
        };
        let status = if existing.is_none() {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (
            status,
            Json(json!({"content": content, "commit": commit_json})),
        )
            .into_response()
    })
}

fn branch_item(repo: &Repo, b: &Base, name: &str, sha: &str) -> Value {
    json!({"name": name, "commit": {"sha": sha, "url": format!("{}/commits/{sha}", b.repo(&repo.full()))}, "protected": name == repo.default_branch})
}

async fn branches(ctx: Ctx, Path((o, r)): Path<(String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| {
        let protected = ctx.b.param("protected").map(|v| v == "true");
        let items = repo
            .refs
            .iter()
            .filter_map(|(name, sha)| name.strip_prefix("heads/").map(|n| (n, sha)))
            .filter(|(name, _)| protected.is_none_or(|p| p == (*name == repo.default_branch)))
            .map(|(name, sha)| branch_item(repo, &ctx.b, name, sha))
            .collect();
        ctx.b.page(items)
    })
}

async fn branch(ctx: Ctx, Path((o, r, name)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let Some(sha) = repo.branch(&name).cloned() else {
            return error(StatusCode::NOT_FOUND, "Branch not found");
        };
        let base = ctx.b.repo(&repo.full());
        let protected = name == repo.default_branch;
        Json(json!({
            "name": name, "commit": repo.commit_json(gh, &ctx.b, &repo.commits[&sha]),
            "_links": {"self": format!("{base}/branches/{name}"), "html": format!("{}/{}/tree/{name}", ctx.b.base, repo.full())},
            "protected": protected,
            "protection": {"enabled": protected, "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}},
            "protection_url": format!("{base}/branches/{name}/protection"),
        }))
        .into_response()
    })
}

async fn git_ref(ctx: Ctx, Path((o, r, reference)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| {
        let name = reference.strip_prefix("refs/").unwrap_or(&reference);
        match repo.refs.get(name) {
            Some(sha) => Json(repo.ref_json(&ctx.b, name, sha)).into_response(),
            None => not_found(),
        }
    })
}

#[derive(serde::Deserialize, Default)]
struct RefWrite {
    #[serde(rename = "ref")]
    reference: Option<String>,
    sha: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn create_ref(
    ctx: Ctx,
    Path((o, r)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: RefWrite = json_body(&body)?;
    ctx.with_repo(&o, &r, |_, repo| {
        let Some(name) = write
            .reference
            .as_deref()
            .and_then(|r| r.strip_prefix("refs/"))
            .filter(|n| n.contains('/') && !n.ends_with('/'))
        else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Reference name must start with 'refs/' and have at least two slashes.",
            );
        };
        let Some(sha) = write
            .sha
            .as_deref()
            .filter(|s| repo.commits.contains_key(*s))
        else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
        };
        if repo.refs.contains_key(name) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
        }
        repo.refs.insert(name.to_string(), sha.to_string());
        (StatusCode::CREATED, Json(repo.ref_json(&ctx.b, name, sha))).into_response()
    })
}

async fn update_ref(
    ctx: Ctx,
    Path((o, r, reference)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: RefWrite = json_body(&body)?;
    ctx.with_repo(&o, &r, |_, repo| {
        let name = reference
            .strip_prefix("refs/")
            .unwrap_or(&reference)
            .to_string();
        let Some(current) = repo.refs.get(&name).cloned() else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist");
        };
        let Some(sha) = write
            .sha
            .as_deref()
            .filter(|s| repo.commits.contains_key(*s))
        else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
        };
        if !write.force && !repo.is_ancestor(&current, sha) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Update is not a fast forward",
            );
        }
        repo.refs.insert(name.clone(), sha.to_string());
        Json(repo.ref_json(&ctx.b, &name, sha)).into_response()
    })
}

async fn delete_ref(ctx: Ctx, Path((o, r, reference)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| {
        let name = reference.strip_prefix("refs/").unwrap_or(&reference);
        match repo.refs.remove(name) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => error(StatusCode::UNPROCESSABLE_ENTITY, "Reference does not exist"),
        }
    })
}

async fn git_commit(ctx: Ctx, Path((o, r, sha)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| match repo.commits.get(&sha) {
        Some(c) => Json(repo.git_commit_json(&ctx.b, c)).into_response(),
        None => not_found(),
    })
}

async fn git_blob(ctx: Ctx, Path((o, r, sha)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| match repo.blobs.get(&sha) {
        Some(bytes) => Json(json!({
            "sha": sha, "node_id": format!("B_{}", &sha[..12.min(sha.len())]), "size": bytes.len(),
            "url": format!("{}/git/blobs/{sha}", ctx.b.repo(&repo.full())),
            "content": base64::engine::general_purpose::STANDARD.encode(bytes), "encoding": "base64",
        }))
        .into_response(),
        None => not_found(),
    })
}

/// Whether `commit` changed `path` (a file, or anything under a directory) against its first
/// parent.
fn touches(repo: &Repo, commit: &Commit, path: &str) -> bool {
    let empty = BTreeMap::new();
    let parent = commit
        .parents
        .first()
        .and_then(|p| repo.commits.get(p))
        .map_or(&empty, |c| &c.files);
    let path = path.trim_matches('/');
    let relevant = |p: &String| p == path || p.starts_with(&format!("{path}/"));
    let keys: BTreeSet<&String> = commit
        .files
        .keys()
        .chain(parent.keys())
        .filter(|p| relevant(p))
        .collect();
    keys.into_iter()
        .any(|p| commit.files.get(p) != parent.get(p))
}

async fn commits(ctx: Ctx, Path((o, r)): Path<(String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let reference = ctx
            .b
            .param("sha")
            .map(str::to_string)
            .unwrap_or_else(|| repo.default_branch.clone());
        let Some(tip) = repo.resolve(&reference) else {
            return not_found();
        };
        let parse_time = |name: &str| {
            ctx.b.param(name).and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(|t| t.unix_timestamp() as u64)
            })
        };
        let (since, until) = (parse_time("since"), parse_time("until"));
        let items = repo
            .history(&tip)
            .into_iter()
            .filter(|c| ctx.b.param("path").is_none_or(|p| touches(repo, c, p)))
            .filter(|c| {
                ctx.b
                    .param("author")
                    .is_none_or(|a| c.login.as_deref() == Some(a) || c.author.email == a)
            })
            .filter(|c| since.is_none_or(|s| c.committer.at >= s))
            .filter(|c| until.is_none_or(|u| c.committer.at <= u))
            .map(|c| repo.commit_json(gh, &ctx.b, c))
            .collect();
        ctx.b.page(items)
    })
}

async fn commit(ctx: Ctx, Path((o, r, reference)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let Some(sha) = repo.resolve(&reference) else {
            return unprocessable_message(&format!("No commit found for SHA: {reference}"));
        };
        let c = &repo.commits[&sha];
        let empty = BTreeMap::new();
        let parent = c
            .parents
            .first()
            .and_then(|p| repo.commits.get(p))
            .map_or(&empty, |p| &p.files);
        let files = repo.diff(&ctx.b, &sha, parent, &c.files);
        let additions: u64 = files.iter().filter_map(|f| f["additions"].as_u64()).sum();
        let deletions: u64 = files.iter().filter_map(|f| f["deletions"].as_u64()).sum();
        let per_page = ctx
            .b
            .param("per_page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(300)
            .clamp(1, 300);
        let page = ctx
            .b
            .param("page")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let shown: Vec<Value> = files
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut value = repo.commit_json(gh, &ctx.b, c);
        value["stats"] =
            json!({"additions": additions, "deletions": deletions, "total": additions + deletions});
        value["files"] = json!(shown);
        Json(value).into_response()
    })
}

fn unprocessable_message(message: &str) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

#[derive(serde::Deserialize, Default)]
struct PullWrite {
    head: Option<String>,
    base: Option<String>,
    title: Option<String>,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    state: Option<String>,
}

async fn create_pull(
    ctx: Ctx,
    Path((o, r)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: PullWrite = json_body(&body)?;
    let mut hub = ctx.gh.hub();
    let id = hub.next_id;
    hub.next_id += 1;
    let repo = hub
        .repos
        .get_mut(&format!("{o}/{r}"))
        .ok_or_else(not_found)?;
    let head = write.head.clone().unwrap_or_default();
    let head = match head.split_once(':') {
        Some((owner, branch)) if owner == repo.owner => branch.to_string(),
        Some(_) => String::new(),
        None => head,
    };
    let base = write.base.clone().unwrap_or_default();
    let mut invalid = Vec::new();
    if repo.branch(&head).is_none() {
        invalid.push(json!({"resource": "PullRequest", "field": "head", "code": "invalid"}));
    }
    if repo.branch(&base).is_none() {
        invalid.push(json!({"resource": "PullRequest", "field": "base", "code": "invalid"}));
    }
    if !invalid.is_empty() {
        return Ok(validation(json!(invalid)));
    }
    if repo
        .pulls
        .iter()
        .any(|p| p.open && p.head == head && p.base == base)
    {
        return Ok(validation(
            json!([{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {}:{head}.", repo.owner)}]),
        ));
    }
    let (head_sha, base_sha) = (
        repo.branch(&head).cloned().unwrap_or_default(),
        repo.branch(&base).cloned().unwrap_or_default(),
    );
    if repo.is_ancestor(&head_sha, &base_sha) {
        return Ok(validation(
            json!([{"resource": "PullRequest", "code": "custom", "message": format!("No commits between {base} and {head}")}]),
        ));
    }
    let Some(title) = write.title.clone().filter(|t| !t.trim().is_empty()) else {
        return Ok(validation(
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        ));
    };
    let at = rfc3339(now());
    let number = repo.pulls.len() as u64 + 1;
    repo.pulls.push(Pull {
        number,
        id,
        title,
        body: write.body.clone().unwrap_or_default(),
        head,
        base,
        user: ctx.caller.clone(),
        open: true,
        draft: write.draft,
        created_at: at.clone(),
        updated_at: at,
        closed_at: None,
        merged_at: None,
        merge_commit_sha: None,
        merged_by: None,
        head_sha: None,
        base_sha: None,
        reviews: Vec::new(),
    });
    let pull = repo.pulls.last().expect("just pushed");
    Ok((
        StatusCode::CREATED,
        Json(repo.pull_json(&ctx.gh, &ctx.b, pull, true)),
    )
        .into_response())
}

fn pull_index(repo: &Repo, n: &str) -> Result<usize, Response> {
    let n: u64 = n.parse().map_err(|_| not_found())?;
    repo.pulls
        .iter()
        .position(|p| p.number == n)
        .ok_or_else(not_found)
}

async fn pulls(ctx: Ctx, Path((o, r)): Path<(String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let state = ctx.b.param("state").unwrap_or("open");
        let head = ctx
            .b
            .param("head")
            .map(|h| h.split_once(':').map_or(h, |(_, b)| b));
        let mut items: Vec<&Pull> = repo
            .pulls
            .iter()
            .filter(|p| match state {
                "all" => true,
                "closed" => !p.open,
                _ => p.open,
            })
            .filter(|p| head.is_none_or(|h| p.head == h))
            .filter(|p| ctx.b.param("base").is_none_or(|b| p.base == b))
            .collect();
        let by_updated = ctx.b.param("sort") == Some("updated");
        items.sort_by(|a, b| {
            if by_updated {
                a.updated_at.cmp(&b.updated_at)
            } else {
                a.number.cmp(&b.number)
            }
        });
        if ctx.b.param("direction") != Some("asc") {
            items.reverse();
        }
        let values = items
            .into_iter()
            .map(|p| repo.pull_json(gh, &ctx.b, p, false))
            .collect();
        ctx.b.page(values)
    })
}

async fn pull(ctx: Ctx, Path((o, r, n)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let i = pull_index(repo, &n)?;
        Ok(Json(repo.pull_json(gh, &ctx.b, &repo.pulls[i], true)).into_response())
    })?
}

async fn update_pull(
    ctx: Ctx,
    Path((o, r, n)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: PullWrite = json_body(&body)?;
    ctx.with_repo(&o, &r, |gh, repo| {
        let i = pull_index(repo, &n)?;
        if let Some(base) = &write.base
            && repo.branch(base).is_none()
        {
            return Ok(validation(
                json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
            ));
        }
        let head_sha = repo.branch(&repo.pulls[i].head).cloned();
        let base_sha = repo.branch(&repo.pulls[i].base).cloned();
        let at = rfc3339(now());
        let pull = &mut repo.pulls[i];
        if let Some(title) = write.title {
            pull.title = title;
        }
        if let Some(body) = write.body {
            pull.body = body;
        }
        if let Some(base) = write.base {
            pull.base = base;
        }
        match write.state.as_deref() {
            Some("closed") if pull.open && pull.merged_at.is_none() => {
                pull.open = false;
                pull.closed_at = Some(at.clone());
                pull.head_sha = head_sha;
                pull.base_sha = base_sha;
            }
            Some("open") if !pull.open && pull.merged_at.is_none() => {
                pull.open = true;
                pull.closed_at = None;
                pull.head_sha = None;
                pull.base_sha = None;
            }
            Some("open" | "closed") | None => {}
            Some(_) => {
                return Ok(validation(
                    json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]),
                ));
            }
        }
        pull.updated_at = at;
        Ok(Json(repo.pull_json(gh, &ctx.b, &repo.pulls[i], true)).into_response())
    })?
}

async fn is_merged(ctx: Ctx, Path((o, r, n)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| {
        let i = pull_index(repo, &n)?;
        Ok(if repo.pulls[i].merged_at.is_some() {
            StatusCode::NO_CONTENT.into_response()
        } else {
            not_found()
        })
    })?
}

#[derive(serde::Deserialize, Default)]
struct MergeWrite {
    merge_method: Option<String>,
    sha: Option<String>,
    commit_title: Option<String>,
    commit_message: Option<String>,
}

async fn merge(
    ctx: Ctx,
    Path((o, r, n)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: MergeWrite = json_body(&body)?;
    ctx.with_repo(&o, &r, |gh, repo| {
        let i = pull_index(repo, &n)?;
        let method = write.merge_method.as_deref().unwrap_or("merge");
        if !matches!(method, "merge" | "squash" | "rebase") {
            return Ok(validation(
                json!([{"resource": "PullRequest", "field": "merge_method", "code": "invalid"}]),
            ));
        }
        let pull = &repo.pulls[i];
        let head = repo.pull_head_sha(pull);
        if let (Some(expected), Some(head)) = (&write.sha, &head)
            && expected != head
            && pull.open
        {
            return Ok(error(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            ));
        }
        if let (_, _, Err(why)) = repo.mergeability(pull) {
            return Ok(error(StatusCode::METHOD_NOT_ALLOWED, why));
        }
        let (Some(head), Some(base_sha)) = (head, repo.branch(&pull.base).cloned()) else {
            return Ok(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is not mergeable",
            ));
        };
        let files = match repo.merge_files(&base_sha, &head) {
            Ok(files) => files,
            Err(_) => {
                return Ok(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable",
                ));
            }
        };
        let title = write.commit_title.clone().unwrap_or_else(|| match method {
            "merge" => format!(
                "Merge pull request #{} from {}/{}",
                pull.number, repo.owner, pull.head
            ),
            _ => format!("{} (#{})", pull.title, pull.number),
        });
        let message = match &write.commit_message {
            Some(m) => format!("{title}\n\n{m}"),
            None if method == "merge" => format!("{title}\n\n{}", pull.title),
            None => title,
        };
        let parents = if method == "merge" {
            vec![base_sha.clone(), head.clone()]
        } else {
            vec![base_sha.clone()]
        };
        let me = gh.person(&ctx.caller);
        let commit = Commit::new(
            files,
            parents,
            &message,
            me.clone(),
            me,
            Some(ctx.caller.clone()),
        );
        let sha = commit.sha.clone();
        repo.commits.insert(sha.clone(), commit);
        let base = pull.base.clone();
        repo.refs.insert(format!("heads/{base}"), sha.clone());
        let at = rfc3339(now());
        repo.pushed_at = at.clone();
        let pull = &mut repo.pulls[i];
        pull.open = false;
        pull.merged_at = Some(at.clone());
        pull.closed_at = Some(at.clone());
        pull.updated_at = at;
        pull.merge_commit_sha = Some(sha.clone());
        pull.merged_by = Some(ctx.caller.clone());
        pull.head_sha = Some(head);
        pull.base_sha = Some(base_sha);
        Ok(
            Json(
                json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
            )
            .into_response(),
        )
    })?
}

async fn pull_files(ctx: Ctx, Path((o, r, n)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |_, repo| {
        let i = pull_index(repo, &n)?;
        Ok(ctx.b.page(repo.pull_files(&ctx.b, &repo.pulls[i])))
    })?
}

async fn reviews(ctx: Ctx, Path((o, r, n)): Path<(String, String, String)>) -> Reply {
    ctx.with_repo(&o, &r, |gh, repo| {
        let i = pull_index(repo, &n)?;
        let pull = &repo.pulls[i];
        let items = pull
            .reviews
            .iter()
            .filter(|r| r.state != "PENDING" || r.user == ctx.caller)
            .map(|r| repo.review_json(gh, &ctx.b, pull, r))
            .collect();
        Ok(ctx.b.page(items))
    })?
}

#[derive(serde::Deserialize, Default)]
struct ReviewWrite {
    event: Option<String>,
    body: Option<String>,
    commit_id: Option<String>,
}

async fn review(
    ctx: Ctx,
    Path((o, r, n)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Reply {
    let write: ReviewWrite = json_body(&body)?;
    let mut hub = ctx.gh.hub();
    let id = hub.next_id;
    hub.next_id += 1;
    let repo = hub
        .repos
        .get_mut(&format!("{o}/{r}"))
        .ok_or_else(not_found)?;
    let i = pull_index(repo, &n)?;
    let body_text = write.body.clone().unwrap_or_default();
    let own = repo.pulls[i].user == ctx.caller;
    let state = match write.event.as_deref() {
        Some("APPROVE") if own => {
            return Ok(unprocessable("Can not approve your own pull request"));
        }
        Some("REQUEST_CHANGES") if own => {
            return Ok(unprocessable(
                "Can not request changes on your own pull request",
            ));
        }
        Some("APPROVE") => "APPROVED",
        Some("REQUEST_CHANGES") | Some("COMMENT") if body_text.trim().is_empty() => {
            return Ok(unprocessable("Body is required for this event"));
        }
        Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
        Some("COMMENT") => "COMMENTED",
        None | Some("") => "PENDING",
        Some(other) => return Ok(unprocessable(&format!("Unknown event {other}"))),
    };
    if state == "PENDING"
        && repo.pulls[i]
            .reviews
            .iter()
            .any(|r| r.state == "PENDING" && r.user == ctx.caller)
    {
        return Ok(unprocessable(
            "User can only have one pending review per pull request",
        ));
    }
    let commit_id = write
        .commit_id
        .clone()
        .or_else(|| repo.pull_head_sha(&repo.pulls[i]))
        .unwrap_or_default();
    let submitted_at = (state != "PENDING").then(|| rfc3339(now()));
    repo.pulls[i].reviews.push(Review {
        id,
        user: ctx.caller.clone(),
        body: body_text,
        state,
        commit_id,
        submitted_at,
    });
    let pull = &repo.pulls[i];
    let value = repo.review_json(
        &ctx.gh,
        &ctx.b,
        pull,
        pull.reviews.last().expect("just pushed"),
    );
    Ok(Json(value).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // `git hash-object -t tree /dev/null`: the empty tree.
        assert_eq!(
            tree_sha(&BTreeMap::new()),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        // `git write-tree` with `a` holding "hello\n".
        let mut files = BTreeMap::from([("a".to_string(), blob_sha(b"hello\n"))]);
        assert_eq!(tree_sha(&files), "0976950c1fdbcb52435a433913017bf044b3a58f");
        // ... and `d/e/f` holding "x", `d.txt` holding "y": nested trees, and a directory
        // sorting as "d/" after "d.txt".
        files.insert("d/e/f".into(), blob_sha(b"x"));
        files.insert("d.txt".into(), blob_sha(b"y"));
        assert_eq!(tree_sha(&files), "a5d30651c31b30141be94c6aed35bb7f3418f75e");
    }

    #[test]
    fn timestamps_are_githubs() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn a_commit_id_is_gits() {
        // `git commit-tree 4b825dc... -m hi` with these names and dates, then `git cat-file`.
        let person = Person {
            name: "A".into(),
            email: "a@x".into(),
            at: 1_700_000_000,
        };
        let commit = Commit::new(
            BTreeMap::new(),
            Vec::new(),
            "hi\n",
            person.clone(),
            person,
            None,
        );
        assert_eq!(commit.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(commit.sha, "69d7ed7c0be2eb003e29ed19582b1b4459c36582");
    }
}
