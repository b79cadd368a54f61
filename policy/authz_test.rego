# Rego unit tests of the authorization policy, run by `make test` through regorus
# (every rule named test_* must be true).
package changeflow.authz_test

import data.changeflow.authz

alice := {"subject": "alice", "groups": ["network-engineers"], "amr": ["pwd", "mfa"], "client_id": "c"}

deploy(identity, devices) := {
	"identity": identity,
	"resource": "catalyst-center",
	"action": "execute",
	"tool": {"name": "deploy_template", "arguments": {"devices": devices}},
	"context": {},
}

test_network_engineer_with_mfa_deploys if {
	authz.allow with input as deploy(alice, ["sj-access-01"])
}

test_network_engineer_without_mfa_cannot_touch_production if {
	no_mfa := object.union(alice, {"amr": ["pwd"]})
	not authz.allow with input as deploy(no_mfa, ["sj-access-01"])
}

test_lab_devices_need_no_mfa if {
	no_mfa := object.union(alice, {"amr": ["pwd"]})
	authz.allow with input as deploy(no_mfa, ["lab-switch-1"])
}

test_service_desk_cannot_deploy if {
	bob := {"subject": "bob", "groups": ["service-desk"], "amr": ["mfa"], "client_id": "c"}
	not authz.allow with input as deploy(bob, ["sj-access-01"])
}

carol := {"subject": "carol", "groups": ["change-approvers"], "amr": ["pwd", "mfa"], "client_id": "c"}

decide(identity, tool, requester) := {
	"identity": identity,
	"resource": "approvals",
	"action": "write",
	"tool": {"name": tool, "arguments": {"change_id": "change-1", "comment": "ok"}},
	"context": {},
	"change": {"requested_by": requester},
}

test_approver_decides_on_somebody_elses_change if {
	authz.allow with input as decide(carol, "approve_change", "alice")
	authz.allow with input as decide(carol, "reject_change", "alice")
}

test_nobody_approves_their_own_change if {
	request := decide(carol, "approve_change", "carol")
	not authz.allow with input as request
	contains(authz.reason, "cannot approve") with input as request
	not authz.allow with input as decide(carol, "reject_change", "carol")
}

test_deciding_requires_mfa if {
	no_mfa := object.union(carol, {"amr": ["pwd"]})
	request := decide(no_mfa, "approve_change", "alice")
	not authz.allow with input as request
	contains(authz.reason, "MFA") with input as request
}

test_only_approvers_decide if {
	bob := {"subject": "bob", "groups": ["service-desk"], "amr": ["mfa"], "client_id": "c"}
	not authz.allow with input as decide(bob, "approve_change", "alice")
	not authz.allow with input as decide(alice, "approve_change", "dave")
}

ntp := "4b45b32b-3c7b-5f23-b5d2-0cff8e17d75f"

snmp := "25ae5716-a1eb-53cd-a078-16e3ce577a45"

# Wednesday 2026-11-25 10:00 UTC.
wednesday := 1795600800

change(arguments, roles) := {
	"identity": alice,
	"resource": "catalyst-center",
	"action": "execute",
	"tool": {"name": "deploy_template", "arguments": object.union({"devices": [d | some d, _ in roles]}, arguments)},
	"context": {"time": wednesday},
	"devices": [{"hostname": d, "role": r, "family": "Switches and Hubs"} | some d, r in roles],
}

test_standard_change_for_a_pre_approved_template if {
	authz.allow with input as change({"template_id": ntp, "change_type": "standard"}, {"sj-access-01": "ACCESS"})
}

test_standard_change_for_another_template_names_the_rule if {
	request := change({"template_id": snmp, "change_type": "standard"}, {"sj-access-01": "ACCESS"})
	not authz.allow with input as request
	contains(authz.reason, "rule standard_templates") with input as request
	authz.allow with input as change({"template_id": snmp}, {"sj-access-01": "ACCESS"})
}

friday_evening := {"window_start": "2026-11-27T18:00:00Z", "window_end": "2026-11-27T20:00:00Z"}

test_no_normal_changes_on_core_devices_in_the_weekend_freeze if {
	request := change(object.union({"template_id": snmp}, friday_evening), {"sj-core-01": "CORE"})
	not authz.allow with input as request
	contains(authz.reason, "rule blackouts (core weekend freeze)") with input as request
	contains(authz.reason, "sj-core-01") with input as request
}

