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

test_nobody_approves_their_own_change if {
	carol := {"subject": "carol", "groups": ["change-approvers"], "amr": ["mfa"], "client_id": "c"}
	request := {
		"identity": carol,
		"resource": "servicenow",
		"action": "write",
		"tool": {"name": "approve_change", "arguments": {"requested_by": "carol"}},
		"context": {},
	}
	not authz.allow with input as request
	contains(authz.reason, "cannot approve") with input as request
}

test_decision_always_has_a_reason if {
	d := authz.decision with input as {"identity": {"subject": "x", "groups": [], "amr": []}, "resource": "servicenow", "action": "read", "tool": {"name": "t", "arguments": {}}}
	d.allow == false
	d.reason == "no group of x grants read on servicenow"
}
