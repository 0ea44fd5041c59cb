-- Monitoring: device `monitor` may read the plugin's statistics topic
-- $SYS/homepot/stats (retained JSON, docs/operating.md "Statistics"). Reading it always needs a rule.
--
-- Apply to an initialised registry (homepot-admin init), as often as you like:
--   sqlite3 homepot.db < acl/monitoring.sql
--
-- If `monitor` does not exist it is created (type backend) WITHOUT a password
-- (password_hash NULL), so it cannot log in until you give it one:
--   scripts/homepot-admin device passwd monitor --generate-password
-- An existing `monitor` device is left as it is. If you changed
-- plugin_opt_stats_topic, grant that topic instead:
--   scripts/homepot-admin acl grant monitor read 'your/stats/topic'
--
-- Idempotent (INSERT OR IGNORE), one transaction.
PRAGMA foreign_keys = ON;
BEGIN;

INSERT OR IGNORE INTO devices (device_id, device_type, password_hash)
VALUES ('monitor', 'backend', NULL);

INSERT OR IGNORE INTO acl_rules (device_id, topic_filter, access)
VALUES ('monitor', '$SYS/homepot/stats', 'read');

COMMIT;
