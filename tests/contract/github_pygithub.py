"""PyGithub (the official-community GitHub client, unchanged) against the GitHub simulator:
every endpoint changeflow serves, the pagination PyGithub parses, and the error cases.
Environment: GITHUB_URL (the simulator's base, used as `<url>/api/v3`), CA_FILE, and the tokens
ALICE_TOKEN, DAVE_TOKEN. Prints one `ok:` line per check."""
import base64
import os

import requests
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException

BASE = os.environ["GITHUB_URL"].rstrip("/")
CA = os.environ["CA_FILE"]


def client(token, **kw):
    return Github(base_url=f"{BASE}/api/v3", auth=Auth.Token(token), verify=CA,
                  seconds_between_requests=0, seconds_between_writes=0, **kw)


def ok(what):
    print(f"ok: {what}", flush=True)


def status_of(call):
    try:
        call()
    except GithubException as e:
        return e.status, e.data
    raise AssertionError("expected an error")


dave = client(os.environ["DAVE_TOKEN"])
alice = client(os.environ["ALICE_TOKEN"])

# Who am I; bad credentials.
assert dave.get_user().login == "dave"
try:
    client("ghp_not_a_token").get_user().login
    raise AssertionError("a bad token was accepted")
except BadCredentialsException:
    pass
ok("authentication: the token's user, BadCredentialsException for a bad token")

# Read a file: real git blob sha, base64 content.
repo = dave.get_repo("netops/templates")
assert repo.default_branch == "main"
ntp = repo.get_contents("ntp/ntp-servers.vtl", ref="main")
text = ntp.decoded_content
assert b"ntp server $ntp_primary" in text, text
import hashlib
assert ntp.sha == hashlib.sha1(b"blob %d\0" % len(text) + text).hexdigest()
root = repo.get_contents("")
assert {c.path for c in root} >= {"README.md", "ntp"}, [c.path for c in root]
ok("read a file (git blob sha) and the root directory")

# Create a branch; an existing branch is refused.
main = repo.get_branch("main")
ref = repo.create_git_ref("refs/heads/feature/ntp-change", main.commit.sha)
assert ref.ref == "refs/heads/feature/ntp-change"
status, data = status_of(lambda: repo.create_git_ref("refs/heads/feature/ntp-change", main.commit.sha))
assert status == 422 and data["message"] == "Reference already exists", data
ok("create a branch; an existing one is 422")

# Commit a file; missing and stale shas are refused.
new_text = text.replace(b"prefer", b"prefer iburst")
# create_file sends no sha: for a path that exists, that is the missing-sha case.
status, data = status_of(lambda: repo.create_file("ntp/ntp-servers.vtl", "no sha", new_text, branch="feature/ntp-change"))
assert status == 422 and '"sha" wasn\'t supplied' in data["message"], data
status, data = status_of(lambda: repo.update_file("ntp/ntp-servers.vtl", "stale", new_text, "0" * 40, branch="feature/ntp-change"))
assert status == 409 and "does not match" in data["message"], data
result = repo.update_file("ntp/ntp-servers.vtl", "NTP: iburst", new_text, ntp.sha, branch="feature/ntp-change")
commit_sha = result["commit"].sha
assert repo.get_contents("ntp/ntp-servers.vtl", ref="feature/ntp-change").decoded_content == new_text
assert repo.get_contents("ntp/ntp-servers.vtl", ref="main").decoded_content == text
ok("commit a file to a branch; missing sha 422, stale sha 409")

# Open a PR; review it; merging needs another person's approval.
pr = repo.create_pull(title="NTP iburst", body="faster sync", head="feature/ntp-change", base="main")
assert pr.number >= 1 and pr.mergeable is True
status, data = status_of(lambda: pr.create_review(event="APPROVE"))
assert status == 422 and "Can not approve your own pull request" in data["errors"], data
status, data = status_of(lambda: pr.merge())
assert status == 405, (status, data)
alice_pr = alice.get_repo("netops/templates").get_pull(pr.number)
review = alice_pr.create_review(event="APPROVE", body="looks right")
assert review.state == "APPROVED"
assert [r.user.login for r in pr.get_reviews()] == ["alice"]
status, data = status_of(lambda: pr.merge(sha="0" * 40))
assert status == 409, (status, data)
merged = pr.merge(commit_message="reviewed by alice")
assert merged.merged
pr = repo.get_pull(pr.number)
assert pr.merged and pr.is_merged() and pr.merged_by.login == "dave"
head = repo.get_branch("main").commit
assert head.sha == pr.merge_commit_sha and [p.sha for p in head.parents][1] == commit_sha
assert repo.get_contents("ntp/ntp-servers.vtl").decoded_content == new_text
files = list(pr.get_files())
assert [f.filename for f in files] == ["ntp/ntp-servers.vtl"] and files[0].status == "modified"
ok("open a PR, own approval 422, unapproved merge 405, approval by alice, stale head 409, merge")

