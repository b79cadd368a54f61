# changeflow authorization policy (Rego v1). Loaded at start and reloaded on change; a bad edit
# keeps the last good policy. The engine asks for data.changeflow.authz.decision and denies
# whenever that is undefined, malformed or fails to evaluate.
#
# input:
#   identity: {subject, groups[], amr[], client_id}
#   resource: MCP server, e.g. "catalyst-center"
#   action:   "read" | "write" | "execute"
#   tool:     {name, arguments}
#   context:  {time, client}          (time: seconds since the Unix epoch)
#   change:   {requested_by}          (tools naming an existing change: its requester)
#   devices:  [{hostname, role, family}]  (deploy_template: the devices as Catalyst Center
#             describes them; role "UNKNOWN" when it could not say)
#   source:   deploy_template from Git: {repository, path, requested_ref, commit_sha,
#             default_branch, on_default_branch, pull_request: {number, author, merged_by,
#             approvers[]}}, or {unresolved: why}
#   pull_request: merge_pull_request: {number, author, base, default_branch, merged,
#             approvers[]}, or {unknown: why}
#
# The change-governance rules (standard templates, blackouts, approval limits) are in
# governance.rego, in this same package.
package changeflow.authz

# The seed's RBAC: group -> resource -> actions. "*" is every resource.
grants := {
	"admin": {"*": {"read", "write", "execute"}},
	"network-engineers": {
		"catalyst-center": {"read", "write", "execute"},
		"changes": {"read", "write", "execute"},
		"github": {"read"},
	},
	"service-desk": {
		"servicenow": {"read", "write", "execute"},
		"catalyst-center": {"read"},
		"changes": {"read"},
	},
	"change-approvers": {
		"servicenow": {"read", "write"},
		"changes": {"read", "write"},
		"approvals": {"read", "write"},
	},
	"auditors": {
		"changes": {"read"},
		"audit": {"read"},
	},
	"developers": {
		"github": {"read", "write", "execute"},
		"rest-api-proxy": {"read", "write", "execute"},
	},
}

# Devices whose names start with these are lab devices; every other device is production.
lab_device_prefixes := ["lab-"]

# Tools that decide on a change; the change's requester may not call them.
approval_tools := {"approve_change", "reject_change"}

granting_groups contains group if {
	some group in input.identity.groups
	some resource in [input.resource, "*"]
	input.action in grants[group][resource]
}

# Network engineers also open and review pull requests on the templates repositories (and
# nothing else of GitHub's writes).
template_repositories := {"netops/templates"}

template_review_tools := {"create_pull_request", "pull_request_review_write"}

granting_groups contains "network-engineers" if {
	"network-engineers" in input.identity.groups
	input.resource == "github"
	input.action == "write"
	input.tool.name in template_review_tools
	sprintf("%s/%s", [input.tool.arguments.owner, input.tool.arguments.repo]) in template_repositories
}

# rule: reviewed_merges. A merge into the default branch needs an approving review by someone
# other than the pull request's author (GitHub's branch protection says the same; this says it
# before the call, by name). Unknown facts refuse.
deny_reasons contains sprintf("rule reviewed_merges: pull request #%d into %s needs an approving review by someone other than its author %s", [input.pull_request.number, input.pull_request.base, input.pull_request.author]) if {
	input.tool.name == "merge_pull_request"
	input.pull_request.base == input.pull_request.default_branch
	not input.pull_request.merged
	count({a | some a in input.pull_request.approvers; a != input.pull_request.author}) == 0
}

deny_reasons contains sprintf("rule reviewed_merges: the pull request's reviews could not be read (%s)", [input.pull_request.unknown]) if {
	input.tool.name == "merge_pull_request"
	input.pull_request.unknown
}

production_devices contains device if {
	some device in input.tool.arguments.devices
	not is_lab_device(device)
}

is_lab_device(device) if {
	some prefix in lab_device_prefixes
	startswith(device, prefix)
}

has_mfa if "mfa" in input.identity.amr

deny_reasons contains "write and execute on production devices require MFA (amr must contain mfa)" if {
	input.action in {"write", "execute"}
	count(production_devices) > 0
	not has_mfa
}

deny_reasons contains sprintf("%s requested this change and cannot approve or reject it", [input.identity.subject]) if {
	input.tool.name in approval_tools
	input.change.requested_by == input.identity.subject
}

deny_reasons contains "deciding on a change requires MFA (amr must contain mfa)" if {
	input.tool.name in approval_tools
	not has_mfa
}

default allow := false

allow if {
	count(granting_groups) > 0
	count(deny_reasons) == 0
}

# Every reason a call is refused, so the caller learns all that is missing at once.
denials contains sprintf("no group of %s grants %s on %s", [input.identity.subject, input.action, input.resource]) if {
	count(granting_groups) == 0
}

denials contains why if some why in deny_reasons

reason := sprintf("allowed: group %s may %s on %s", [min(granting_groups), input.action, input.resource]) if allow

reason := concat("; ", sort(denials)) if not allow

decision := {"allow": allow, "reason": reason}
