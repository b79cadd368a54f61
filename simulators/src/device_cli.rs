//! What a simulated device answers on its CLI: a running configuration built from a stable base
//! plus every line deployed to it (IOS `no ...` lines remove what they negate), and plausible,
//! stable IOS-XE output for `show version`, `show interfaces status`, `show ntp associations`,
//! `ping` and `traceroute`, with the `| include`, `| exclude`, `| begin` and `| section` filters.

use serde_json::Value;

/// The first keywords Command Runner accepts (`legit-reads`); anything else is `BLACKLISTED`.
pub const LEGIT_READS: &[&str] = &[
    "cat",
    "dir",
    "more",
    "ping",
    "sh",
    "show",
    "traceroute",
    "verify",
    "whoami",
];

/// Whether Command Runner would run `command` at all.
pub fn is_legit_read(command: &str) -> bool {
    command
        .split_whitespace()
        .next()
        .is_some_and(|first| LEGIT_READS.contains(&first.to_ascii_lowercase().as_str()))
}

/// The ports every simulated device has: (port, description, connected, vlan).
const PORTS: &[(&str, &str, bool, &str)] = &[
    ("Gi1/0/1", "uplink-core", true, "trunk"),
    ("Gi1/0/2", "uplink-peer", true, "trunk"),
    ("Gi1/0/3", "", false, "1"),
    ("Gi1/0/4", "ap-floor1", true, "10"),
];

/// The port an unhealthy change takes down.
pub const FAILING_PORT: &str = "Gi1/0/2";

/// The configuration a device starts with.
pub fn base_config(device: &Value) -> Vec<String> {
    let hostname = device["hostname"].as_str().unwrap_or("switch");
    let mut lines: Vec<String> = [
        "version 17.9",
        "service timestamps debug datetime msec",
        "service timestamps log datetime msec",
        "no service pad",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    lines.push(format!("hostname {hostname}"));
    lines.extend(
        ["ip domain name example.com", "logging host 10.0.0.50"]
            .iter()
            .map(|s| s.to_string()),
    );
    for (port, description, _, vlan) in PORTS {
        lines.push(format!("interface {}", long_port(port)));
        if !description.is_empty() {
            lines.push(format!(" description {description}"));
        }
        if *vlan == "trunk" {
            lines.push(" switchport mode trunk".into());
        }
    }
    lines.extend(
        ["line vty 0 4", " transport input ssh"]
            .iter()
            .map(|s| s.to_string()),
    );
    lines
}

fn long_port(port: &str) -> String {
    port.replacen("Gi", "GigabitEthernet", 1)
}

/// Applies rendered configuration to `config`: a `no X` line removes the lines starting with
/// `X` (a top-level one with its indented children); any other line is added unless present.
pub fn apply(config: &mut Vec<String>, rendered: &str) {
    for line in rendered.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('!') {
            continue;
        }
        if let Some(negated) = trimmed.strip_prefix("no ") {
            let mut kept = Vec::with_capacity(config.len());
            let mut dropping_children = false;
            for existing in config.drain(..) {
                let top = !existing.starts_with(' ');
                if top {
                    dropping_children = false;
                }
                if dropping_children {
                    continue;
                }
                if existing.trim().starts_with(negated) {
                    dropping_children = top;
                    continue;
                }
                kept.push(existing);
            }
            *config = kept;
        } else if !config.iter().any(|l| l == line.trim_end()) {
            config.push(line.trim_end().to_string());
        }
    }
}

/// How a device stands when a command runs on it.
pub struct DeviceView<'a> {
    pub device: &'a Value,
    pub config: &'a [String],
    /// The change on it left `FAILING_PORT` down.
    pub unhealthy: bool,
}

/// Runs one read-only command: the output, or the device's error text.
pub fn run(view: &DeviceView, command: &str) -> Result<String, String> {
    let mut parts = command.splitn(2, '|');
    let base = parts.next().unwrap_or_default().trim();
    let output = output(view, base)?;
    match parts.next() {
        None => Ok(output),
        Some(filter) => pipe(&output, filter.trim()),
    }
}

