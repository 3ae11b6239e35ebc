//! The backup units' names: one site's backup, the server-wide prune and
//! check, and the failure hook. The `backup:` section of the node config
//! is in hostyard-config.

/// `backup@.service`: one site's backup (`backup@example.com.service`).
pub const BACKUP_TEMPLATE_UNIT: &str = "backup@.service";
/// `backup@.timer`: when a site's backup runs.
pub const BACKUP_TIMER_TEMPLATE: &str = "backup@.timer";
/// `backup-failed@.service`: the `OnFailure=` hook of every backup unit;
/// its instance is a domain, or `prune` or `check`.
pub const BACKUP_FAILED_TEMPLATE_UNIT: &str = "backup-failed@.service";
pub const BACKUP_PRUNE_UNIT: &str = "backup-prune.service";
pub const BACKUP_PRUNE_TIMER: &str = "backup-prune.timer";
pub const BACKUP_CHECK_UNIT: &str = "backup-check.service";
pub const BACKUP_CHECK_TIMER: &str = "backup-check.timer";
/// The instances of `backup-failed@` for the server-wide jobs.
pub const FAILED_PRUNE: &str = "prune";
pub const FAILED_CHECK: &str = "check";

/// `backup@%i.timer`, as a site unit names it.
pub fn backup_timer_in_template() -> String {
    format!("backup@{}.timer", crate::kind::UNIT_INSTANCE)
}

/// `backup@example.com.service`.
pub fn backup_unit(domain: &crate::Domain) -> String {
    format!("backup@{domain}.service")
}

/// `backup-failed@<instance>.service`.
pub fn backup_failed_unit(instance: &str) -> String {
    format!("backup-failed@{instance}.service")
}
