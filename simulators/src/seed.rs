//! Realistic seed data: ServiceNow users, Catalyst Center projects, templates and a dozen
//! devices across two sites (one unreachable). Ids are name-derived UUIDs, stable across runs.

use serde_json::{Value, json};

/// ServiceNow users: (user_name, name, email).
pub const USERS: &[(&str, &str, &str)] = &[
    ("alice", "Alice Network", "alice@example.com"),
    ("bob", "Bob Servicedesk", "bob@example.com"),
    ("carol", "Carol Approver", "carol@example.com"),
    ("dave", "Dave Developer", "dave@example.com"),
    ("admin", "System Administrator", "admin@example.com"),
];

/// Approval groups: (group name, the change type it approves, its members by user name).
/// Entering Authorize creates one approval record per member (never for the requester).
pub const APPROVAL_GROUPS: &[(&str, &str, &[&str])] = &[
    ("CAB Approval", "normal", &["carol"]),
    ("Emergency CAB", "emergency", &["carol", "admin"]),
];

/// A template parameter: (name, dataType, required, default).
pub type Param = (&'static str, &'static str, bool, &'static str);

pub struct SeedTemplate {
    pub name: &'static str,
    pub project: &'static str,
    pub language: &'static str,
    pub content: &'static str,
    pub params: &'static [Param],
    pub description: &'static str,
}

pub const PROJECTS: &[(&str, &str)] = &[
    (
        "Campus Baseline",
        "Day-N baseline configuration for campus switches",
    ),
    (
        "Branch Access",
        "Access-layer changes for branch and campus edge",
    ),
    (
        "Onboarding Configuration",
        "Day-0 templates used by Plug and Play",
    ),
];

pub const TEMPLATES: &[SeedTemplate] = &[
    SeedTemplate {
        name: "NTP Servers",
        project: "Campus Baseline",
        language: "VELOCITY",
        content: "ntp server $ntp_primary prefer\nntp server $ntp_secondary\nclock timezone $timezone 0\n",
        params: &[
            ("ntp_primary", "IPADDRESS", true, ""),
            ("ntp_secondary", "IPADDRESS", true, ""),
            ("timezone", "STRING", false, "UTC"),
        ],
        description: "Point devices at the corporate NTP servers",
    },
    SeedTemplate {
        name: "SNMP Community",
        project: "Campus Baseline",
        language: "VELOCITY",
        content: "snmp-server community ${community} RO\nsnmp-server location ${location}\nsnmp-server contact ${contact}\n",
        params: &[
            ("community", "STRING", true, ""),
            ("location", "STRING", true, ""),
            ("contact", "STRING", false, "noc@example.com"),
        ],
        description: "Read-only SNMP community and location",
    },
    SeedTemplate {
        name: "Access VLAN",
        project: "Branch Access",
        language: "JINJA",
        content: "vlan {{ vlan_id }}\n name {{ vlan_name }}\n!\ninterface {{ interface }}\n switchport mode access\n switchport access vlan {{ vlan_id }}\n",
        params: &[
            ("vlan_id", "INTEGER", true, ""),
            ("vlan_name", "STRING", true, ""),
            ("interface", "STRING", true, ""),
        ],
        description: "Create an access VLAN and assign it to an interface",
    },
    SeedTemplate {
        name: "Login Banner",
        project: "Branch Access",
        language: "JINJA",
        content: "banner motd ^{{ message }}^\n",
        params: &[("message", "STRING", true, "")],
        description: "Message of the day banner",
    },
    SeedTemplate {
        name: "NTP Servers Removal",
        project: "Campus Baseline",
        language: "VELOCITY",
        content: "no ntp server $ntp_primary\nno ntp server $ntp_secondary\nno clock timezone\n",
        params: &[
            ("ntp_primary", "IPADDRESS", true, ""),
            ("ntp_secondary", "IPADDRESS", true, ""),
            ("timezone", "STRING", false, "UTC"),
        ],
        description: "Back-out of NTP Servers: removes the servers and the timezone",
    },
    SeedTemplate {
        name: "SNMP Community Removal",
        project: "Campus Baseline",
        language: "VELOCITY",
        content: "no snmp-server community ${community}\nno snmp-server location\nno snmp-server contact\n",
        params: &[
            ("community", "STRING", true, ""),
            ("location", "STRING", true, ""),
            ("contact", "STRING", false, "noc@example.com"),
        ],
        description: "Back-out of SNMP Community",
    },
    SeedTemplate {
        name: "Access VLAN Removal",
        project: "Branch Access",
        language: "JINJA",
        content: "no vlan {{ vlan_id }}\ninterface {{ interface }}\n no switchport access vlan {{ vlan_id }}\n no switchport mode access\n",
        params: &[
            ("vlan_id", "INTEGER", true, ""),
            ("vlan_name", "STRING", true, ""),
            ("interface", "STRING", true, ""),
        ],
        description: "Back-out of Access VLAN: removes the VLAN and the port's access settings",
    },
    SeedTemplate {
        name: "Login Banner Removal",
        project: "Branch Access",
        language: "JINJA",
        content: "no banner motd\n",
        params: &[("message", "STRING", false, "")],
        description: "Back-out of Login Banner",
    },
    SeedTemplate {
        name: "Management Gateway",
        project: "Onboarding Configuration",
        language: "VELOCITY",
        content: "ip default-gateway $gateway\narp timeout 300\n! mgmt mac $mgmt_mac\n",
        params: &[
            ("gateway", "IPADDRESS", true, ""),
            ("mgmt_mac", "MACADDRESS", false, "00:00:00:00:00:00"),
        ],
        description: "Default gateway for the management plane",
    },
];

/// (hostname, ip, platform, family, series, role, site, reachable)
pub type SeedDevice = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

pub const DEVICES: &[SeedDevice] = &[
    (
        "sj-core-01",
        "10.10.0.1",
        "C9500-40X",
        "Switches and Hubs",
        "Cisco Catalyst 9500 Series Switches",
        "CORE",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "sj-core-02",
        "10.10.0.2",
        "C9500-40X",
        "Switches and Hubs",
        "Cisco Catalyst 9500 Series Switches",
        "CORE",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "sj-dist-01",
        "10.10.1.1",
        "C9400-SUP-1",
        "Switches and Hubs",
        "Cisco Catalyst 9400 Series Switches",
        "DISTRIBUTION",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "sj-access-01",
        "10.10.2.11",
        "C9300-48P",
        "Switches and Hubs",
        "Cisco Catalyst 9300 Series Switches",
        "ACCESS",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "sj-access-02",
        "10.10.2.12",
        "C9300-48P",
        "Switches and Hubs",
        "Cisco Catalyst 9300 Series Switches",
        "ACCESS",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "sj-wlc-01",
        "10.10.3.5",
        "C9800-40-K9",
        "Wireless Controller",
        "Cisco Catalyst 9800 Series Wireless Controllers",
        "ACCESS",
        "Global/US/San Jose/Building 1",
        true,
    ),
    (
        "lon-core-01",
        "10.20.0.1",
        "C9500-24Y4C",
        "Switches and Hubs",
        "Cisco Catalyst 9500 Series Switches",
        "CORE",
        "Global/UK/London/Floor 2",
        true,
    ),
    (
        "lon-dist-01",
        "10.20.1.1",
        "C9400-SUP-1",
        "Switches and Hubs",
        "Cisco Catalyst 9400 Series Switches",
        "DISTRIBUTION",
        "Global/UK/London/Floor 2",
        true,
    ),
    (
        "lon-access-01",
        "10.20.2.11",
        "C9200-48P",
        "Switches and Hubs",
        "Cisco Catalyst 9200 Series Switches",
        "ACCESS",
        "Global/UK/London/Floor 2",
        true,
    ),
    (
        "lon-access-02",
        "10.20.2.12",
        "C9200-48P",
        "Switches and Hubs",
        "Cisco Catalyst 9200 Series Switches",
        "ACCESS",
        "Global/UK/London/Floor 2",
        true,
    ),
    (
        "lon-access-03",
        "10.20.2.13",
        "C9200-48P",
        "Switches and Hubs",
        "Cisco Catalyst 9200 Series Switches",
        "ACCESS",
        "Global/UK/London/Floor 2",
        false,
    ),
    (
        "lon-rtr-01",
        "10.20.0.254",
        "ISR4451-X/K9",
        "Routers",
        "Cisco 4400 Series Integrated Services Routers",
        "BORDER ROUTER",
        "Global/UK/London/Floor 2",
        true,
    ),
];

/// Stable id derived from a kind and a name.
pub fn id(kind: &str, name: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("changeflow:{kind}:{name}").as_bytes(),
    )
    .to_string()
}

