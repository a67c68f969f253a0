-- The audit trail: one row per recorded call (CloudTrail's record in `record`,
-- JSON), with the attributes LookupEvents filters on as columns. Every lookup
-- is per account, newest first, keyset-paged on (event_time, seq): each
-- attribute has an index (account, attribute, event_time, seq), so a page costs
-- a few index pages whatever the trail's size.
CREATE TABLE IF NOT EXISTS trail_events (
    seq           INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    account       TEXT NOT NULL,
    event_time    INTEGER NOT NULL,          -- ms since the epoch
    event_name    TEXT NOT NULL,
    event_source  TEXT NOT NULL,
    username      TEXT,
    access_key_id TEXT,
    read_only     INTEGER NOT NULL,          -- 0 or 1
    record        TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS trail_events_id ON trail_events(account, event_id);
CREATE INDEX IF NOT EXISTS trail_events_time ON trail_events(account, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_events_name ON trail_events(account, event_name, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_events_user ON trail_events(account, username, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_events_source ON trail_events(account, event_source, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_events_key ON trail_events(account, access_key_id, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_events_ro ON trail_events(account, read_only, event_time, seq);
-- Retention deletes the oldest rows of every account.
CREATE INDEX IF NOT EXISTS trail_events_age ON trail_events(event_time);

-- The resources a record names (e.g. AWS::ECR::Repository and its name).
CREATE TABLE IF NOT EXISTS trail_resources (
    seq           INTEGER NOT NULL REFERENCES trail_events(seq) ON DELETE CASCADE,
    account       TEXT NOT NULL,
    event_time    INTEGER NOT NULL,
    resource_type TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    PRIMARY KEY (seq, resource_type, resource_name)
);
CREATE INDEX IF NOT EXISTS trail_resources_name ON trail_resources(account, resource_name, event_time, seq);
CREATE INDEX IF NOT EXISTS trail_resources_type ON trail_resources(account, resource_type, event_time, seq);

-- The lifecycle's expiry records (audit_events) join the trail as CloudTrail's
-- service events; audit_events keeps only what is not a CloudTrail record.
INSERT INTO trail_events (event_id, account, event_time, event_name, event_source, username, access_key_id, read_only, record)
SELECT 'migrated-' || id, account, at, event_name, source, NULL, NULL, 0,
       json_object(
           'eventVersion', '1.08',
           'userIdentity', json_object('accountId', account, 'invokedBy', source),
           'eventTime', strftime('%Y-%m-%dT%H:%M:%SZ', at / 1000, 'unixepoch'),
           'eventSource', source,
           'eventName', event_name,
           'sourceIPAddress', source,
           'userAgent', source,
           'requestParameters', json('null'),
           'responseElements', json('null'),
           'eventID', 'migrated-' || id,
           'readOnly', json('false'),
           'resources', json_array(json_object(
               'accountId', account,
               'type', 'AWS::ECR::Repository',
               'ARN', 'arn:aws:ecr::' || account || ':repository/' || coalesce(json_extract(detail, '$.repositoryName'), ''))),
           'eventType', 'AwsServiceEvent',
           'managementEvent', json('true'),
           'recipientAccountId', account,
           'serviceEventDetails', json(detail),
           'eventCategory', 'Management')
FROM audit_events WHERE event_name = 'PolicyExecutionEvent' AND json_valid(detail);
INSERT INTO trail_resources (seq, account, event_time, resource_type, resource_name)
SELECT seq, account, event_time, 'AWS::ECR::Repository', json_extract(record, '$.serviceEventDetails.repositoryName')
FROM trail_events WHERE event_id LIKE 'migrated-%'
  AND json_extract(record, '$.serviceEventDetails.repositoryName') IS NOT NULL;
DELETE FROM audit_events WHERE event_name = 'PolicyExecutionEvent' AND json_valid(detail);
