//! Delivery of audit records to the platform's own `audit_logs` table, in the shape its runbooks
//! already insert by hand (event_type, user_id, action, resource, description, phi_accessed,
//! compliance_context, metadata), so existing dashboards and queries see lifeline's operations.

use super::error::{Error, Result};
use super::tools::connect;

/// One row of `audit_logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub event_type: String,
    pub user_id: String,
    pub action: String,
    pub resource: String,
    pub description: String,
    pub phi_accessed: bool,
    pub compliance_context: String,
    /// A JSON object: the record's ID, result, error, touched objects and details.
    pub metadata: serde_json::Value,
}

/// Insert `row` into `table` (`audit_logs` or `schema.audit_logs`) of the database at `url`.
/// `metadata` is bound as text and cast, so the column may be `jsonb`, `json` or `text`.
pub fn insert(url: &str, table: &str, row: &AuditRow) -> Result<()> {
    let table = quoted_table(table)?;
    let mut client = connect(url)?;
    let sql = format!(
        "INSERT INTO {table} (event_type, user_id, action, resource, description, phi_accessed, \
         compliance_context, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)"
    );
    client
        .execute(
            sql.as_str(),
            &[
                &row.event_type,
                &row.user_id,
                &row.action,
                &row.resource,
                &row.description,
                &row.phi_accessed,
                &row.compliance_context,
                &row.metadata.to_string(),
            ],
        )
        .map_err(|e| Error::db(format!("inserting into {table}"), e))?;
    Ok(())
}

/// `name` or `schema.name` as quoted identifiers; anything else is refused rather than spliced.
fn quoted_table(table: &str) -> Result<String> {
    let parts: Vec<&str> = table.split('.').collect();
    let valid =
        |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if parts.len() > 2 || !parts.iter().all(valid) {
        return Err(Error::Invalid(format!(
            "audit table {table:?} is not a table name: use `audit_logs` or `schema.audit_logs` (letters, digits and _)"
        )));
    }
    Ok(parts
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::quoted_table;

    #[test]
    fn table_names_are_quoted_and_anything_else_refused() {
        assert_eq!(
            quoted_table("audit_logs").expect("a plain name"),
            "\"audit_logs\""
        );
        assert_eq!(
            quoted_table("chatbot_compliance.audit_logs").expect("schema.name"),
            "\"chatbot_compliance\".\"audit_logs\""
        );
        for bad in ["", "a.b.c", "audit_logs; DROP TABLE x", "a..b", "\"x\""] {
            assert!(quoted_table(bad).is_err(), "{bad}");
        }
    }
}
