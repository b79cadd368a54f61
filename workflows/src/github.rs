//! The GitHub tools' arguments and results, named and shaped like the official
//! github-mcp-server's (`../shared/contracts/github.md`, section 9: `pullNumber`, `perPage`,
//! `from_branch`...), and the Git source a change can deploy a template from. Each argument
//! type has its one `validate`, as every tool's (see `arguments`).

use crate::arguments::Arguments;
use crate::limits::{self, LONG_TEXT_MAX};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An owner or repository name: 1-100 of letters, digits, `_`, `.`, `-`, not starting `..`
/// (nor `.` alone). Each pattern below is exactly what its check function accepts.
pub const NAME_PATTERN: &str =
    "^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98})$";
/// `owner/name`.
pub const REPOSITORY_PATTERN: &str = "^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98})/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98})$";
/// A branch name or commit SHA: `/`-separated segments of letters, digits, `_`, `-` and
/// single dots, none starting with `.` or `-` or ending with `.`; at most `REF_MAX`.
pub const REF_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_-]*(?:\\.[A-Za-z0-9_-]+)*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*(?:\\.[A-Za-z0-9_-]+)*)*$";
pub const REF_MAX: usize = 255;
/// A branch, or `owner:branch`; at most `REF_MAX` in all.
pub const HEAD_PATTERN: &str = "^(?:(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}|\\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,98}):)?[A-Za-z0-9_][A-Za-z0-9_-]*(?:\\.[A-Za-z0-9_-]+)*(?:/[A-Za-z0-9_][A-Za-z0-9_-]*(?:\\.[A-Za-z0-9_-]+)*)*$";
/// A path inside a repository: `/`-separated segments, none `.` or `..` (nor starting `..`);
/// at most `PATH_MAX`.
pub const PATH_PATTERN: &str = "^(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*(?:/(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*)*$";
/// A directory or file, or the root (``, `/`), with an optional leading and trailing `/`.
pub const ROOT_PATH_PATTERN: &str = "^/?(?:(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*(?:/(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*)*/?)?$";
/// A template file: a path ending `.vtl` (Velocity) or `.j2` (Jinja).
pub const TEMPLATE_PATH_PATTERN: &str = "^(?:(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*/)*(?:[A-Za-z0-9_ +@=,-]|\\.[A-Za-z0-9_ +@=,-])[A-Za-z0-9_. +@=,-]*\\.(?:vtl|j2)$";
pub const PATH_MAX: usize = 1024;
/// A full commit SHA.
pub const SHA_PATTERN: &str = "^[0-9a-f]{40}$";
/// The largest file content a tool writes: templates are small, and a call must stay well
/// within the front door's body limit (256 KiB).
pub const CONTENT_MAX: usize = 128 * 1024;
/// Pages hold at most this many items (GitHub's own cap).
pub const PER_PAGE_MAX: u32 = 100;
/// The highest page a list is read at.
pub const PAGE_MAX: u32 = 10_000;
/// The highest pull request number taken.
pub const PULL_MAX: u64 = 1_000_000_000;
const TITLE_MAX: usize = 256;

fn name_ok(value: &str) -> bool {
    let mut chars = value.chars();
    (1..=100).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && (chars.next() != Some('.') || chars.next().is_some_and(|c| c != '.'))
}

fn name(field: &str, value: &str) -> Result<(), String> {
    name_ok(value).then_some(()).ok_or_else(|| {
        format!("{field} must be 1-100 letters, digits, '_', '.' or '-', not starting with '..'")
    })
}

fn ref_segment_ok(segment: &str) -> bool {
    segment
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !segment.contains("..")
        && !segment.ends_with('.')
}

/// Checks a ref or branch name (`REF_PATTERN`).
pub fn reference(field: &str, value: &str) -> Result<(), String> {
    let ok = value.len() <= REF_MAX && value.split('/').all(ref_segment_ok);
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{field} must be a branch name or commit SHA: '/'-separated parts of letters, digits, '_', '-' and single dots, none starting with '.' or '-' (at most {REF_MAX} characters)"
        )
    })
}

fn path_segment_ok(segment: &str) -> bool {
    let mut chars = segment.chars();
    match chars.next() {
        None => false,
        Some('.') => chars.next().is_some_and(|c| c != '.') && segment_chars(segment),
        Some(_) => segment_chars(segment),
    }
}

