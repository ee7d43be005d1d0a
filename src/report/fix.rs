//! The likely fix for a failed collection, so the morning email says what to do and not only what broke.
//!
//! Heuristics over the error's variant and message, most specific first; `None` when nothing better than the
//! message itself can be said. Wording is imperative and names the config key or command to change.
use crate::Error;

/// The likely fix for `e`.
pub fn for_error(e: &Error) -> Option<String> {
    let text = e.to_string();
    if e.is_transient() {
        return Some(
            "a transient failure (network, primary stepdown, S3 throttling) persisted through every retry: rerun \
             `mongolake sync --env ENV --only COLLECTION` once the service is healthy; raise [sync] retry_attempts \
             or store_retries if it happens often"
                .into(),
        );
    }
    match e {
        Error::Secret { key, .. } => {
            Some(format!("make the secret `{key}` available (export the variable or mount the file) and rerun"))
        }
        Error::Config { path, .. } => Some(format!("correct {} as the message says", path.display())),
        _ => for_message(&text),
    }
}

/// The likely fix for an error known only by its text.
pub fn for_message(text: &str) -> Option<String> {
    let has = |w: &str| text.contains(w);
    let fix = if has("Authentication failed") || has("AuthenticationFailed") || has("auth error") {
        "check [mongodb] username/password (the secrets they reference) and auth_source; the user needs the \
         `read` role on the database"
    } else if has("not authorized") || has("Unauthorized") {
        "grant the mongolake user the `read` role on this database: db.grantRolesToUser(\"mongolake\", [{role: \
         \"read\", db: \"<db>\"}])"
    } else if has("AccessDenied") || has("Forbidden") || has(" 403") {
        "the lake's credentials lack permission: allow s3:GetObject, s3:PutObject, s3:DeleteObject and \
         s3:ListBucket on the lake prefix"
    } else if has("NoSuchBucket") {
        "the bucket in [lake] url does not exist: create it or correct the url"
    } else if has("max_new_partitions") {
        "correct `partition_by` for this collection in collections.csv (the named key has a value per document), \
         or raise [sync] max_new_partitions if that many partitions is intended"
    } else if has("partition field") || has("partition_by") {
        "correct `partition_by` for this collection in collections.csv (the field must exist in the documents)"
    } else if has("no key field") {
        "correct the `key` column for this collection in collections.csv, or fix the documents lacking it"
    } else if has("hmac_key") {
        "set [masking] hmac_key = { env = \"VAR\" } (16+ characters) and export it"
    } else if has("lease") {
        "another run took the collection over; nothing to do unless this repeats (then check for stalled hosts \
         or raise [sync] lease_seconds)"
    } else if has("collections.csv") {
        "correct the collections.csv row named in the message; the other collections synced"
    } else if has("state file") {
        "fix or remove the named line of the state file (removing the file forces a full reload)"
    } else if has("No space left") {
        "free disk space for spill files (TMPDIR) or lower [sync] memory_budget_mb's spill volume"
    } else {
        return None;
    };
    Some(fix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_messages_get_a_fix() {
        assert!(for_message("x: partition field(s) `f` exist in none").unwrap().contains("partition_by"));
        assert!(for_message("MongoDB ping: Authentication failed.").unwrap().contains("auth_source"));
        assert!(for_message("something new").is_none());
        let e = Error::Secret { key: "[email] password".into(), message: "not set".into() };
        assert!(for_error(&e).unwrap().contains("[email] password"));
    }
}
