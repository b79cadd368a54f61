//! Every bound on a tool's arguments, named once. The derived JSON Schemas state them (clients
//! see them in `tools/list` and the OpenAPI document) and `Arguments::validate` enforces them:
//! the front door before anything starts, the workflow again on its own input.

/// Identifiers (template and device ids, hostnames, ticket numbers, change ids, idempotency
/// keys): 1 to `ID_MAX` characters of letters, digits and `._:-`.
pub const ID_MAX: usize = 128;
/// The same rule as a JSON Schema pattern.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";
/// Target devices of one change, so one request cannot fan out unboundedly.
pub const MAX_DEVICES: usize = 100;
/// Template parameters of one call, and the length of each value.
pub const MAX_PARAMETERS: usize = 50;
pub const MAX_PARAMETER_VALUE: usize = 1024;
/// One-line summaries (a ticket's short description).
pub const SHORT_TEXT_MAX: usize = 160;
/// Free texts (descriptions, notes, close notes).
pub const LONG_TEXT_MAX: usize = 4000;
/// Names used as filters (a Catalyst Center project).
pub const NAME_MAX: usize = 128;
/// A device family filter.
pub const FAMILY_MAX: usize = 64;
/// How long approvers may take, in seconds: default (7 days) and the largest the tool takes
/// (30 days; policy may allow less).
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 30 * 24 * 3600;
/// A Go duration of whole hours, minutes and seconds (`168h`, `1h30m`, `45s`): what Rego's
/// `time.parse_duration_ns` reads too.
pub const DURATION_PATTERN: &str = "^([0-9]{1,7}(h|m|s))+$";
/// Page size of list tools: default and largest.
pub const DEFAULT_LIST_LIMIT: u32 = 50;
pub const MAX_LIST_LIMIT: u32 = 200;

/// Read-only device commands: the first keywords allowed (a subset of Catalyst Center's
/// `legit-reads`), the longest command, and how many one call or check plan runs.
pub const READ_ONLY_KEYWORDS: &[&str] = &["show", "ping", "traceroute"];
pub const COMMAND_MAX: usize = 200;
pub const MAX_COMMANDS: usize = 10;
/// Devices one `run_show_commands` call reads.
pub const MAX_SHOW_DEVICES: usize = 20;
/// A read-only command as a JSON Schema pattern (`read_only_command` checks the same).
pub const COMMAND_PATTERN: &str = "^(show|ping|traceroute)( [^;\\n\\r]*)?$";

/// Checks that a device command is read-only: it starts with one of `READ_ONLY_KEYWORDS`, is
/// one line without `;`, and is at most `COMMAND_MAX` characters. Anything else (`configure
/// terminal`, `reload`, ...) is refused before it reaches Catalyst Center.
pub fn read_only_command(command: &str) -> Result<(), String> {
    let first = command.split(' ').next().unwrap_or_default();
    if !READ_ONLY_KEYWORDS.contains(&first) {
        return Err(format!(
            "\"{command}\" is not a read-only command: commands must start with {}",
            READ_ONLY_KEYWORDS.join(", ")
        ));
    }
    if command.chars().count() > COMMAND_MAX || command.contains([';', '\n', '\r']) {
        return Err(format!(
            "\"{command}\" must be one line of at most {COMMAND_MAX} characters without ';'"
        ));
    }
    Ok(())
}

/// A text with at least one non-blank character (what `text` checks beyond length).
pub const NOT_BLANK: &str = "\\S";

/// Checks an identifier against `ID_PATTERN`.
pub fn id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= ID_MAX
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1-{ID_MAX} characters of letters, digits, '.', '_', ':' or '-'"
        ))
    }
}

/// Checks an optional identifier.
pub fn optional_id(field: &str, value: Option<&str>) -> Result<(), String> {
    value.map_or(Ok(()), |v| id(field, v))
}

/// Checks a text: not blank, at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().count() > max {
        Err(format!("{field} must be 1 to {max} characters"))
    } else {
        Ok(())
    }
}

/// Checks an optional text.
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<(), String> {
    value.map_or(Ok(()), |v| text(field, v, max))
}

/// Checks a list tool's page size.
pub fn list_limit(limit: Option<u32>) -> Result<(), String> {
    match limit {
        Some(n) if !(1..=MAX_LIST_LIMIT).contains(&n) => {
            Err(format!("limit must be between 1 and {MAX_LIST_LIMIT}"))
        }
        _ => Ok(()),
    }
}

/// Checks template parameters: how many, and how long each value is.
pub fn parameters(parameters: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if parameters.len() > MAX_PARAMETERS
        || parameters
            .values()
            .any(|v| v.chars().count() > MAX_PARAMETER_VALUE)
    {
        Err(format!(
            "at most {MAX_PARAMETERS} parameters of at most {MAX_PARAMETER_VALUE} characters each"
        ))
    } else {
        Ok(())
    }
}

/// The JSON Schema of template parameters (a map of strings, bounded as above).
pub fn parameters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": MAX_PARAMETERS,
        "additionalProperties": {"type": "string", "maxLength": MAX_PARAMETER_VALUE},
        "description": "Template parameters by name (values as strings)"
    })
}

/// Seconds of a Go duration of whole hours, minutes and seconds (`DURATION_PATTERN`).
pub fn duration_secs(field: &str, text: &str) -> Result<u64, String> {
    let invalid = || format!("{field} must be a duration such as 168h, 36h, 90m or 1h30m");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        if number.is_empty() || number.len() > 7 {
            return Err(invalid());
        }
        let n: u64 = number.parse().map_err(|_| invalid())?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_line_read_only_commands_pass() {
        for ok in [
            "show version",
            "show running-config | include ntp",
            "ping 10.0.0.1",
            "traceroute 10.0.0.1",
            "show",
        ] {
            assert_eq!(read_only_command(ok), Ok(()), "{ok}");
        }
        for refused in [
            "configure terminal",
            "reload",
            "conf t",
            "show version; reload",
            "show version\nconfigure terminal",
            "shows",
            "",
            " show version",
        ] {
            assert!(read_only_command(refused).is_err(), "{refused:?}");
        }
        let long = format!("show {}", "x".repeat(COMMAND_MAX));
        assert!(read_only_command(&long).unwrap_err().contains("200"));
    }

    #[test]
    fn the_id_rule_and_its_pattern_agree() {
        let pattern = format!("^[A-Za-z0-9._:-]{{1,{ID_MAX}}}$");
        assert_eq!(pattern, ID_PATTERN);
        assert!(id("x", "sj-access-01").is_ok());
        assert!(id("x", "CHG0030001").is_ok());
        assert!(id("x", "a b").unwrap_err().contains("x must be"));
        assert!(id("x", "").is_err());
        assert!(id("x", &"a".repeat(ID_MAX + 1)).is_err());
        assert!(text("note", "  ", 10).is_err());
        assert!(text("note", "ok", 2).is_ok());
        assert!(text("note", "too long", 2).is_err());
        assert!(list_limit(Some(0)).is_err());
        assert!(list_limit(Some(MAX_LIST_LIMIT)).is_ok());
        assert!(list_limit(None).is_ok());
    }
}
