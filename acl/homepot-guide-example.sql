-- HOMEPOT integration guide example (docs/contract.md §6):
--   user homepot     writes devices/+/notifications   (the backend publishes)
--   user sensor-001  reads  devices/sensor-001/notifications
--
-- Apply to an initialised registry (homepot-admin init), as often as you like:
--   sqlite3 homepot.db < acl/homepot-guide-example.sql
--
-- Devices: a rule needs its device to exist. Devices already in the registry
-- are left exactly as they are (type, password, token). Missing ones are
-- created WITHOUT a password (password_hash NULL), and a device without a
-- password can never log in. Give them one afterwards, never on a command
-- line:
--   scripts/homepot-admin device passwd homepot --generate-password
--   scripts/homepot-admin device passwd sensor-001       (password on stdin)
-- or create them first with `homepot-admin device add`.
--
-- Idempotent: INSERT OR IGNORE for devices; a rule is inserted only when the
-- identical (device, filter, access) row is not there yet. One transaction.
PRAGMA foreign_keys = ON;
BEGIN;

INSERT OR IGNORE INTO devices (device_id, device_type, password_hash)
VALUES ('homepot', 'backend', NULL),
       ('sensor-001', 'iot_sensor', NULL);

INSERT OR IGNORE INTO acl_rules (device_id, topic_filter, access)
VALUES ('homepot', 'devices/+/notifications', 'write'),
       ('sensor-001', 'devices/sensor-001/notifications', 'read');

COMMIT;
