//! The simulators' development credentials. They are published on purpose (printed by
//! `changeflow dev`, written to endpoints.json): they open nothing but a local simulator.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevCredentials {
    pub servicenow_username: String,
    pub servicenow_password: String,
    pub servicenow_client_id: String,
    pub servicenow_client_secret: String,
    pub catalyst_username: String,
    pub catalyst_password: String,
    /// The password of every seeded person (alice, bob, carol, ...) for Basic auth, so an
    /// approver can act in ServiceNow itself (pysnc, the Table API) as they would in its UI.
    pub servicenow_people_password: String,
}

impl Default for DevCredentials {
    fn default() -> Self {
        Self {
            servicenow_username: "changeflow.integration".into(),
            servicenow_password: "sn-dev-password".into(),
            servicenow_client_id: "changeflow-dev-client".into(),
            servicenow_client_secret: "sn-dev-client-secret".into(),
            catalyst_username: "devnetuser".into(),
            catalyst_password: "cc-dev-password".into(),
            servicenow_people_password: "sn-people-password".into(),
        }
    }
}