test_blackout_spares_access_devices_and_emergencies if {
	authz.allow with input as change(object.union({"template_id": snmp}, friday_evening), {"sj-access-01": "ACCESS"})
	emergency := object.union(friday_evening, {"template_id": snmp, "change_type": "emergency", "justification": "outage"})
	authz.allow with input as change(emergency, {"sj-core-01": "CORE"})
}

test_blackout_edges if {
	before := {"template_id": snmp, "window_start": "2026-11-27T14:00:00Z", "window_end": "2026-11-27T16:00:00Z"}
	authz.allow with input as change(before, {"sj-core-01": "CORE"})
	monday := {"template_id": snmp, "window_start": "2026-11-30T06:00:00Z", "window_end": "2026-11-30T08:00:00Z"}
	authz.allow with input as change(monday, {"sj-core-01": "CORE"})
	sunday := {"template_id": snmp, "window_start": "2026-11-29T23:00:00Z", "window_end": "2026-11-30T01:00:00Z"}
	not authz.allow with input as change(sunday, {"sj-core-01": "CORE"})
	spanning := {"template_id": snmp, "window_start": "2026-11-26T08:00:00Z", "window_end": "2026-12-01T08:00:00Z"}
	not authz.allow with input as change(spanning, {"sj-core-01": "CORE"})
}

test_without_a_window_the_request_time_is_judged if {
	saturday := object.union(change({"template_id": snmp}, {"sj-core-01": "CORE"}), {"context": {"time": 1795860000}})
	not authz.allow with input as saturday
	authz.allow with input as change({"template_id": snmp}, {"sj-core-01": "CORE"})
}

test_unknown_devices_count_as_core if {
	not authz.allow with input as change(object.union({"template_id": snmp}, friday_evening), {"sj-x": "UNKNOWN"})
}

test_approval_timeout_is_limited if {
	authz.allow with input as change({"template_id": snmp, "approval_timeout": "336h"}, {"sj-access-01": "ACCESS"})
	request := change({"template_id": snmp, "approval_timeout": "500h"}, {"sj-access-01": "ACCESS"})
	not authz.allow with input as request
	contains(authz.reason, "rule max_approval_timeout_hours") with input as request
}

gateway := "1277ee45-45fa-5050-b162-56fc413e7e83"

with_backout(request, backout) := object.union(request, {"change": {"backout": backout}})

test_normal_changes_on_production_devices_need_a_backout if {
	request := with_backout(change({"template_id": gateway}, {"sj-core-01": "CORE", "sj-access-01": "ACCESS"}), null)
	not authz.allow with input as request
	contains(authz.reason, "rule backout_required") with input as request
	contains(authz.reason, "(sj-core-01)") with input as request
	named := {"template_id": "b", "source": "request"}
	authz.allow with input as with_backout(change({"template_id": gateway}, {"sj-core-01": "CORE"}), named)
	authz.allow with input as with_backout(change({"template_id": gateway}, {"sj-access-01": "ACCESS"}), null)
	emergency := {"template_id": gateway, "change_type": "emergency", "justification": "outage"}
	authz.allow with input as with_backout(change(emergency, {"sj-core-01": "CORE"}), null)
	not authz.allow with input as with_backout(change({"template_id": gateway}, {"sj-x": "UNKNOWN"}), null)
}

show_commands(identity) := {
	"identity": identity,
	"resource": "catalyst-center",
	"action": "read",
	"tool": {"name": "run_show_commands", "arguments": {"devices": ["sj-core-01"], "commands": ["show version"]}},
	"context": {},
}

test_engineers_and_the_service_desk_run_show_commands if {
	authz.allow with input as show_commands(alice)
	authz.allow with input as show_commands({"subject": "bob", "groups": ["service-desk"], "amr": ["pwd"], "client_id": "c"})
	not authz.allow with input as show_commands(carol)
}

erin := {"subject": "erin", "groups": ["auditors"], "amr": ["pwd", "mfa"], "client_id": "c"}

call(identity, resource, action, tool) := {
	"identity": identity,
	"resource": resource,
	"action": action,
	"tool": {"name": tool, "arguments": {}},
	"context": {},
}

