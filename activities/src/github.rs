//! GitHub's REST API v3 (`../shared/contracts/github.md`), called as the person who asked:
//! each call presents that person's token, read from the credential provider when it is made.
//! This client owns GitHub's wire format and returns the GitHub tools' typed results; its
//! writes are idempotent (a retried commit, branch, pull request, review or merge finds what
//! its first attempt did instead of doing it again).

use crate::http::{DownstreamError, send_json, with_retries};
use base64::Engine as _;
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::github::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const SYSTEM: &str = "GitHub";

/// How long a rate-limited call waits when GitHub names no time.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// How many pages of closed pull requests are searched for a commit's pull request.
const MAX_PULL_PAGES: u32 = 10;

pub struct GitHubClient {
    base_url: Option<String>,
    http: reqwest::Client,
    credentials: Arc<dyn CredentialProvider>,
}

/// The git blob SHA-1 of some content, as GitHub names file contents.
pub fn blob_sha(content: &[u8]) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_string()
}

fn login_of(user: &Value) -> String {
    text(user, "login")
}

/// A path segment with `/` encoded (what GitHub wants for a ref in `commits/{ref}`).
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// GitHub's answers as the tools' errors: a conflict (stale `sha`, not mergeable) is a
/// conflict, a rate limit is retried later, anything else keeps its classification.
fn classified(err: DownstreamError) -> DownstreamError {
    match err {
        DownstreamError::Rejected {
            status: 405 | 409,
            message,
            ..
        } => DownstreamError::Conflict(format!("GitHub: {message}")),
        DownstreamError::Rejected {
            status: 403,
            message,
            ..
        } if message.to_lowercase().contains("rate limit") => DownstreamError::RateLimited {
            system: SYSTEM,
            retry_after: RATE_LIMIT_WAIT,
        },
        other => other,
    }
}