fn segment_chars(segment: &str) -> bool {
    segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_. +@=,-".contains(c))
}

/// Checks a path inside a repository (`PATH_PATTERN`, or `ROOT_PATH_PATTERN` when the root
/// is allowed).
pub fn path(field: &str, value: &str, allow_root: bool) -> Result<(), String> {
    let ok = value.len() <= PATH_MAX
        && if allow_root {
            let inner = value.strip_prefix('/').unwrap_or(value);
            inner.is_empty()
                || inner
                    .strip_suffix('/')
                    .unwrap_or(inner)
                    .split('/')
                    .all(path_segment_ok)
        } else {
            value.split('/').all(path_segment_ok)
        };
    ok.then_some(()).ok_or_else(|| {
        format!("{field} must be a path inside the repository: '/'-separated names, none '.' or '..' (at most {PATH_MAX} characters)")
    })
}

fn sha(field: &str, value: &str) -> Result<(), String> {
    let ok = value.len() == 40
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    ok.then_some(())
        .ok_or_else(|| format!("{field} must be a full commit SHA (40 lowercase hex digits)"))
}

fn paging(page: Option<u32>, per_page: Option<u32>) -> Result<(), String> {
    if page.is_some_and(|p| !(1..=PAGE_MAX).contains(&p)) {
        return Err(format!("page must be between 1 and {PAGE_MAX}"));
    }
    match per_page {
        Some(n) if !(1..=PER_PAGE_MAX).contains(&n) => {
            Err(format!("perPage must be between 1 and {PER_PAGE_MAX}"))
        }
        _ => Ok(()),
    }
}

fn pull_number(number: u64) -> Result<(), String> {
    if (1..=PULL_MAX).contains(&number) {
        Ok(())
    } else {
        Err(format!("pullNumber must be between 1 and {PULL_MAX}"))
    }
}

fn repository(owner: &str, repo: &str) -> Result<(), String> {
    name("owner", owner)?;
    name("repo", repo)
}

/// Get the contents of a file or directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetFileContents {
    /// Repository owner (user or organisation)
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    /// Repository name
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Path to the file or directory; the root when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ROOT_PATH_PATTERN), length(max = PATH_MAX))]
    pub path: Option<String>,
    /// Branch, tag or `refs/heads/x`; the default branch when absent
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub reference: Option<String>,
    /// Commit SHA; overrides ref
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SHA_PATTERN))]
    pub sha: Option<String>,
}

impl Arguments for GetFileContents {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        if let Some(p) = &self.path {
            path("path", p, true)?;
        }
        if let Some(r) = &self.reference {
            reference("ref", r)?;
        }
        self.sha.as_deref().map_or(Ok(()), |s| sha("sha", s))
    }
}

/// List the branches of a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBranches {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Page number, from 1
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub page: Option<u32>,
    /// Results per page (1-100, default 30)
    #[serde(default, rename = "perPage", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PER_PAGE_MAX))]
    pub per_page: Option<u32>,
}

impl Arguments for ListBranches {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        paging(self.page, self.per_page)
    }
}

/// Create a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBranch {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Name of the new branch
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub branch: String,
    /// Branch to start from; the default branch when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub from_branch: Option<String>,
}

impl Arguments for CreateBranch {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        reference("branch", &self.branch)?;
        self.from_branch
            .as_deref()
            .map_or(Ok(()), |b| reference("from_branch", b))
    }
}

/// List commits, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCommits {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Branch, tag or commit SHA to list from; the default branch when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub sha: Option<String>,
    /// Only commits that touch this path
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = PATH_PATTERN), length(max = PATH_MAX))]
    pub path: Option<String>,
    /// Only commits by this author (login)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub page: Option<u32>,
    #[serde(default, rename = "perPage", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PER_PAGE_MAX))]
    pub per_page: Option<u32>,
}

impl Arguments for ListCommits {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        if let Some(s) = &self.sha {
            reference("sha", s)?;
        }
        if let Some(p) = &self.path {
            path("path", p, false)?;
        }
        if let Some(a) = &self.author {
            name("author", a)?;
        }
        paging(self.page, self.per_page)
    }
}

