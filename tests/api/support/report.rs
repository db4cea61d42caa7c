//! The sample v1 report of the tests.

use serde_json::{json, Value};

/// A full, valid v1 report (the README's example) with fresh ids.
pub fn sample_report() -> Value {
    json!({
        "schema_version": 1,
        "report_id": uuid::Uuid::new_v4().to_string(),
        "instance_id": uuid::Uuid::new_v4().to_string(),
        "product": "passbolt",
        "event": "update",
        "version": "4.10.1",
        "previous_version": "4.9.0",
        "attributes": {"edition": "ce", "php_version": "8.2", "db_engine": "mariadb", "os_family": "debian", "install_method": "package"},
        "counters": {"users": 42, "groups": 5, "resources": 1234, "folders": 17},
        "features": {"mfa": true, "ldap": false, "sso": false}
    })
}