fn pull_request(pr: &Value) -> PullRequest {
    let merged_by = login_of(&pr["merged_by"]);
    PullRequest {
        number: pr["number"].as_u64().unwrap_or_default(),
        title: text(pr, "title"),
        body: text(pr, "body"),
        state: text(pr, "state"),
        draft: pr["draft"].as_bool().unwrap_or(false),
        author: login_of(&pr["user"]),
        head: text(&pr["head"], "ref"),
        head_sha: text(&pr["head"], "sha"),
        base: text(&pr["base"], "ref"),
        merged: pr["merged"].as_bool().unwrap_or(false) || !pr["merged_at"].is_null(),
        mergeable: pr["mergeable"].as_bool(),
        mergeable_state: pr["mergeable_state"].as_str().map(str::to_string),
        merge_commit_sha: pr["merge_commit_sha"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        merged_by: (!merged_by.is_empty()).then_some(merged_by),
        url: text(pr, "html_url"),
    }
}

fn review(r: &Value) -> Review {
    Review {
        id: r["id"].as_u64().unwrap_or_default(),
        user: login_of(&r["user"]),
        state: text(r, "state"),
        body: text(r, "body"),
        commit_id: text(r, "commit_id"),
        submitted_at: r["submitted_at"].as_str().map(str::to_string),
    }
}

fn changed_file(f: &Value, patch: bool) -> ChangedFile {
    ChangedFile {
        filename: text(f, "filename"),
        status: text(f, "status"),
        additions: f["additions"].as_u64().unwrap_or_default(),
        deletions: f["deletions"].as_u64().unwrap_or_default(),
        patch: patch.then(|| text(f, "patch")).filter(|p| !p.is_empty()),
    }
}

fn commit_summary(c: &Value) -> CommitSummary {
    let author = login_of(&c["author"]);
    CommitSummary {
        sha: text(c, "sha"),
        message: text(&c["commit"], "message"),
        author: if author.is_empty() {
            text(&c["commit"]["author"], "name")
        } else {
            author
        },
        date: text(&c["commit"]["author"], "date"),
        url: text(c, "html_url"),
    }
}

/// Who approved a pull request: each reviewer's latest approving or blocking review counts
/// (comments change nothing), and the author never counts.
pub fn approvers(reviews: &[Review], author: &str) -> Vec<String> {
    let mut latest: Vec<(String, String)> = Vec::new();
    for r in reviews {
        if !["APPROVED", "CHANGES_REQUESTED", "DISMISSED"].contains(&r.state.as_str()) {
            continue;
        }
        latest.retain(|(user, _)| *user != r.user);
        latest.push((r.user.clone(), r.state.clone()));
    }
    let mut approved: Vec<String> = latest
        .into_iter()
        .filter(|(user, state)| state == "APPROVED" && user != author)
        .map(|(user, _)| user)
        .collect();
    approved.sort();
    approved
}

fn paging(page: Option<u32>, per_page: Option<u32>, query: &mut Vec<(&str, String)>) {
    if let Some(page) = page {
        query.push(("page", page.to_string()));
    }
    query.push(("per_page", per_page.unwrap_or(30).to_string()));
}

impl GitHubClient {
    /// A client for GitHub at `base_url` (None: this worker has no GitHub, and every call says
    /// so).
    pub fn new(
        base_url: Option<&str>,
        http: reqwest::Client,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        Self {
            base_url: base_url.map(|u| u.trim_end_matches('/').to_string()),
            http,
            credentials,
        }
    }

    async fn call(
        &self,
        user: &str,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, DownstreamError> {
        let base = self.base_url.as_deref().ok_or_else(|| {
            DownstreamError::Configuration(
                "this worker has no GitHub (start it with --github-url)".into(),
            )
        })?;
        let token = self.credentials.github(user).await?;
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request =
            crate::http::request(&self.http, method, &format!("{base}{path}"), &query, body)
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28");
        send_json(SYSTEM, request).await.map_err(classified)
    }

    async fn get(
        &self,
        user: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, DownstreamError> {
        with_retries(|| self.call(user, Method::GET, path, query, None)).await
    }

    fn repo_path(owner: &str, repo: &str) -> String {
        format!("/repos/{owner}/{repo}")
    }

    /// A write to a repository's `path` with a JSON body.
    async fn write(
        &self,
        user: &str,
        method: Method,
        (owner, repo): (&str, &str),
        path: &str,
        body: &Value,
    ) -> Result<Value, DownstreamError> {
        let url = format!("{}/{path}", Self::repo_path(owner, repo));
        self.call(user, method, &url, &[], Some(body)).await
    }

    /// The items of one of a repository's lists (`branches`, `commits`, `pulls`, ...).
    async fn items(
        &self,
        user: &str,
        (owner, repo): (&str, &str),
        list: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, DownstreamError> {
        let answer = self
            .get(
                user,
                &format!("{}/{list}", Self::repo_path(owner, repo)),
                query,
            )
            .await?;
        match answer {
            Value::Array(items) => Ok(items),
            _ => Err(DownstreamError::protocol(
                SYSTEM,
                format!("{list} is not a list"),
            )),
        }
    }

    /// The repository's default branch.
    async fn default_branch(
        &self,
        user: &str,
        owner: &str,
        repo: &str,
    ) -> Result<String, DownstreamError> {
        let repository = self.get(user, &Self::repo_path(owner, repo), &[]).await?;
        Ok(text(&repository, "default_branch"))
    }

    /// The commit a branch points at.
    async fn branch_head(
        &self,
        user: &str,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<String, DownstreamError> {
        let path = format!("{}/git/ref/heads/{branch}", Self::repo_path(owner, repo));
        match self.get(user, &path, &[]).await {
            Ok(reference) => Ok(text(&reference["object"], "sha")),
            Err(DownstreamError::NotFound { .. }) => Err(DownstreamError::NotFound {
                system: SYSTEM,
                message: format!("{owner}/{repo} has no branch '{branch}'"),
            }),
            Err(other) => Err(other),
        }
    }

    /// A file at a ref: its blob SHA and bytes; `None` when the path does not exist there.
    async fn file_at(
        &self,
        user: &str,
        owner: &str,
        repo: &str,
        path: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, DownstreamError> {
        let url = format!(
            "{}/contents/{}",
            Self::repo_path(owner, repo),
            path.trim_matches('/')
        );
        match self
            .get(user, &url, &[("ref", reference.to_string())])
            .await
        {
            Ok(file) if file.is_object() && file["type"] == "file" => {
                Ok(Some((text(&file, "sha"), decode(&file)?)))
            }
            Ok(_) => Err(DownstreamError::Invalid(format!(
                "{path} is a directory in {owner}/{repo}, not a file"
            ))),
            Err(DownstreamError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    pub async fn file_contents(
        &self,
        user: &str,
        args: &GetFileContents,
    ) -> Result<FileContents, DownstreamError> {
        let reference = match (&args.sha, &args.reference) {
            (Some(sha), _) => sha.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => self.default_branch(user, &args.owner, &args.repo).await?,
        };
        let path = args.path.as_deref().unwrap_or("/").trim_matches('/');
        let url = format!(
            "{}/contents/{path}",
            Self::repo_path(&args.owner, &args.repo)
        );
        let answer = self.get(user, &url, &[("ref", reference)]).await?;
        if let Some(entries) = answer.as_array() {
            return Ok(FileContents {
                path: path.to_string(),
                kind: "dir".into(),
                sha: None,
                size: None,
                content: None,
                entries: entries
                    .iter()
                    .map(|e| DirectoryEntry {
                        name: text(e, "name"),
                        path: text(e, "path"),
                        kind: text(e, "type"),
                        sha: text(e, "sha"),
                        size: e["size"].as_u64().unwrap_or_default(),
                    })
                    .collect(),
            });
        }
        let bytes = decode(&answer)?;
        Ok(FileContents {
            path: text(&answer, "path"),
            kind: text(&answer, "type"),
            sha: Some(text(&answer, "sha")),
            size: answer["size"].as_u64(),
            content: Some(String::from_utf8_lossy(&bytes).into_owned()),
            entries: Vec::new(),
        })
    }

    pub async fn branches(
        &self,
        user: &str,
        args: &ListBranches,
    ) -> Result<BranchList, DownstreamError> {
        let mut query = Vec::new();
        paging(args.page, args.per_page, &mut query);
        let list = self
            .items(user, (&args.owner, &args.repo), "branches", &query)
            .await?;
        Ok(BranchList {
            branches: list
                .iter()
                .map(|b| Branch {
                    name: text(b, "name"),
                    sha: text(&b["commit"], "sha"),
                    protected: b["protected"].as_bool().unwrap_or(false),
                })
                .collect(),
        })
    }

    /// Creates a branch; a retried call finds the branch its first attempt created (same
    /// commit) instead of failing.
    pub async fn create_branch(
        &self,
        user: &str,
        args: &CreateBranch,
    ) -> Result<CreatedBranch, DownstreamError> {
        let (owner, repo) = (&args.owner, &args.repo);
        let from = match &args.from_branch {
            Some(b) => b.clone(),
            None => self.default_branch(user, owner, repo).await?,
        };
        let sha = self.branch_head(user, owner, repo, &from).await?;
        let reference = format!("refs/heads/{}", args.branch);
        let created = self
            .write(
                user,
                Method::POST,
                (owner, repo),
                "git/refs",
                &json!({"ref": reference, "sha": sha}),
            )
            .await;
        match created {
            Ok(_) => {}
            Err(DownstreamError::Rejected { status: 422, .. }) => {
                let existing = self.branch_head(user, owner, repo, &args.branch).await?;
                if existing != sha {
                    return Err(DownstreamError::Conflict(format!(
                        "branch '{}' already exists at {existing}, not at {from} ({sha})",
                        args.branch
                    )));
                }
            }
            Err(other) => return Err(other),
        }
        Ok(CreatedBranch {
            branch: args.branch.clone(),
            reference,
            sha,
        })
    }

    pub async fn commits(
        &self,
        user: &str,
        args: &ListCommits,
    ) -> Result<CommitList, DownstreamError> {
        let mut query: Vec<(&str, String)> = [
            ("sha", args.sha.clone()),
            ("path", args.path.clone()),
            ("author", args.author.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        paging(args.page, args.per_page, &mut query);
        let list = self
            .items(user, (&args.owner, &args.repo), "commits", &query)
            .await?;
        Ok(CommitList {
            commits: list.iter().map(commit_summary).collect(),
        })
    }

    pub async fn commit(&self, user: &str, args: &GetCommit) -> Result<Commit, DownstreamError> {
        let path = format!(
            "{}/commits/{}",
            Self::repo_path(&args.owner, &args.repo),
            segment(&args.sha)
        );
        let c = match self.get(user, &path, &[]).await {
            Err(DownstreamError::Rejected { status: 422, .. }) => {
                return Err(DownstreamError::NotFound {
                    system: SYSTEM,
                    message: format!("no commit '{}' in {}/{}", args.sha, args.owner, args.repo),
                });
            }
            other => other?,
        };
        let summary = commit_summary(&c);
        let full = args.detail == CommitDetail::FullPatch;
        Ok(Commit {
            sha: summary.sha,
            message: summary.message,
            author: summary.author,
            date: summary.date,
            parents: c["parents"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| text(p, "sha"))
                .collect(),
            stats: (args.detail != CommitDetail::None).then(|| CommitStats {
                additions: c["stats"]["additions"].as_u64().unwrap_or_default(),
                deletions: c["stats"]["deletions"].as_u64().unwrap_or_default(),
                total: c["stats"]["total"].as_u64().unwrap_or_default(),
            }),
            files: c["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| changed_file(f, full))
                .collect(),
            url: summary.url,
        })
    }

    /// Commits one file. When the branch already holds exactly this content (a retried call
    /// whose first attempt committed), nothing is committed and the commit that put it there
    /// is returned.
    pub async fn put_file(
        &self,
        user: &str,
        args: &CreateOrUpdateFile,
    ) -> Result<FileCommit, DownstreamError> {
        let (owner, repo) = (&args.owner, &args.repo);
        let path = args.path.trim_matches('/');
        let wanted = blob_sha(args.content.as_bytes());
        let current = self.file_at(user, owner, repo, path, &args.branch).await?;
        if current.as_ref().is_some_and(|(sha, _)| *sha == wanted) {
            let last = self
                .items(
                    user,
                    (owner, repo),
                    "commits",
                    &[
                        ("sha", args.branch.clone()),
                        ("path", path.to_string()),
                        ("per_page", "1".into()),
                    ],
                )
                .await?;
            let last = last.first().ok_or_else(|| {
                DownstreamError::protocol(SYSTEM, "a file without a commit touching it")
            })?;
            return Ok(FileCommit {
                path: path.to_string(),
                branch: args.branch.clone(),
                content_sha: wanted,
                commit_sha: text(last, "sha"),
                message: text(&last["commit"], "message"),
                committed: false,
            });
        }
        let mut body = json!({
            "message": args.message,
            "content": base64::engine::general_purpose::STANDARD.encode(&args.content),
            "branch": args.branch,
        });
        if let Some(sha) = &args.sha {
            body["sha"] = json!(sha);
        }
        let answer = self
            .write(
                user,
                Method::PUT,
                (owner, repo),
                &format!("contents/{path}"),
                &body,
            )
            .await
            .map_err(|err| match err {
                DownstreamError::Rejected {
                    status: 422,
                    message,
                    ..
                } if message.contains("sha") => DownstreamError::Invalid(format!(
                    "{path} exists on {}: give its blob sha (get_file_contents) to replace it",
                    args.branch
                )),
                other => other,
            })?;
        Ok(FileCommit {
            path: path.to_string(),
            branch: args.branch.clone(),
            content_sha: text(&answer["content"], "sha"),
            commit_sha: text(&answer["commit"], "sha"),
            message: text(&answer["commit"], "message"),
            committed: true,
        })
    }

    /// Opens a pull request; when one is already open from the same head into the same base
    /// (a retried call), that one is returned.
    pub async fn create_pull(
        &self,
        user: &str,
        args: &CreatePullRequest,
    ) -> Result<PullRequest, DownstreamError> {
        let (owner, repo) = (&args.owner, &args.repo);
        let mut body = json!({"title": args.title, "head": args.head, "base": args.base});
        if let Some(text) = &args.body {
            body["body"] = json!(text);
        }
        if let Some(draft) = args.draft {
            body["draft"] = json!(draft);
        }
        let created = self
            .write(user, Method::POST, (owner, repo), "pulls", &body)
            .await;
        match created {
            Ok(pr) => Ok(pull_request(&pr)),
            Err(DownstreamError::Rejected {
                status: 422,
                message,
                ..
            }) if message.contains("already exists") => {
                let open = self
                    .items(
                        user,
                        (owner, repo),
                        "pulls",
                        &[
                            ("state", "open".into()),
                            ("head", format!("{owner}:{}", args.head)),
                            ("base", args.base.clone()),
                        ],
                    )
                    .await?;
                open.first()
                    .map(pull_request)
                    .ok_or(DownstreamError::Conflict(format!("GitHub: {message}")))
            }
            Err(other) => Err(other),
        }
    }

    pub async fn pulls(
        &self,
        user: &str,
        args: &ListPullRequests,
    ) -> Result<PullRequestList, DownstreamError> {
        let mut query = vec![("state", args.state.as_str().to_string())];
        if let Some(head) = &args.head {
            let head = if head.contains(':') {
                head.clone()
            } else {
                format!("{}:{head}", args.owner)
            };
            query.push(("head", head));
        }
        if let Some(base) = &args.base {
            query.push(("base", base.clone()));
        }
        paging(args.page, args.per_page, &mut query);
        let list = self
            .items(user, (&args.owner, &args.repo), "pulls", &query)
            .await?;
        Ok(PullRequestList {
            pull_requests: list.iter().map(pull_request).collect(),
        })
    }

    async fn pull(
        &self,
        user: &str,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<PullRequest, DownstreamError> {
        let pr = self
            .get(
                user,
                &format!("{}/pulls/{number}", Self::repo_path(owner, repo)),
                &[],
            )
            .await?;
        Ok(pull_request(&pr))
    }

    async fn reviews(
        &self,
        user: &str,
        owner: &str,
        repo: &str,
        number: u64,
        page: Option<u32>,
        per_page: Option<u32>,
    ) -> Result<Vec<Review>, DownstreamError> {
        let mut query = Vec::new();
        paging(page, per_page.or(Some(100)), &mut query);
        let list = self
            .items(
                user,
                (owner, repo),
                &format!("pulls/{number}/reviews"),
                &query,
            )
            .await?;
        Ok(list.iter().map(review).collect())
    }

    pub async fn read_pull(
        &self,
        user: &str,
        args: &PullRequestRead,
    ) -> Result<PullRequestDetails, DownstreamError> {
        let (owner, repo, n) = (&args.owner, &args.repo, args.pull_number);
        let mut details = PullRequestDetails {
            pull_request: None,
            files: None,
            reviews: None,
        };
        match args.method {
            PullRequestReadMethod::Get => {
                details.pull_request = Some(self.pull(user, owner, repo, n).await?);
            }
            PullRequestReadMethod::GetFiles => {
                let mut query = Vec::new();
                paging(args.page, args.per_page, &mut query);
                let files = self
                    .items(user, (owner, repo), &format!("pulls/{n}/files"), &query)
                    .await?;
                details.files = Some(files.iter().map(|f| changed_file(f, true)).collect());
            }
            PullRequestReadMethod::GetReviews => {
                details.reviews = Some(
                    self.reviews(user, owner, repo, n, args.page, args.per_page)
                        .await?,
                );
            }
        }
        Ok(details)
    }

    /// Submits a review; a retried call finds the same review (same person, verdict, text and
    /// commit) instead of submitting a second one.
    pub async fn review(
        &self,
        user: &str,
        args: &PullRequestReviewWrite,
    ) -> Result<Review, DownstreamError> {
        let (owner, repo, n) = (&args.owner, &args.repo, args.pull_number);
        let me = login_of(&self.get(user, "/user", &[]).await?);
        let pr = self.pull(user, owner, repo, n).await?;
        let commit = args.commit_id.clone().unwrap_or(pr.head_sha);
        let body = args.body.clone().unwrap_or_default();
        if let Some(done) = self
            .reviews(user, owner, repo, n, None, None)
            .await?
            .into_iter()
            .find(|r| {
                r.user == me
                    && r.state == args.event.state()
                    && r.body == body
                    && r.commit_id == commit
            })
        {
            return Ok(done);
        }
        let answer = self
            .write(
                user,
                Method::POST,
                (owner, repo),
                &format!("pulls/{n}/reviews"),
                &json!({"event": args.event.as_str(), "body": body, "commit_id": commit}),
            )
            .await?;
        Ok(review(&answer))
    }

    /// Merges a pull request; one already merged (a retried call) reports its merge.
    pub async fn merge(
        &self,
        user: &str,
        args: &MergePullRequest,
    ) -> Result<MergeResult, DownstreamError> {
        let (owner, repo, n) = (&args.owner, &args.repo, args.pull_number);
        let pr = self.pull(user, owner, repo, n).await?;
        if pr.merged {
            return Ok(MergeResult {
                pull_number: n,
                merged: true,
                sha: pr.merge_commit_sha.unwrap_or_default(),
                message: format!(
                    "Pull Request was already merged by {}",
                    pr.merged_by.unwrap_or_default()
                ),
            });
        }
        let mut body = json!({"merge_method": args.merge_method.as_str()});
        if let Some(title) = &args.commit_title {
            body["commit_title"] = json!(title);
        }
        if let Some(message) = &args.commit_message {
            body["commit_message"] = json!(message);
        }
        let answer = self
            .write(
                user,
                Method::PUT,
                (owner, repo),
                &format!("pulls/{n}/merge"),
                &body,
            )
            .await?;
        Ok(MergeResult {
            pull_number: n,
            merged: answer["merged"].as_bool().unwrap_or(false),
            sha: text(&answer, "sha"),
            message: text(&answer, "message"),
        })
    }

    /// What policy needs to know before a merge.
    pub async fn merge_facts(
        &self,
        user: &str,
        args: &GetMergeFacts,
    ) -> Result<MergeFacts, DownstreamError> {
        let (owner, repo, n) = (&args.owner, &args.repo, args.pull_number);
        let default_branch = self.default_branch(user, owner, repo).await?;
        let pr = self.pull(user, owner, repo, n).await?;
        let reviews = self.reviews(user, owner, repo, n, None, None).await?;
        Ok(MergeFacts {
            number: n,
            approvers: approvers(&reviews, &pr.author),
            author: pr.author,
            base: pr.base,
            default_branch,
            merged: pr.merged,
        })
    }

    /// A Git source resolved: the commit its ref names, whether that is on the default branch,
    /// and the pull request that merged it with its approvers.
    pub async fn resolve(
        &self,
        user: &str,
        source: &GitSource,
    ) -> Result<ResolvedSource, DownstreamError> {
        let (owner, repo) = source.owner_repo();
        let default_branch = self.default_branch(user, owner, repo).await?;
        let requested = source
            .reference
            .clone()
            .unwrap_or_else(|| default_branch.clone());
        let default_head = self.branch_head(user, owner, repo, &default_branch).await?;
        let commit_sha = if is_commit_sha(&requested) {
            let found = self
                .commit(
                    user,
                    &GetCommit {
                        owner: owner.into(),
                        repo: repo.into(),
                        sha: requested.clone(),
                        detail: CommitDetail::None,
                    },
                )
                .await?;
            found.sha
        } else if requested == default_branch {
            default_head.clone()
        } else {
            self.branch_head(user, owner, repo, &requested).await?
        };
        // The pull request whose merge commit this is (merged into the default branch).
        let mut review = None;
        'pages: for page in 1..=MAX_PULL_PAGES {
            let list = self
                .items(
                    user,
                    (owner, repo),
                    "pulls",
                    &[
                        ("state", "closed".into()),
                        ("base", default_branch.clone()),
                        ("per_page", "100".into()),
                        ("page", page.to_string()),
                    ],
                )
                .await?;
            if list.is_empty() {
                break;
            }
            for pr in list.iter().map(pull_request) {
                if pr.merge_commit_sha.as_deref() == Some(commit_sha.as_str()) {
                    // List items may leave out who merged: the pull request itself says.
                    let pr = self.pull(user, owner, repo, pr.number).await?;
                    let reviews = self
                        .reviews(user, owner, repo, pr.number, None, None)
                        .await?;
                    review = Some(SourceReview {
                        approvers: approvers(&reviews, &pr.author),
                        number: pr.number,
                        title: pr.title,
                        author: pr.author,
                        merged_by: pr.merged_by.unwrap_or_default(),
                        url: pr.url,
                    });
                    break 'pages;
                }
            }
            if list.len() < 100 {
                break;
            }
        }
        Ok(ResolvedSource {
            repository: source.repository.clone(),
            path: source.path.clone(),
            on_default_branch: requested == default_branch
                || commit_sha == default_head
                || review.is_some(),
            requested_ref: requested,
            commit_sha,
            default_branch,
            pull_request: review,
        })
    }

    /// The template file of a resolved source, at its commit.
    pub async fn source_text(
        &self,
        user: &str,
        source: &ResolvedSource,
    ) -> Result<String, DownstreamError> {
        let (owner, repo) = source.repository.split_once('/').unwrap_or_default();
        match self
            .file_at(user, owner, repo, &source.path, &source.commit_sha)
            .await?
        {
            Some((_, bytes)) => String::from_utf8(bytes).map_err(|_| {
                DownstreamError::Invalid(format!("{} is not UTF-8 text", source.path))
            }),
            None => Err(DownstreamError::Invalid(format!(
                "{} does not exist in {} at {}",
                source.path, source.repository, source.commit_sha
            ))),
        }
    }
}

/// A content answer's bytes (base64, possibly wrapped).
fn decode(file: &Value) -> Result<Vec<u8>, DownstreamError> {
    let wrapped = file["content"].as_str().unwrap_or_default();
    let joined: String = wrapped.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(joined)
        .map_err(|e| DownstreamError::protocol(SYSTEM, format!("file content: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reviewed(user: &str, state: &str) -> Review {
        Review {
            id: 1,
            user: user.into(),
            state: state.into(),
            body: String::new(),
            commit_id: String::new(),
            submitted_at: None,
        }
    }

    #[test]
    fn blob_shas_are_gits_and_approvers_are_latest_verdicts_of_others() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let reviews = [
            reviewed("alice", "APPROVED"),
            reviewed("carol", "APPROVED"),
            reviewed("carol", "CHANGES_REQUESTED"),
            reviewed("alice", "COMMENTED"),
            reviewed("dave", "APPROVED"),
        ];
        assert_eq!(approvers(&reviews, "dave"), vec!["alice".to_string()]);
        assert_eq!(segment("feature/x y"), "feature%2Fx%20y");
    }
}