test_auditors_read_changes_and_the_audit_log_and_nothing_else if {
	authz.allow with input as call(erin, "audit", "read", "search_audit")
	authz.allow with input as call(erin, "audit", "read", "verify_audit_chain")
	authz.allow with input as call(erin, "changes", "read", "get_change_history")
	not authz.allow with input as deploy(erin, ["sj-access-01"])
	not authz.allow with input as call(erin, "changes", "write", "cancel_change")
	not authz.allow with input as decide(erin, "approve_change", "alice")
	not authz.allow with input as call(erin, "catalyst-center", "read", "run_show_commands")
	not authz.allow with input as call(alice, "audit", "read", "search_audit")
	not authz.allow with input as call(carol, "audit", "read", "search_audit")
}

test_decision_always_has_a_reason if {
	d := authz.decision with input as {"identity": {"subject": "x", "groups": [], "amr": []}, "resource": "servicenow", "action": "read", "tool": {"name": "t", "arguments": {}}}
	d.allow == false
	d.reason == "no group of x grants read on servicenow"
}

dave := {"subject": "dave", "groups": ["developers"], "amr": ["pwd"], "client_id": "c"}

github(identity, tool, action, arguments) := {
	"identity": identity,
	"resource": "github",
	"action": action,
	"tool": {"name": tool, "arguments": object.union({"owner": "netops", "repo": "templates"}, arguments)},
	"context": {},
}

test_developers_use_github_engineers_read_and_open_pull_requests_on_templates if {
	authz.allow with input as github(dave, "create_or_update_file", "write", {})
	authz.allow with input as github(alice, "get_file_contents", "read", {})
	authz.allow with input as github(alice, "create_pull_request", "write", {})
	authz.allow with input as github(alice, "pull_request_review_write", "write", {})
	not authz.allow with input as github(alice, "create_pull_request", "write", {"repo": "other"})
	not authz.allow with input as github(alice, "merge_pull_request", "write", {})
	not authz.allow with input as github(alice, "create_or_update_file", "write", {})
	bob := {"subject": "bob", "groups": ["service-desk"], "amr": ["mfa"], "client_id": "c"}
	not authz.allow with input as github(bob, "get_file_contents", "read", {})
}

merge(facts) := object.union(github(dave, "merge_pull_request", "write", {"pullNumber": 3}), {"pull_request": facts})

test_merges_into_the_default_branch_need_another_persons_approval if {
	pr := {"number": 3, "author": "dave", "base": "main", "default_branch": "main", "merged": false}
	authz.allow with input as merge(object.union(pr, {"approvers": ["alice"]}))
	unapproved := merge(object.union(pr, {"approvers": []}))
	not authz.allow with input as unapproved
	contains(authz.reason, "rule reviewed_merges") with input as unapproved
	not authz.allow with input as merge(object.union(pr, {"approvers": ["dave"]}))
	authz.allow with input as merge(object.union(pr, {"base": "feature", "approvers": []}))
	not authz.allow with input as merge({"unknown": "GitHub unreachable"})
}

source(facts) := object.union(
	change({"source": {"repository": "netops/templates", "path": "ntp/ntp-servers.vtl"}}, {"sj-access-01": "ACCESS"}),
	{"source": facts},
)

reviewed := {
	"commit_sha": "c0ffee", "requested_ref": "main", "default_branch": "main", "on_default_branch": true,
	"pull_request": {"number": 3, "author": "dave", "approvers": ["alice"]},
}

test_templates_from_git_on_production_devices_must_be_reviewed if {
	authz.allow with input as source(reviewed)
	branch := source(object.union(object.remove(reviewed, ["pull_request"]), {"requested_ref": "feature", "on_default_branch": false}))
	not authz.allow with input as branch
	contains(authz.reason, "rule reviewed_templates") with input as branch
	contains(authz.reason, "not the default branch") with input as branch
	not authz.allow with input as source(object.union(reviewed, {"pull_request": {"number": 3, "author": "dave", "approvers": []}}))
	not authz.allow with input as source({"unresolved": "no branch"})
	lab := object.union(change({"source": {"repository": "netops/templates", "path": "ntp/ntp-servers.vtl"}}, {"lab-switch-1": "ACCESS"}), {"source": {"unresolved": "x"}})
	authz.allow with input as lab
	standard := object.union(change({"change_type": "standard", "source": {"repository": "netops/templates", "path": "ntp/ntp-servers.vtl"}}, {"sj-access-01": "ACCESS"}), {"source": reviewed})
	authz.allow with input as standard
}
