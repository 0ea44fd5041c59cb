-- Backend broadcast: device `backend` may publish notifications to every
-- device and to the broadcast trees of the default notification_topics:
--   devices/+/notifications, factory/#, home/#, emergency/#
-- (write only; add read rules if the backend must also subscribe).
--
-- Apply to an initialised registry (homepot-admin init), as often as you like:
--   sqlite3 homepot.db < acl/backend-broadcast.sql
--
-- If `backend` does not exist it is created (type backend, 256 KiB payloads)
-- WITHOUT a password (password_hash NULL), so it cannot log in until you give
-- it one:
--   scripts/homepot-admin device passwd backend --generate-password
-- An existing `backend` device is left as it is.
--
-- Idempotent (INSERT OR IGNORE), one transaction.
PRAGMA foreign_keys = ON;
BEGIN;

INSERT OR IGNORE INTO devices (device_id, device_type, password_hash)
VALUES ('backend', 'backend', NULL);

INSERT OR IGNORE INTO acl_rules (device_id, topic_filter, access)
VALUES ('backend', 'devices/+/notifications', 'write'),
       ('backend', 'factory/#', 'write'),
       ('backend', 'home/#', 'write'),
       ('backend', 'emergency/#', 'write');

COMMIT;
