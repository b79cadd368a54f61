//! Checks a request's parameters against a template's declared parameters and types.

use changeflow_workflows::results::TemplateParameter;
use std::collections::BTreeMap;

/// Longest parameter value accepted, as the tools state it.
const MAX_VALUE_LEN: usize = changeflow_workflows::limits::MAX_PARAMETER_VALUE;

/// Problems with `values` for a template declaring `template_params`; empty when fine.
pub fn parameter_problems(
    template_params: &[TemplateParameter],
    values: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let declared: Vec<&str> = template_params.iter().map(|p| p.name.as_str()).collect();
    for name in values.keys().filter(|k| !declared.contains(&k.as_str())) {
        problems.push(format!(
            "unknown parameter '{name}' (template takes: {})",
            declared.join(", ")
        ));
    }
    for param in template_params {
        let name = param.name.as_str();
        let data_type = param.data_type.as_str();
        let has_default = param.default.as_deref().is_some_and(|d| !d.is_empty());
        match values.get(name) {
            None if param.required && !has_default => {
                problems.push(format!("missing required parameter '{name}' ({data_type})"));
            }
            None => {}
            Some(value) if value.len() > MAX_VALUE_LEN => {
                problems.push(format!(
                    "parameter '{name}' is longer than {MAX_VALUE_LEN} characters"
                ));
            }
            Some(value) if !value_fits(data_type, value) => {
                problems.push(format!(
                    "parameter '{name}' must be {}, got '{value}'",
                    describe(data_type)
                ));
            }
            Some(_) => {}
        }
    }
    problems
}

fn value_fits(data_type: &str, value: &str) -> bool {
    let value = value.trim();
    match data_type {
        "INTEGER" => value.parse::<i64>().is_ok(),
        "IPADDRESS" => value.parse::<std::net::IpAddr>().is_ok(),
        "MACADDRESS" => is_mac(value),
        _ => true,
    }
}

fn is_mac(value: &str) -> bool {
    let hex_groups = |sep: char, groups: usize, len: usize| {
        let parts: Vec<&str> = value.split(sep).collect();
        parts.len() == groups
            && parts
                .iter()
                .all(|p| p.len() == len && p.chars().all(|c| c.is_ascii_hexdigit()))
    };
    hex_groups(':', 6, 2) || hex_groups('-', 6, 2) || hex_groups('.', 3, 4)
}

fn describe(data_type: &str) -> &'static str {
    match data_type {
        "INTEGER" => "an integer",
        "IPADDRESS" => "an IP address",
        "MACADDRESS" => "a MAC address",
        _ => "text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<TemplateParameter> {
        let param = |name: &str, data_type: &str, required: bool, default: Option<&str>| {
            TemplateParameter {
                name: name.into(),
                data_type: data_type.into(),
                required,
                default: default.map(str::to_string),
            }
        };
        vec![
            param("vlan_id", "INTEGER", true, None),
            param("gw", "IPADDRESS", true, None),
            param("mac", "MACADDRESS", false, None),
            param("tz", "STRING", true, Some("UTC")),
        ]
    }

    fn check(values: &[(&str, &str)], expected: &[&str]) {
        let values = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(parameter_problems(&params(), &values), expected);
    }

    #[test]
    fn parameters_are_checked_by_declared_type() {
        check(&[("vlan_id", "20"), ("gw", "10.0.0.1")], &[]);
        check(
            &[
                ("vlan_id", "20"),
                ("gw", "10.0.0.1"),
                ("mac", "00:1e:bd:01:02:03"),
            ],
            &[],
        );
        check(
            &[
                ("vlan_id", "20"),
                ("gw", "10.0.0.1"),
                ("mac", "001e.bd01.0203"),
            ],
            &[],
        );
        check(
            &[("vlan_id", "twenty"), ("gw", "10.0.0.1")],
            &["parameter 'vlan_id' must be an integer, got 'twenty'"],
        );
        check(
            &[("vlan_id", "1"), ("gw", "10.0.0.300")],
            &["parameter 'gw' must be an IP address, got '10.0.0.300'"],
        );
        check(
            &[
                ("vlan_id", "1"),
                ("gw", "::1"),
                ("mac", "zz:1e:bd:01:02:03"),
            ],
            &["parameter 'mac' must be a MAC address, got 'zz:1e:bd:01:02:03'"],
        );
        check(
            &[("gw", "10.0.0.1")],
            &["missing required parameter 'vlan_id' (INTEGER)"],
        );
        check(
            &[("vlan_id", "1"), ("gw", "10.0.0.1"), ("password", "x")],
            &["unknown parameter 'password' (template takes: vlan_id, gw, mac, tz)"],
        );
    }
}