fn output(view: &DeviceView, command: &str) -> Result<String, String> {
    let words: Vec<String> = command
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["show" | "sh", "running-config" | "run"] => Ok(running_config(view)),
        ["show" | "sh", "version" | "ver"] => Ok(version(view.device)),
        ["show" | "sh", "interfaces" | "int", "status"] => Ok(interfaces_status(view)),
        ["show" | "sh", "ntp", "associations"] => Ok(ntp_associations(view.config)),
        ["ping", target] => Ok(format!(
            "Type escape sequence to abort.\nSending 5, 100-byte ICMP Echos to {target}, timeout is 2 seconds:\n!!!!!\nSuccess rate is 100 percent (5/5), round-trip min/avg/max = 1/1/2 ms\n"
        )),
        ["traceroute", target] => Ok(format!(
            "Type escape sequence to abort.\nTracing the route to {target}\nVRF info: (vrf in name/id, vrf out name/id)\n  1 10.10.0.1 1 msec 1 msec 1 msec\n  2 {target} 2 msec 1 msec 2 msec\n"
        )),
        _ => Err(format!(
            "{command}\n{}^\n% Invalid input detected at '^' marker.\n",
            " ".repeat(command.len().min(2))
        )),
    }
}

fn pipe(output: &str, filter: &str) -> Result<String, String> {
    let (kind, pattern) = filter.split_once(' ').unwrap_or((filter, ""));
    let pattern = pattern.trim();
    let matcher = regex::Regex::new(pattern).map_err(|_| {
        format!(
            "% Invalid regular expression '{pattern}'\n% Invalid input detected at '^' marker.\n"
        )
    })?;
    let lines: Vec<&str> = output.lines().collect();
    let kept: Vec<&str> = match kind {
        "include" | "i" | "inc" => lines.into_iter().filter(|l| matcher.is_match(l)).collect(),
        "exclude" | "e" | "exc" => lines.into_iter().filter(|l| !matcher.is_match(l)).collect(),
        "begin" | "b" => lines
            .into_iter()
            .skip_while(|l| !matcher.is_match(l))
            .collect(),
        "section" | "s" | "sec" => {
            let mut kept = Vec::new();
            let mut inside = false;
            for line in lines {
                if !line.starts_with(' ') {
                    inside = matcher.is_match(line);
                }
                if inside || matcher.is_match(line) {
                    kept.push(line);
                }
            }
            kept
        }
        _ => {
            return Err(format!(
                "% Invalid input detected at '^' marker: | {filter}\n"
            ));
        }
    };
    Ok(kept.iter().map(|l| format!("{l}\n")).collect())
}

fn running_config(view: &DeviceView) -> String {
    let body: String = view.config.iter().map(|l| format!("{l}\n")).collect();
    format!(
        "Building configuration...\n\nCurrent configuration : {} bytes\n!\n{body}!\nend\n",
        body.len()
    )
}

fn version(device: &Value) -> String {
    let text = |field: &str| device[field].as_str().unwrap_or_default().to_string();
    format!(
        "Cisco IOS XE Software, Version {v}\n\
         Cisco IOS Software [Cupertino], Catalyst L3 Switch Software (CAT9K_IOSXE), Version {v}, RELEASE SOFTWARE (fc3)\n\
         Technical Support: http://www.cisco.com/techsupport\n\
         Copyright (c) 1986-2024 by Cisco Systems, Inc.\n\n\
         ROM: IOS-XE ROMMON\n\
         {host} uptime is {uptime}\n\
         System returned to ROM by Reload Command\n\
         System image file is \"flash:packages.conf\"\n\n\
         cisco {platform} (X86) processor with 1863374K/6147K bytes of memory.\n\
         Processor board ID {serial}\n\
         Configuration register is 0x102\n",
        v = text("softwareVersion"),
        host = text("hostname"),
        uptime = text("upTime"),
        platform = text("platformId"),
        serial = text("serialNumber"),
    )
}