# Not mergeable: a conflicting change on both sides.
repo.create_git_ref("refs/heads/conflict", main.commit.sha)
base_file = repo.get_contents("README.md")
repo.update_file("README.md", "one side", b"# one\n", base_file.sha, branch="conflict")
repo.update_file("README.md", "other side", b"# other\n", base_file.sha, branch="main")
conflict = repo.create_pull(title="conflict", body="", head="conflict", base="main")
assert conflict.mergeable is False and conflict.mergeable_state == "dirty"
alice.get_repo("netops/templates").get_pull(conflict.number).create_review(event="APPROVE", body="ok")
status, data = status_of(lambda: conflict.merge())
assert status == 405 and data["message"] == "Pull Request is not mergeable", data
ok("a conflicting PR is not mergeable (405)")

# Commits touching a path; a single commit with files and stats.
touching = list(repo.get_commits(path="ntp/ntp-servers.vtl"))
assert commit_sha in [c.sha for c in touching], [c.sha for c in touching]
assert all("ntp/ntp-servers.vtl" in [f.filename for f in c.files] for c in touching if len(c.parents) == 1)
single = repo.get_commit(commit_sha)
assert single.stats.total >= 2 and single.files[0].filename == "ntp/ntp-servers.vtl"
small = client(os.environ["DAVE_TOKEN"], per_page=1).get_repo("netops/templates")
assert [c.sha for c in small.get_commits(path="ntp/ntp-servers.vtl")] == [c.sha for c in touching]
status, data = status_of(lambda: repo.get_commit("f" * 40))
assert status == 422 and "No commit found" in data["message"], data
status, data = status_of(lambda: repo.get_contents("README.md", ref="no-such-branch"))
assert status == 404 and "No commit found for the ref" in data["message"], data
ok("list commits touching a path (also a page at a time); one commit with files and stats; unknown refs")

# Pagination: a long list, totalCount, every page.
for i in range(41):
    repo.create_git_ref(f"refs/heads/page/{i:02d}", main.commit.sha)
branches = repo.get_branches()
count = branches.totalCount
names = [b.name for b in branches]
assert count == len(names) == len(set(names)) and count >= 43, (count, len(names))
paged = client(os.environ["DAVE_TOKEN"], per_page=7).get_repo("netops/templates").get_branches()
assert [b.name for b in paged] == names
ok(f"page through {count} branches, totalCount agrees, per_page 7 agrees")

# Rate limit: headers, then a 403 PyGithub recognises.
response = requests.get(f"{BASE}/api/v3/rate_limit", headers={"Authorization": f"token {os.environ['DAVE_TOKEN']}"}, verify=CA)
assert int(response.headers["X-RateLimit-Limit"]) == 5000 and "X-RateLimit-Reset" in response.headers
requests.put(f"{BASE}/_simulator/github/rate_limit", json={"limit": 2, "window_secs": 60}, verify=CA)
limited = client(os.environ["ALICE_TOKEN"], retry=None)
limited.get_repo("netops/templates")
try:
    for _ in range(3):
        limited.get_repo("netops/templates").get_branch("main")
    raise AssertionError("the rate limit never applied")
except RateLimitExceededException as e:
    assert e.status == 403
requests.put(f"{BASE}/_simulator/github/rate_limit", json={"limit": 5000, "window_secs": 3600}, verify=CA)
ok("rate-limit headers; an exhausted limit is RateLimitExceededException (403)")

# A 429 with Retry-After from the simulator's fault injection: GithubException(429).
requests.put(f"{BASE}/_simulator/faults", json={"rate_limit_rate": 1.0, "retry_after_secs": 1}, verify=CA)
try:
    status, data = status_of(lambda: client(os.environ["DAVE_TOKEN"], retry=None).get_repo("netops/templates").name)
    assert status == 429 and "secondary rate limit" in data["message"], (status, data)
finally:
    requests.put(f"{BASE}/_simulator/faults", json={}, verify=CA)
assert dave.get_repo("netops/templates").name == "templates"
ok("a 429 with Retry-After is GithubException(429), and service resumes")
