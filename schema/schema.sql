-- HOMEPOT device registry, schema version 4.
-- Applied by `homepot-admin init` (which also migrates older versions) or by
-- `sqlite3 homepot.db < schema/schema.sql` on an empty file. Idempotent.
PRAGMA journal_mode = WAL;

BEGIN;

CREATE TABLE IF NOT EXISTS device_types (
  name              TEXT PRIMARY KEY NOT NULL
                    CHECK (length(name) BETWEEN 1 AND 64),
  max_payload_bytes INTEGER NOT NULL CHECK (max_payload_bytes > 0)
);

-- 'unknown' also serves devices whose type has no row; its 10240 is
-- kDefaultMaxPayloadBytes of common/device.h (tests/common/device_test.cc).
INSERT OR IGNORE INTO device_types (name, max_payload_bytes) VALUES
  ('iot_sensor',            10240),
  ('industrial_controller', 102400),
  ('gateway',               102400),
  ('pos_terminal',          102400),
  ('backend',               262144),
  ('bridge',                262144),
  ('unknown',               10240);

-- A device id is the MQTT username: 1-128 bytes of UTF-8 without + # / NUL
-- or control characters and not starting with $, so that %u can never widen
-- an ACL filter or reach $-topics. The rule is defined in common/device.h;
-- device_id_format is its SQL spelling (SQL cannot test UTF-8), held to it by
-- tests/common/device_test.cc.
CREATE TABLE IF NOT EXISTS devices (
  device_id     TEXT PRIMARY KEY NOT NULL
                CONSTRAINT device_id_format CHECK (typeof(device_id) = 'text'
                       AND length(CAST(device_id AS BLOB)) BETWEEN 1 AND 128
                       AND device_id NOT GLOB '*[+#/]*'
                       AND device_id NOT GLOB '$*'
                       AND device_id NOT GLOB ('*[' || char(1) || '-' || char(31) || char(127) || ']*')
                       AND instr(CAST(device_id AS BLOB), x'00') = 0),
  device_type   TEXT NOT NULL DEFAULT 'unknown'
                REFERENCES device_types (name) ON UPDATE CASCADE,
  password_hash TEXT,
  device_token  TEXT CONSTRAINT device_token_format CHECK (device_token IS NULL
                            OR (length(device_token) BETWEEN 1 AND 65535
                                AND device_token NOT GLOB '*[+#]*')),
  platform      TEXT NOT NULL DEFAULT 'mqtt_push',
  metadata      TEXT NOT NULL DEFAULT '{}' CONSTRAINT metadata_json CHECK (json_valid(metadata)),
  enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
  created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- device_id NULL = the rule applies to every device. topic_filter is an MQTT
-- filter in which %u stands for the username and %c for the client id.
-- access_value lists the words of common/rule_access.h
-- (tests/common/rule_access_test.cc).
CREATE TABLE IF NOT EXISTS acl_rules (
  id           INTEGER PRIMARY KEY,
  device_id    TEXT REFERENCES devices (device_id)
               ON DELETE CASCADE ON UPDATE CASCADE,
  topic_filter TEXT NOT NULL CHECK (length(topic_filter) BETWEEN 1 AND 65535),
  access       TEXT NOT NULL
               CONSTRAINT access_value CHECK (access IN ('read', 'write', 'readwrite', 'deny')),
  UNIQUE (device_id, topic_filter, access)
);
CREATE INDEX IF NOT EXISTS acl_rules_device ON acl_rules (device_id);

-- Written by the plugin in batches; survives restarts. Not part of the
-- registry snapshot (changes here do not trigger a reload). One row per
-- device and broker node (plugin_opt_node_id): every node adds its own
-- counts, so several brokers sharing the registry never overwrite each
-- other; fleet_stats sums them. sessions and subscribed are the device's
-- sessions connected to that node now and how many of them hold a
-- subscription that covers its token (overwritten, not added; set to 0 when
-- the node's plugin starts and when it stops).
CREATE TABLE IF NOT EXISTS device_stats (
  device_id     TEXT NOT NULL,
  node          TEXT NOT NULL DEFAULT '',
  published     INTEGER NOT NULL DEFAULT 0,
  delivered     INTEGER NOT NULL DEFAULT 0,
  rejected      INTEGER NOT NULL DEFAULT 0,
  last_connect  TEXT,
  last_publish  TEXT,
  last_delivery TEXT,
  expired       INTEGER NOT NULL DEFAULT 0,
  acked         INTEGER NOT NULL DEFAULT 0,
  sessions      INTEGER NOT NULL DEFAULT 0,
  subscribed    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, node)
);

-- Per device, the sum over every node.
CREATE VIEW IF NOT EXISTS fleet_stats AS
  SELECT device_id,
         sum(published) AS published, sum(delivered) AS delivered,
         sum(rejected) AS rejected, max(last_connect) AS last_connect,
         max(last_publish) AS last_publish,
         max(last_delivery) AS last_delivery, sum(expired) AS expired,
         sum(acked) AS acked, sum(sessions) AS sessions,
         sum(subscribed) AS subscribed, count(*) AS nodes
    FROM device_stats GROUP BY device_id;

-- One row per accepted notification that carries a message_id, and one per
-- rejected notification with its reason. (The CHECKs of this table and of
-- registry_changes spell a list as ORs: SQLite evaluates a CHECK's IN list
-- by building a temporary index for every row written.) Times are RFC 3339 UTC with
-- milliseconds, like the other times. target_device is the device whose
-- token is the topic. Not part of the registry snapshot (changes here do not
-- trigger a reload). node is the broker node that wrote the row.
CREATE TABLE IF NOT EXISTS notification_log (
  id            INTEGER PRIMARY KEY,
  message_id    TEXT,
  publisher     TEXT,
  topic         TEXT NOT NULL,
  target_device TEXT,
  received_at   TEXT NOT NULL,
  routed        INTEGER NOT NULL DEFAULT 0,
  queued        INTEGER NOT NULL DEFAULT 0,
  expires_at    TEXT,
  acked_at      TEXT,
  latency_ms    INTEGER,
  status        TEXT,
  outcome       TEXT NOT NULL
                CHECK (outcome = 'routed' OR outcome = 'queued' OR
                       outcome = 'acked' OR outcome = 'expired' OR
                       outcome = 'unreachable' OR outcome = 'rejected'),
  reason        TEXT,
  node          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notification_log_message
  ON notification_log (message_id);
CREATE INDEX IF NOT EXISTS notification_log_target
  ON notification_log (target_device, received_at);
CREATE INDEX IF NOT EXISTS notification_log_received
  ON notification_log (received_at);

-- One row per writer of a node (node, 'delivery_log' or 'device_stats'):
-- the mark of the last chunk it committed, which tells a retry whether a
-- chunk whose COMMIT went unanswered took effect (plugin/chunk_mark.h).
CREATE TABLE IF NOT EXISTS write_marks (
  node   TEXT NOT NULL,
  writer TEXT NOT NULL,
  mark   TEXT NOT NULL,
  PRIMARY KEY (node, writer)
);

-- One row; generation increases by one on every row changed in the
-- registry tables (device_types, devices, acl_rules), whoever changes it.
CREATE TABLE IF NOT EXISTS registry_meta (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_meta (id, generation) VALUES (1, 1);

-- The change feed: for each generation, what it changed ('device' and the
-- device id, 'global' for a rule of every device, 'type' and the type
-- name; one row, or two for a row whose key changed). A broker that has
-- loaded generation G brings its snapshot forward by reading the rows
-- after G; a broker further behind than the feed reaches reloads in full.
CREATE TABLE IF NOT EXISTS registry_changes (
  generation INTEGER NOT NULL,
  kind       TEXT NOT NULL
             CHECK (kind = 'device' OR kind = 'global' OR kind = 'type'),
  name       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS registry_changes_generation
  ON registry_changes (generation);

-- The feed keeps the last `generations` generations, so at most twice as
-- many rows. Row triggers cannot see where a statement or a transaction
-- begins (SQLite has no statement triggers and no transaction id a trigger
-- can read), so every changed row takes a generation of its own, and this
-- one bound serves for bulk writes too: a write of more rows pushes its own
-- first generations out of the feed, so that a broker that had loaded the
-- registry before it finds a gap and reloads in full, without reading the
-- write's keys. It is kMaxChangedDevices of plugin/registry.h, above which
-- a broker reloads in full anyway (tests/registry_changes_test.cc holds the
-- two equal).
CREATE VIEW IF NOT EXISTS registry_changes_kept AS SELECT 50000 AS generations;

CREATE TRIGGER IF NOT EXISTS devices_touch AFTER UPDATE ON devices
  WHEN NEW.updated_at = OLD.updated_at
  BEGIN
    UPDATE devices SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
      WHERE device_id = NEW.device_id;
  END;

CREATE TRIGGER IF NOT EXISTS feed_devices_ins AFTER INSERT ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', NEW.device_id FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_devices_upd AFTER UPDATE ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', OLD.device_id FROM registry_meta
      UNION ALL
      SELECT generation, 'device', NEW.device_id FROM registry_meta
        WHERE NEW.device_id IS NOT OLD.device_id;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_devices_del AFTER DELETE ON devices
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'device', OLD.device_id FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_ins AFTER INSERT ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN NEW.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(NEW.device_id, '') FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_upd AFTER UPDATE ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN OLD.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(OLD.device_id, '') FROM registry_meta
      UNION ALL
      SELECT generation,
             CASE WHEN NEW.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(NEW.device_id, '') FROM registry_meta
        WHERE NEW.device_id IS NOT OLD.device_id;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_del AFTER DELETE ON acl_rules
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation,
             CASE WHEN OLD.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(OLD.device_id, '') FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
-- INSERT OR REPLACE and UPDATE OR REPLACE delete a row whose id is taken
-- without firing feed_acl_del (SQLite fires delete triggers for REPLACE
-- only with recursive_triggers on): these record the owner of that row
-- first. A statement that fails instead undoes them. (A conflict on
-- (device_id, topic_filter, access) replaces a row of the same owner,
-- which the insert or update records.)
CREATE TRIGGER IF NOT EXISTS feed_acl_replace_ins BEFORE INSERT ON acl_rules
  WHEN EXISTS (SELECT 1 FROM acl_rules WHERE id = NEW.id)
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT m.generation,
             CASE WHEN r.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(r.device_id, '')
        FROM registry_meta AS m, acl_rules AS r WHERE r.id = NEW.id;
  END;
CREATE TRIGGER IF NOT EXISTS feed_acl_replace_upd BEFORE UPDATE OF id
  ON acl_rules
  WHEN NEW.id IS NOT OLD.id AND EXISTS (SELECT 1 FROM acl_rules WHERE id = NEW.id)
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT m.generation,
             CASE WHEN r.device_id IS NULL THEN 'global' ELSE 'device' END,
             coalesce(r.device_id, '')
        FROM registry_meta AS m, acl_rules AS r WHERE r.id = NEW.id;
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_ins AFTER INSERT ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', NEW.name FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_upd AFTER UPDATE ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', OLD.name FROM registry_meta
      UNION ALL
      SELECT generation, 'type', NEW.name FROM registry_meta
        WHERE NEW.name IS NOT OLD.name;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;
CREATE TRIGGER IF NOT EXISTS feed_types_del AFTER DELETE ON device_types
  BEGIN
    UPDATE registry_meta SET generation = generation + 1;
    INSERT INTO registry_changes (generation, kind, name)
      SELECT generation, 'type', OLD.name FROM registry_meta;
    DELETE FROM registry_changes WHERE generation <=
      (SELECT generation FROM registry_meta) -
      (SELECT generations FROM registry_changes_kept);
  END;

PRAGMA user_version = 4;

COMMIT;
