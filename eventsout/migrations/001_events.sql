-- One row per delivery log record. event_id is the record's stable id
-- (file key and byte offset); re-sent batches insert nothing twice.
CREATE TABLE events (
    event_id      text PRIMARY KEY,
    type          text NOT NULL,
    time          timestamptz NOT NULL,
    message_id    text NOT NULL DEFAULT '',
    delivery_id   text NOT NULL DEFAULT '',
    sender        text NOT NULL DEFAULT '',
    recipient     text NOT NULL DEFAULT '',
    site          text NOT NULL DEFAULT '',
    mx_host       text NOT NULL DEFAULT '',
    mx_ip         text NOT NULL DEFAULT '',
    source_ip     text NOT NULL DEFAULT '',
    rule          text NOT NULL DEFAULT '',
    code          integer NOT NULL DEFAULT 0,
    enhanced_code text NOT NULL DEFAULT '',
    text          text NOT NULL DEFAULT '',
    reason        text NOT NULL DEFAULT '',
    class         text NOT NULL DEFAULT '',
    attempt       integer NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT '',
    detail        text NOT NULL DEFAULT '',
    state         text NOT NULL DEFAULT '',
    size          bigint NOT NULL DEFAULT 0,
    tls           boolean NOT NULL DEFAULT false
);

-- What happened to one address.
CREATE INDEX events_recipient_time ON events (lower(recipient), time);
-- A campaign's outcome.
CREATE INDEX events_delivery_time ON events (delivery_id, time) WHERE delivery_id <> '';
-- Bounce and deferral reasons per site over time.
CREATE INDEX events_site_reason_time ON events (site, reason, time);
CREATE INDEX events_type_time ON events (type, time);