/// How much of a commit to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommitDetail {
    /// The commit and its changed files
    #[default]
    None,
    /// With line counts
    Stats,
    /// With each file's patch
    FullPatch,
}

/// Get one commit with its changed files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCommit {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Commit SHA, branch or tag
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub sha: String,
    #[serde(default)]
    pub detail: CommitDetail,
}

impl Arguments for GetCommit {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        reference("sha", &self.sha)
    }
}

/// Create or update one file in a branch, as one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrUpdateFile {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    /// Path of the file
    #[schemars(regex(pattern = PATH_PATTERN), length(max = PATH_MAX))]
    pub path: String,
    /// The file's new content (plain text)
    #[schemars(length(max = CONTENT_MAX))]
    pub content: String,
    /// Commit message
    #[schemars(length(min = 1, max = LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub message: String,
    /// Branch to commit to
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub branch: String,
    /// Blob SHA of the file being replaced; required when it exists
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SHA_PATTERN))]
    pub sha: Option<String>,
}

impl Arguments for CreateOrUpdateFile {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        path("path", &self.path, false)?;
        if self.content.chars().count() > CONTENT_MAX {
            return Err(format!("content must be at most {CONTENT_MAX} characters"));
        }
        limits::text("message", &self.message, LONG_TEXT_MAX)?;
        reference("branch", &self.branch)?;
        self.sha.as_deref().map_or(Ok(()), |s| sha("sha", s))
    }
}

/// Open a pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePullRequest {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    #[schemars(length(min = 1, max = TITLE_MAX), regex(pattern = limits::NOT_BLANK))]
    pub title: String,
    /// Branch holding the changes
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub head: String,
    /// Branch to merge into
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub base: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = LONG_TEXT_MAX))]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
}

impl Arguments for CreatePullRequest {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        limits::text("title", &self.title, TITLE_MAX)?;
        reference("head", &self.head)?;
        reference("base", &self.base)?;
        match &self.body {
            Some(body) if body.chars().count() > LONG_TEXT_MAX => {
                Err(format!("body must be at most {LONG_TEXT_MAX} characters"))
            }
            _ => Ok(()),
        }
    }
}

/// Pull request states to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestState {
    #[default]
    Open,
    Closed,
    All,
}

impl PullRequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestState::Open => "open",
            PullRequestState::Closed => "closed",
            PullRequestState::All => "all",
        }
    }
}

/// List pull requests, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPullRequests {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    #[serde(default)]
    pub state: PullRequestState,
    /// Only pull requests from this branch (`branch` or `owner:branch`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HEAD_PATTERN), length(max = REF_MAX))]
    pub head: Option<String>,
    /// Only pull requests into this branch
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub page: Option<u32>,
    #[serde(default, rename = "perPage", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PER_PAGE_MAX))]
    pub per_page: Option<u32>,
}

impl Arguments for ListPullRequests {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        if let Some(head) = &self.head {
            if head.len() > REF_MAX {
                return Err(format!("head must be at most {REF_MAX} characters"));
            }
            let branch = head.split_once(':').map_or(head.as_str(), |(o, b)| {
                if name("head owner", o).is_err() {
                    ""
                } else {
                    b
                }
            });
            reference("head", branch)?;
        }
        if let Some(base) = &self.base {
            reference("base", base)?;
        }
        paging(self.page, self.per_page)
    }
}

/// What `pull_request_read` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestReadMethod {
    /// The pull request, with its mergeability
    Get,
    /// The files it changes
    GetFiles,
    /// Its reviews, oldest first
    GetReviews,
}

/// Read a pull request, its files or its reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequestRead {
    pub method: PullRequestReadMethod,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    #[serde(rename = "pullNumber")]
    #[schemars(range(min = 1, max = PULL_MAX))]
    pub pull_number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PAGE_MAX))]
    pub page: Option<u32>,
    #[serde(default, rename = "perPage", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = PER_PAGE_MAX))]
    pub per_page: Option<u32>,
}

impl Arguments for PullRequestRead {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        pull_number(self.pull_number)?;
        paging(self.page, self.per_page)
    }
}

/// What `pull_request_review_write` does (`create` only: the others need GitHub's GraphQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewWriteMethod {
    /// Submit a review with an event
    Create,
}

/// A review's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewEvent {
    Approve,
    RequestChanges,
    Comment,
}

