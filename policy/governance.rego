# Change governance (Rego v1), part of package changeflow.authz: which templates may run as
# standard changes, the blackout periods, how long approvers may be given, and which changes
# must be able to back out. Edit the data
# here; the rules below read it. Every refusal names its rule.
package changeflow.authz

# Templates pre-approved for standard changes (no approval), by Catalyst Center template id,
# or for templates from Git by "repository:path" (their text must also be reviewed: see
# reviewed_templates).
# rule: standard_templates
standard_templates := {
	"4b45b32b-3c7b-5f23-b5d2-0cff8e17d75f": "NTP Servers",
	"982a9a61-2390-58ef-88b8-a6a7c0b27c3e": "Login Banner",
	"netops/templates:ntp/ntp-servers.vtl": "NTP Servers (Git)",
}

# Change types whose templates from Git must be reviewed text when they touch production
# devices (every device but the lab's, as for MFA in authz.rego): a commit of the default branch, merged through a pull request approved by someone
# other than its author. Emergency changes are exempt.
# rule: reviewed_templates
reviewed_template_change_types := {"normal", "standard"}

# Weekly blackout periods (UTC). Days: 0 Monday ... 6 Sunday. A change is refused when its
# window (or, without a window, the moment it is requested) overlaps a blackout, one of its
# devices has one of the roles, and its type is listed. Devices Catalyst Center did not
# describe have role UNKNOWN and count as core: the rule fails safe.
blackouts := [{
	"name": "core weekend freeze",
	"from_day": 4, "from_minute": 960, # Friday 16:00
	"to_day": 0, "to_minute": 360, # Monday 06:00
	"roles": {"CORE", "UNKNOWN"},
	"change_types": {"normal", "standard"},
}]

# Device roles that count as production: a normal change touching one needs a back-out plan,
# the request's `backout` or its template's inverse declared in verification.toml (the front
# door says which in input.change.backout, null when there is none). UNKNOWN fails safe.
# rule: backout_required
production_roles := {"CORE", "DISTRIBUTION", "BORDER ROUTER", "UNKNOWN"}

# The longest approval timeout a request may ask for, in hours (the tool allows up to 720).
# rule: max_approval_timeout_hours
max_approval_timeout_hours := 336

week_minutes := 10080

weekday_index := {"Monday": 0, "Tuesday": 1, "Wednesday": 2, "Thursday": 3, "Friday": 4, "Saturday": 5, "Sunday": 6}

deploy_arguments := input.tool.arguments if input.tool.name == "deploy_template"

requested_type := object.get(deploy_arguments, "change_type", "normal")

# The template's name in standard_templates and verification.toml.
template_key := deploy_arguments.template_id if deploy_arguments.template_id

template_key := sprintf("%s:%s", [deploy_arguments.source.repository, deploy_arguments.source.path]) if deploy_arguments.source

deny_reasons contains sprintf("rule standard_templates: template %s is not pre-approved for standard changes; request a normal change", [template_key]) if {
	requested_type == "standard"
	not standard_templates[template_key]
}

# Why a template from Git is not reviewed text (several may hold).
source_problems contains sprintf("its source could not be resolved (%s)", [input.source.unresolved]) if input.source.unresolved

source_problems contains sprintf("ref %s is not the default branch %s (commit %s)", [input.source.requested_ref, input.source.default_branch, input.source.commit_sha]) if {
	input.source.commit_sha
	not input.source.on_default_branch
}

source_problems contains sprintf("commit %s was not merged through a pull request", [input.source.commit_sha]) if {
	input.source.commit_sha
	not input.source.pull_request
}

source_problems contains sprintf("pull request #%d has no approving review by someone other than its author %s", [pr.number, pr.author]) if {
	pr := input.source.pull_request
	count({a | some a in pr.approvers; a != pr.author}) == 0
}

deny_reasons contains sprintf("rule reviewed_templates: a %s change on production devices (%s) deploys a template from Git only from reviewed text, and %s %s: %s", [requested_type, concat(", ", sort(hit)), deploy_arguments.source.repository, deploy_arguments.source.path, concat("; ", sort(source_problems))]) if {
	deploy_arguments.source
	requested_type in reviewed_template_change_types
	hit := production_devices
	count(hit) > 0
	count(source_problems) > 0
}

deny_reasons contains sprintf("rule max_approval_timeout_hours: approval_timeout may be at most %dh", [max_approval_timeout_hours]) if {
	time.parse_duration_ns(deploy_arguments.approval_timeout) > ((max_approval_timeout_hours * 3600) * 1000000000)
}

# The requested window in nanoseconds, or the moment of the request.
window_ns := [time.parse_rfc3339_ns(deploy_arguments.window_start), time.parse_rfc3339_ns(deploy_arguments.window_end)] if {
	deploy_arguments.window_start
	deploy_arguments.window_end
}

window_ns := [now, now + 60000000000] if {
	deploy_arguments
	not deploy_arguments.window_start
	now := input.context.time * 1000000000
}

minute_of_week(ns) := ((weekday_index[time.weekday(ns)] * 24 + clock[0]) * 60) + clock[1] if {
	clock := time.clock(ns)
}

overlaps(window, b) if {
	ceil((window[1] - window[0]) / 60000000000) >= week_minutes
}

overlaps(window, b) if {
	duration := ceil((window[1] - window[0]) / 60000000000)
	start := minute_of_week(window[0])
	begin := (b.from_day * 1440) + b.from_minute
	length := (((b.to_day * 1440) + b.to_minute) - begin + week_minutes) % week_minutes
	some k in [-1, 0, 1]
	shifted := begin + (k * week_minutes)
	start < shifted + length
	shifted < start + duration
}

deny_reasons contains sprintf("rule blackouts (%s): no %s changes on %s devices (%s) during the blackout; choose another window (emergency changes are exempt)", [b.name, requested_type, concat("/", sort([r | some r in b.roles])), concat(", ", sort(hit))]) if {
	some b in blackouts
	requested_type in b.change_types
	hit := {d.hostname | some d in input.devices; d.role in b.roles}
	count(hit) > 0
	overlaps(window_ns, b)
}

deny_reasons contains sprintf("rule backout_required: a normal change on production devices (%s) needs a back-out plan: name one in backout, or use a template whose inverse verification.toml declares", [concat(", ", sort(hit))]) if {
	requested_type == "normal"
	input.change
	object.get(input.change, "backout", null) == null
	hit := {d.hostname | some d in input.devices; d.role in production_roles}
	count(hit) > 0
}