fn interfaces_status(view: &DeviceView) -> String {
    let mut out = String::from(
        "Port         Name               Status       Vlan       Duplex  Speed Type\n",
    );
    for (port, name, connected, vlan) in PORTS {
        let up = *connected && !(view.unhealthy && *port == FAILING_PORT);
        let (status, duplex, speed) = if up {
            ("connected", "a-full", "a-1000")
        } else {
            ("notconnect", "auto", "auto")
        };
        out.push_str(&format!(
            "{port:<12} {name:<18} {status:<12} {vlan:<10} {duplex:>6} {speed:>6} 10/100/1000BaseTX\n"
        ));
    }
    out
}

fn ntp_associations(config: &[String]) -> String {
    let servers: Vec<&str> = config
        .iter()
        .filter_map(|l| l.strip_prefix("ntp server "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    if servers.is_empty() {
        return "%NTP is not enabled.\n".into();
    }
    let mut out = String::from(
        "  address         ref clock       st   when   poll reach  delay  offset   disp\n",
    );
    for (i, server) in servers.iter().enumerate() {
        let mark = if i == 0 { '*' } else { '+' };
        out.push_str(&format!(
            "{mark}~{server:<15} .GPS.            1     {:>2}     64   377  1.{:03}   0.05{i}   0.936\n",
            12 + i * 9,
            204 + i * 73
        ));
    }
    out.push_str(" * sys.peer, # selected, + candidate, - outlyer, x falseticker, ~ configured\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device() -> Value {
        json!({"hostname": "sw1", "softwareVersion": "17.9.4a", "platformId": "C9300-48U",
               "serialNumber": "FOC1", "upTime": "41 days"})
    }

    #[test]
    fn deployed_lines_appear_and_negations_remove_them() {
        let mut config = base_config(&device());
        let base = config.clone();
        apply(
            &mut config,
            "ntp server 10.0.0.1 prefer\nntp server 10.0.0.2\n!\nvlan 20\n name voice\n",
        );
        assert!(config.contains(&"ntp server 10.0.0.1 prefer".to_string()));
        assert!(config.contains(&" name voice".to_string()));
        apply(&mut config, "ntp server 10.0.0.2\n");
        assert_eq!(
            config
                .iter()
                .filter(|l| *l == "ntp server 10.0.0.2")
                .count(),
            1,
            "a present line is not added twice"
        );
        apply(
            &mut config,
            "no ntp server 10.0.0.1\nno ntp server 10.0.0.2\nno vlan 20\n",
        );
        assert_eq!(config, base, "the negations restore the base");
    }

    #[test]
    fn commands_filters_and_errors() {
        let mut config = base_config(&device());
        apply(&mut config, "ntp server 10.0.0.1 prefer\n");
        let view = DeviceView {
            device: &device(),
            config: &config,
            unhealthy: false,
        };
        let ntp = run(&view, "show running-config | include ntp").unwrap();
        assert_eq!(ntp, "ntp server 10.0.0.1 prefer\n");
        assert!(
            run(&view, "show ntp associations")
                .unwrap()
                .contains("*~10.0.0.1")
        );
        assert!(run(&view, "show version").unwrap().contains("FOC1"));
        assert!(
            run(&view, "show interfaces status")
                .unwrap()
                .contains("Gi1/0/2      uplink-peer        connected")
        );
        let sick = DeviceView {
            unhealthy: true,
            ..view
        };
        assert!(
            run(&sick, "show interfaces status")
                .unwrap()
                .contains("Gi1/0/2      uplink-peer        notconnect")
        );
        assert!(
            run(&sick, "show bogus")
                .unwrap_err()
                .contains("Invalid input")
        );
        assert!(
            run(
                &sick,
                "show running-config | section interface GigabitEthernet1/0/1"
            )
            .unwrap()
            .contains(" description uplink-core")
        );
        assert!(is_legit_read("show version") && is_legit_read("PING 10.0.0.1"));
        assert!(!is_legit_read("configure terminal") && !is_legit_read(""));
    }
}