impl ReviewEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewEvent::Approve => "APPROVE",
            ReviewEvent::RequestChanges => "REQUEST_CHANGES",
            ReviewEvent::Comment => "COMMENT",
        }
    }
    /// The state GitHub gives a review submitted with this event.
    pub fn state(self) -> &'static str {
        match self {
            ReviewEvent::Approve => "APPROVED",
            ReviewEvent::RequestChanges => "CHANGES_REQUESTED",
            ReviewEvent::Comment => "COMMENTED",
        }
    }
}

/// Review a pull request: approve it, request changes, or comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequestReviewWrite {
    pub method: ReviewWriteMethod,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    #[serde(rename = "pullNumber")]
    #[schemars(range(min = 1, max = PULL_MAX))]
    pub pull_number: u64,
    pub event: ReviewEvent,
    /// The review's text; GitHub requires one to request changes or comment
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = LONG_TEXT_MAX))]
    pub body: Option<String>,
    /// The commit reviewed; the pull request's head when absent
    #[serde(default, rename = "commitID", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SHA_PATTERN))]
    pub commit_id: Option<String>,
}

impl Arguments for PullRequestReviewWrite {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        pull_number(self.pull_number)?;
        // GitHub itself requires a body to request changes or comment, and says so.
        if self
            .body
            .as_ref()
            .is_some_and(|body| body.chars().count() > LONG_TEXT_MAX)
        {
            return Err(format!("body must be at most {LONG_TEXT_MAX} characters"));
        }
        self.commit_id
            .as_deref()
            .map_or(Ok(()), |s| sha("commitID", s))
    }
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// Merge a pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergePullRequest {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub owner: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub repo: String,
    #[serde(rename = "pullNumber")]
    #[schemars(range(min = 1, max = PULL_MAX))]
    pub pull_number: u64,
    #[serde(default)]
    pub merge_method: MergeMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = TITLE_MAX), regex(pattern = limits::NOT_BLANK))]
    pub commit_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub commit_message: Option<String>,
}

impl Arguments for MergePullRequest {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)?;
        pull_number(self.pull_number)?;
        limits::optional_text("commit_title", self.commit_title.as_deref(), TITLE_MAX)?;
        limits::optional_text(
            "commit_message",
            self.commit_message.as_deref(),
            LONG_TEXT_MAX,
        )
    }
}

/// Where a change's template comes from in Git (instead of a Catalyst Center template id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = crate::arguments::no_additional_properties)]
pub struct GitSource {
    /// Repository as owner/name, e.g. netops/templates
    #[schemars(regex(pattern = REPOSITORY_PATTERN))]
    pub repository: String,
    /// The template file, e.g. ntp/ntp-servers.vtl (.vtl Velocity, .j2 Jinja)
    #[schemars(regex(pattern = TEMPLATE_PATH_PATTERN), length(max = PATH_MAX))]
    pub path: String,
    /// Branch or full commit SHA; the default branch when absent. The change pins the commit
    /// it resolves to
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = REF_MAX))]
    pub reference: Option<String>,
}

impl GitSource {
    /// (owner, repo)
    pub fn owner_repo(&self) -> (&str, &str) {
        self.repository
            .split_once('/')
            .unwrap_or((&self.repository, ""))
    }

    /// How verification.toml and governance.rego name a template from Git.
    pub fn key(&self) -> String {
        format!("{}:{}", self.repository, self.path)
    }
}

impl Arguments for GitSource {
    fn validate(&self) -> Result<(), String> {
        let Some((owner, repo)) = self.repository.split_once('/') else {
            return Err("source.repository must be owner/name".into());
        };
        name("source.repository owner", owner)?;
        name("source.repository name", repo)?;
        path("source.path", &self.path, false)?;
        let file = self.path.rsplit('/').next().unwrap_or_default();
        let stem = file
            .strip_suffix(".vtl")
            .or_else(|| file.strip_suffix(".j2"));
        if stem.is_none_or(str::is_empty) {
            return Err("source.path must be a Velocity (.vtl) or Jinja (.j2) template".into());
        }
        self.reference
            .as_deref()
            .map_or(Ok(()), |r| reference("source.ref", r))
    }
}