/// Epoch milliseconds the seed pretends things were created at (2026-01-15).
pub const SEED_EPOCH_MS: i64 = 1_768_435_200_000;

pub fn device_json(index: usize) -> Value {
    let (hostname, ip, platform, family, series, role, site, reachable) = DEVICES[index];
    let id = id("device", hostname);
    let serial = format!("FOC{:04}X{:03}", 2100 + index, index * 7);
    let mac = format!("00:1e:bd:{:02x}:{:02x}:{:02x}", index, index * 3, index * 5);
    json!({
        "id": id,
        "instanceUuid": id,
        "instanceTenantId": "5e8e896e4d4add00ca2b6487",
        "hostname": hostname,
        "managementIpAddress": ip,
        "platformId": platform,
        "softwareType": "IOS-XE",
        "softwareVersion": "17.9.4a",
        "reachabilityStatus": if reachable { "Reachable" } else { "Unreachable" },
        "reachabilityFailureReason": if reachable { "" } else { "SNMP Connectivity Failed" },
        "family": family,
        "type": format!("Cisco Catalyst {platform}"),
        "series": series,
        "role": role,
        "roleSource": "AUTO",
        "serialNumber": serial,
        "macAddress": mac,
        "upTime": "41 days, 3:12:45.00",
        "uptimeSeconds": 3_554_000 + index as i64 * 600,
        "lastUpdateTime": SEED_EPOCH_MS + 86_400_000,
        "lastUpdated": "2026-01-16 00:00:00",
        "collectionStatus": "Managed",
        "collectionInterval": "Global Default",
        "managementState": "Managed",
        "snmpLocation": site,
        "snmpContact": "noc@example.com",
        "location": null,
        "locationName": null,
        "description": format!("Cisco IOS Software [Cupertino], {platform}"),
        "interfaceCount": "0",
        "lineCardCount": "0",
        "lineCardId": "",
        "memorySize": "NA",
        "tagCount": "0",
        "tunnelUdpPort": null,
        "waasDeviceMode": null,
        "apManagerInterfaceIp": "",
        "associatedWlcIp": "",
        "bootDateTime": "2025-12-05 20:47:00",
        "errorCode": null,
        "errorDescription": null,
        "inventoryStatusDetail": "<status><general code=\"SUCCESS\"/></status>",
        "dnsResolvedManagementAddress": ip,
        "pendingSyncRequestsCount": "0",
        "reasonsForDeviceResync": "Periodic",
        "reasonsForPendingSyncRequests": "",
        "syncRequestedByApp": "",
        "vendor": "Cisco",
        "deviceSupportLevel": "Supported",
        "managedAtleastOnce": true,
    })
}

