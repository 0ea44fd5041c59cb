-- Every device may read and write its own subtree devices/<device_id>/#.
-- One global rule (device_id NULL = every device); %u is replaced by the
-- connecting device's username, which can never contain + # or /, so the
-- rule cannot widen beyond that device's own subtree.
--
-- Note: this also lets each device publish under its own subtree, its own
-- devices/<id>/notifications included (still validated as a notification).
--
-- Apply to an initialised registry (homepot-admin init), as often as you like:
--   sqlite3 homepot.db < acl/devices-own-subtree.sql
--
-- Idempotent: a UNIQUE constraint never matches NULL device_ids, so the row
-- is inserted only when it is not there yet (NOT EXISTS). One transaction.
PRAGMA foreign_keys = ON;
BEGIN;

INSERT INTO acl_rules (device_id, topic_filter, access)
SELECT NULL, 'devices/%u/#', 'readwrite'
WHERE NOT EXISTS (SELECT 1 FROM acl_rules
                  WHERE device_id IS NULL
                    AND topic_filter = 'devices/%u/#'
                    AND access = 'readwrite');

COMMIT;