/// Whether a string is a full commit SHA.
pub fn is_commit_sha(value: &str) -> bool {
    sha("", value).is_ok()
}

/// The pull request that merged a commit, and who approved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceReview {
    pub number: u64,
    pub title: String,
    pub author: String,
    pub merged_by: String,
    /// Who approved it (latest review APPROVED), its author excluded
    pub approvers: Vec<String>,
    pub url: String,
}

/// A Git source resolved to the commit a change deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResolvedSource {
    pub repository: String,
    pub path: String,
    /// What was asked for (a branch or a SHA)
    pub requested_ref: String,
    /// The commit the change is pinned to
    pub commit_sha: String,
    pub default_branch: String,
    /// The commit is on the default branch (its head, or merged into it by a pull request)
    pub on_default_branch: bool,
    /// The pull request whose merge commit this is, if any
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<SourceReview>,
}

impl ResolvedSource {
    /// One line naming the source, for tickets, audit notes and summaries.
    pub fn describe(&self) -> String {
        let review = match &self.pull_request {
            Some(pr) if pr.approvers.is_empty() => {
                format!(", merged by pull request #{} (no approval)", pr.number)
            }
            Some(pr) => format!(
                ", merged by pull request #{} approved by {}",
                pr.number,
                pr.approvers.join(", ")
            ),
            None => ", not merged through a pull request".to_string(),
        };
        format!(
            "{} {} at commit {} (ref {}){review}",
            self.repository, self.path, self.commit_sha, self.requested_ref
        )
    }
}

/// The Catalyst Center template version a Git source was synced to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncedTemplate {
    /// The template's id (its versions share it)
    pub template_id: String,
    /// The committed version's own id: what the change deploys
    pub version_id: String,
    pub version: u32,
    /// The version's comment, naming the commit
    pub comment: String,
    /// The version already existed (an earlier sync of the same commit)
    pub reused: bool,
}

// --- Results ---