/// GitHub users: (login, name). The people of the dev identities, the integration's service
/// account and the organisation that owns the templates repository.
pub const GITHUB_USERS: &[(&str, &str)] = &[
    ("alice", "Alice Network"),
    ("bob", "Bob Servicedesk"),
    ("carol", "Carol Approver"),
    ("dave", "Dave Developer"),
    ("erin", "Erin Auditor"),
    ("admin", "System Administrator"),
    ("changeflow", "changeflow integration"),
    ("netops", "Network Operations"),
];

/// The organisation repository of network templates.
pub const TEMPLATES_REPOSITORY: &str = "netops/templates";

/// Seeds `netops/templates`: a README and the Velocity templates Catalyst Center also has,
/// committed by the organisation.
pub fn github(github: &crate::github::GitHub) {
    let template = |name: &str| {
        TEMPLATES
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.content.as_bytes())
            .unwrap_or_default()
    };
    github.create_repo(
        TEMPLATES_REPOSITORY,
        "Network configuration templates, reviewed in pull requests",
        "netops",
        &[
            (
                "README.md",
                b"# Network templates\n\nVelocity templates deployed through changeflow. Change them in a pull request; a change deploys a reviewed commit of the default branch.\n",
            ),
            ("ntp/ntp-servers.vtl", template("NTP Servers")),
            ("ntp/ntp-servers-removal.vtl", template("NTP Servers Removal")),
            ("snmp/snmp-community.vtl", template("SNMP Community")),
            ("banner/motd.j2", template("Login Banner")),
            ("vlan/access-vlan.vtl", template("Access VLAN")),
        ],
    );
}