/// A file's content, or a directory's entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileContents {
    pub path: String,
    /// file or dir
    #[serde(rename = "type")]
    pub kind: String,
    /// The file's git blob SHA (give it as `sha` to replace the file)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The file's text
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DirectoryEntry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub sha: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Branch {
    pub name: String,
    /// Its head commit
    pub sha: String,
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BranchList {
    pub branches: Vec<Branch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommitSummary {
    pub sha: String,
    pub message: String,
    /// The author's login, or their name when GitHub knows no user
    pub author: String,
    pub date: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommitList {
    pub commits: Vec<CommitSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangedFile {
    pub filename: String,
    /// added, modified, removed or renamed
    pub status: String,
    pub additions: u64,
    pub deletions: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommitStats {
    pub additions: u64,
    pub deletions: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Commit {
    pub sha: String,
    pub message: String,
    pub author: String,
    pub date: String,
    pub parents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<CommitStats>,
    pub files: Vec<ChangedFile>,
    pub url: String,
}

/// The commit a file write made (or found: the same content already there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileCommit {
    pub path: String,
    pub branch: String,
    /// The file's new blob SHA
    pub content_sha: String,
    pub commit_sha: String,
    pub message: String,
    /// False when the branch already held this content (a retried write): nothing committed
    pub committed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedBranch {
    pub branch: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequest {
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// open or closed
    pub state: String,
    pub draft: bool,
    pub author: String,
    pub head: String,
    pub head_sha: String,
    pub base: String,
    pub merged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mergeable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mergeable_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit_sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<String>,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequestList {
    pub pull_requests: Vec<PullRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    pub id: u64,
    pub user: String,
    /// APPROVED, CHANGES_REQUESTED, COMMENTED, PENDING or DISMISSED
    pub state: String,
    #[serde(default)]
    pub body: String,
    pub commit_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
}

/// What `pull_request_read` read: the pull request (`get`), its files or its reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PullRequestDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ChangedFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviews: Option<Vec<Review>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MergeResult {
    pub pull_number: u64,
    pub merged: bool,
    /// The merge commit
    pub sha: String,
    pub message: String,
}

/// What policy is told about a pull request to be merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MergeFacts {
    pub number: u64,
    pub author: String,
    pub base: String,
    pub default_branch: String,
    pub merged: bool,
    /// Who approved it (latest review APPROVED), its author excluded
    pub approvers: Vec<String>,
}

/// Internal: the facts policy needs before a merge (not a tool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetMergeFacts {
    pub owner: String,
    pub repo: String,
    pub pull_number: u64,
}

impl Arguments for GetMergeFacts {
    fn validate(&self) -> Result<(), String> {
        repository(&self.owner, &self.repo)
    }
}

/// Internal: resolve a Git source for policy and for the change (not a tool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveSource {
    pub source: GitSource,
}

impl Arguments for ResolveSource {
    fn validate(&self) -> Result<(), String> {
        self.source.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pattern the schemas show accepts exactly what its check accepts (clients and
    /// schemathesis trust the schema).
    #[test]
    fn patterns_and_checks_agree() {
        let samples = [
            "",
            "/",
            "//",
            "a",
            "a/",
            "/a",
            "/a/",
            "a/b",
            "a//b",
            ".",
            "..",
            "...",
            ".a",
            "..a",
            "a.",
            "a..b",
            "a.b",
            "-a",
            "a-",
            "_",
            "a/.b",
            "a/../b",
            "a/./b",
            "x.vtl",
            ".vtl",
            "a/.vtl",
            "a..vtl",
            "a/b.j2",
            "a b/c.vtl",
            "a:b",
            "o:main",
            "..:x",
            "x:",
            ":x",
            "feature/ntp-2",
            "a.lock",
            "0",
            "a+b@c=d,e",
            "a\\b",
            "a\nb",
            "é",
        ];
        let ok = |r: Result<(), String>| r.is_ok();
        type Check<'a> = &'a dyn Fn(&str) -> bool;
        let checks: [(&str, Check); 7] = [
            (NAME_PATTERN, &|v| name_ok(v)),
            (REPOSITORY_PATTERN, &|v| {
                v.split_once('/')
                    .is_some_and(|(o, r)| name_ok(o) && name_ok(r))
            }),
            (REF_PATTERN, &|v| ok(reference("r", v))),
            (PATH_PATTERN, &|v| ok(path("p", v, false))),
            (ROOT_PATH_PATTERN, &|v| ok(path("p", v, true))),
            (TEMPLATE_PATH_PATTERN, &|v| {
                ok(GitSource {
                    repository: "o/r".into(),
                    path: v.into(),
                    reference: None,
                }
                .validate())
            }),
            (HEAD_PATTERN, &|v| {
                ok(ListPullRequests {
                    owner: "o".into(),
                    repo: "r".into(),
                    state: PullRequestState::Open,
                    head: Some(v.into()),
                    base: None,
                    page: None,
                    per_page: None,
                }
                .validate())
            }),
        ];
        for (pattern, check) in checks {
            let regex = regex::Regex::new(pattern).unwrap();
            for sample in samples {
                assert_eq!(
                    regex.is_match(sample),
                    check(sample),
                    "{pattern} and its check disagree on {sample:?}"
                );
            }
        }
    }

    #[test]
    fn names_refs_and_paths_are_checked() {
        assert!(reference("ref", "feature/ntp-2").is_ok());
        assert!(reference("ref", "../main").is_err());
        assert!(reference("ref", "a..b").is_err());
        assert!(reference("ref", "-x").is_err());
        assert!(path("path", "ntp/ntp-servers.vtl", false).is_ok());
        assert!(path("path", "ntp/../secrets", false).is_err());
        assert!(path("path", "", false).is_err());
        assert!(path("path", "/", true).is_ok());
        assert!(name("owner", "..").is_err());
        let review = PullRequestReviewWrite {
            method: ReviewWriteMethod::Create,
            owner: "netops".into(),
            repo: "templates".into(),
            pull_number: 1,
            event: ReviewEvent::Comment,
            body: None,
            commit_id: None,
        };
        assert!(review.validate().is_ok(), "GitHub judges a missing body");
        let source = GitSource {
            repository: "netops/templates".into(),
            path: "README.md".into(),
            reference: None,
        };
        assert!(source.validate().unwrap_err().contains("template"));
    }
}

/// Input of the `resolve_template_source` activity: whose GitHub token reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveTemplateSource {
    pub source: GitSource,
    pub requested_by: String,
}

/// Input of the `sync_template` activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncTemplate {
    pub source: ResolvedSource,
    pub requested_by: String,
}
